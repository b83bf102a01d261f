"""CTC decoding in numpy (edge runtime, TF-free): greedy, prefix beam search, and beam search that
prefers labels fitting the plate format, a batch per call.

Input: scores [batch, steps, classes] (18 x 68 for LPRNet), raw logits or probabilities.
Output: one ``Decoded(ids, confidence)`` per plate, ids without blanks and with repeats collapsed.
Confidence: greedy gives the probability of the best path (product of the per-step maxima); beam
search gives the CTC probability of the returned label (summed over all its alignments), so a beam
confidence is never below the greedy one for the same label. ``format`` runs the beam search and
returns the most probable label of the final beam that ``accept`` takes (a plate-format check), else
the most probable one: an extra or missing character on a real plate usually leaves the right label
close behind in the beam.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from core.errors import AlprError

DECODERS = ("format", "greedy", "beam")  # the first is the runtime's default


class Decoded(NamedTuple):
    ids: Tuple[int, ...]
    confidence: float


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _looks_like_probs(x: np.ndarray) -> bool:
    return bool(x.min() >= 0.0 and x.max() <= 1.0 and np.allclose(x.sum(axis=-1), 1.0, atol=1e-3))


def to_probs(scores: np.ndarray, is_probs: bool | None = None) -> np.ndarray:
    """[batch, steps, classes] float probabilities; logits go through a softmax over classes.

    ``is_probs=None`` guesses: rows already in [0, 1] that sum to 1 are taken as probabilities.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] == 0 or x.shape[2] < 2:
        raise AlprError(f"CTC scores must be [batch, steps, classes], got shape {np.shape(scores)}")
    if not np.all(np.isfinite(x)):
        raise AlprError("CTC scores contain NaN or infinity")
    if is_probs is None:
        is_probs = _looks_like_probs(x)
    return x if is_probs else softmax(x, axis=-1)


def collapse(path: np.ndarray, blank: int) -> Tuple[int, ...]:
    """Best path -> label: merge runs of the same class, then drop blanks."""
    out: List[int] = []
    prev = -1
    for c in path.tolist():
        if c != prev and c != blank:
            out.append(int(c))
        prev = c
    return tuple(out)


def greedy_decode(scores: np.ndarray, blank: int = -1, is_probs: bool | None = None) -> List[Decoded]:
    """Best-path decoding of a batch; ``blank=-1`` means the last class."""
    probs = to_probs(scores, is_probs)
    blank = blank % probs.shape[2]
    paths = probs.argmax(axis=2)
    best = probs.max(axis=2)
    conf = np.exp(np.log(np.maximum(best, 1e-300)).sum(axis=1))
    return [Decoded(collapse(paths[i], blank), float(conf[i])) for i in range(probs.shape[0])]


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def _beam_one(logp: np.ndarray, blank: int, beam_width: int, prune: float) -> List[Decoded]:
    """CTC prefix beam search over one [steps, classes] log-probability matrix: the final beam, most
    probable label first."""
    ninf = -math.inf
    # prefix -> (log P(prefix, ending in blank), log P(prefix, ending in a non-blank))
    beams: Dict[Tuple[int, ...], Tuple[float, float]] = {(): (0.0, ninf)}
    log_prune = math.log(prune) if prune > 0 else ninf
    for t in range(logp.shape[0]):
        row = logp[t]
        cands = [int(c) for c in np.flatnonzero(row >= log_prune)]
        if blank not in cands:
            cands.append(blank)
        nxt: Dict[Tuple[int, ...], List[float]] = defaultdict(lambda: [ninf, ninf])
        for prefix, (pb, pnb) in beams.items():
            total = _logsumexp(pb, pnb)
            last = prefix[-1] if prefix else None
            for c in cands:
                p = float(row[c])
                if c == blank:
                    entry = nxt[prefix]
                    entry[0] = _logsumexp(entry[0], total + p)
                    continue
                ext = prefix + (c,)
                entry = nxt[ext]
                if c == last:
                    # A repeat extends the label only across a blank; otherwise it merges.
                    entry[1] = _logsumexp(entry[1], pb + p)
                    same = nxt[prefix]
                    same[1] = _logsumexp(same[1], pnb + p)
                else:
                    entry[1] = _logsumexp(entry[1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: _logsumexp(kv[1][0], kv[1][1]), reverse=True)
        beams = {k: (v[0], v[1]) for k, v in ranked[:beam_width]}
    # ``beams`` keeps the ranked order of the last step
    return [Decoded(k, float(math.exp(_logsumexp(pb, pnb)))) for k, (pb, pnb) in beams.items()]


def beam_decode(
    scores: np.ndarray,
    blank: int = -1,
    beam_width: int = 8,
    is_probs: bool | None = None,
    prune: float = 1e-4,
    accept: Optional[Callable[[Tuple[int, ...]], bool]] = None,
) -> List[Decoded]:
    """Prefix beam search per plate; classes below ``prune`` probability at a step are skipped. With
    ``accept``, the most probable label of the final beam that it takes, else the most probable."""
    if beam_width < 1:
        raise AlprError(f"beam width must be >= 1, got {beam_width}")
    probs = to_probs(scores, is_probs)
    blank = blank % probs.shape[2]
    logp = np.log(np.maximum(probs, 1e-300))
    out: List[Decoded] = []
    for i in range(probs.shape[0]):
        beam = _beam_one(logp[i], blank, beam_width, prune)
        out.append(next((d for d in beam if accept(d.ids)), beam[0]) if accept is not None else beam[0])
    return out


def decode(
    scores: np.ndarray,
    method: str = "greedy",
    blank: int = -1,
    beam_width: int = 8,
    is_probs: bool | None = None,
    accept: Optional[Callable[[Tuple[int, ...]], bool]] = None,
) -> List[Decoded]:
    """Dispatch on ``method``: 'greedy', 'beam', or 'format' (beam, preferring labels ``accept`` takes)."""
    if method == "greedy":
        return greedy_decode(scores, blank, is_probs)
    if method == "beam":
        return beam_decode(scores, blank, beam_width, is_probs)
    if method == "format":
        if accept is None:
            raise AlprError("CTC decoding 'format' needs a format check (accept)")
        return beam_decode(scores, blank, beam_width, is_probs, accept=accept)
    raise AlprError(f"unknown CTC decoding method {method!r} (use 'greedy', 'beam' or 'format')")
