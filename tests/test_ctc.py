"""CTC decoding against hand-worked examples and a brute-force reference."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.errors import AlprError
from lprnet.ctc import beam_decode, collapse, decode, greedy_decode

# classes: 0 = 'A', 1 = 'B', 2 = blank
HAND = np.array(
    [
        [0.6, 0.1, 0.3],  # A
        [0.6, 0.1, 0.3],  # A  (repeat, merges)
        [0.2, 0.1, 0.7],  # -  (blank separates)
        [0.5, 0.2, 0.3],  # A  (a second A)
        [0.1, 0.6, 0.3],  # B
        [0.1, 0.5, 0.4],  # B  (repeat, merges)
    ]
)


def test_collapse_by_hand() -> None:
    assert collapse(np.array([0, 0, 2, 0, 1, 1]), blank=2) == (0, 0, 1)
    assert collapse(np.array([2, 2, 2]), blank=2) == ()
    assert collapse(np.array([1, 2, 1, 1, 2]), blank=2) == (1, 1)


def test_greedy_hand_example() -> None:
    (res,) = greedy_decode(HAND[None], blank=2, is_probs=True)
    assert res.ids == (0, 0, 1)
    assert res.confidence == pytest.approx(0.6 * 0.6 * 0.7 * 0.5 * 0.6 * 0.5)


def test_greedy_accepts_logits_like_probs() -> None:
    logits = np.log(HAND)[None] + 3.0  # softmax of log p + c gives p back
    (res,) = greedy_decode(logits, blank=-1)
    assert res.ids == (0, 0, 1)
    assert res.confidence == pytest.approx(0.0378)


def test_beam_beats_greedy_by_hand() -> None:
    # Two steps, P(A)=0.4, P(blank)=0.6: best path is '--' (0.36, empty label), but the label 'A'
    # has 0.4*0.4 + 0.4*0.6 + 0.6*0.4 = 0.64 summed over its three alignments.
    probs = np.array([[[0.4, 0.6], [0.4, 0.6]]])
    assert greedy_decode(probs, blank=1, is_probs=True)[0] == ((), pytest.approx(0.36))
    res = beam_decode(probs, blank=1, beam_width=4, is_probs=True)[0]
    assert res.ids == (0,)
    assert res.confidence == pytest.approx(0.64)


def test_beam_repeat_needs_blank_by_hand() -> None:
    # 'A - A' -> 'AA' with 0.9^3 = 0.729; 'A' collects 0.262 over 6 alignments.
    probs = np.array([[[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]]])
    res = beam_decode(probs, blank=1, beam_width=4, is_probs=True)[0]
    assert res.ids == (0, 0)
    assert res.confidence == pytest.approx(0.729)


def _brute_force(probs: np.ndarray, blank: int) -> dict:
    labels: dict = {}
    steps, classes = probs.shape
    for path in itertools.product(range(classes), repeat=steps):
        p = float(np.prod([probs[t, c] for t, c in enumerate(path)]))
        key = collapse(np.array(path), blank)
        labels[key] = labels.get(key, 0.0) + p
    return labels


def test_beam_matches_brute_force_on_random_batch() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=1.5, size=(6, 5, 4))
    results = beam_decode(logits, blank=3, beam_width=64, prune=0.0)
    assert len(results) == 6
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for res, p in zip(results, probs):
        ref = _brute_force(p, blank=3)
        best = max(ref, key=ref.get)
        assert res.ids == best
        assert res.confidence == pytest.approx(ref[best], rel=1e-9)


def test_batch_18x68_greedy_and_beam_agree_on_peaked_scores() -> None:
    rng = np.random.default_rng(1)
    paths = rng.integers(0, 68, size=(3, 18))
    logits = rng.normal(size=(3, 18, 68))
    logits[np.arange(3)[:, None], np.arange(18)[None], paths] += 20.0
    greedy = decode(logits, "greedy")
    beam = decode(logits, "beam", beam_width=4)
    for g, b, path in zip(greedy, beam, paths):
        assert g.ids == collapse(path, 67) == b.ids
        assert 0.99 < g.confidence <= b.confidence + 1e-12 <= 1.0 + 1e-9


def test_format_takes_the_best_fitting_label_by_hand() -> None:
    # The "AA" example above: 'AA' 0.729 leads, 'A' follows with 0.262 (0.9*0.9*0.1 + 0.9*0.1*0.1 + ...
    # over its six alignments). A format that wants one character gets 'A' with its own probability.
    probs = np.array([[[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]]])
    ref = _brute_force(probs[0], blank=1)
    one = decode(probs, "format", blank=1, beam_width=4, is_probs=True, accept=lambda ids: len(ids) == 1)[0]
    assert one.ids == (0,)
    assert one.confidence == pytest.approx(ref[(0,)]) and ref[(0,)] == pytest.approx(0.262)
    # nothing fits: the most probable label, as plain beam search gives it
    none = decode(probs, "format", blank=1, beam_width=4, is_probs=True, accept=lambda ids: False)[0]
    assert none == decode(probs, "beam", blank=1, beam_width=4, is_probs=True)[0]


def test_format_is_the_best_fitting_label_of_the_brute_force() -> None:
    """With a beam wide enough to keep every label, 'format' is the most probable label that fits."""
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=1.5, size=(5, 5, 4))
    fits = lambda ids: len(ids) == 3  # noqa: E731
    results = decode(logits, "format", blank=3, beam_width=1000, accept=fits)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for res, p in zip(results, probs):
        ref = {k: v for k, v in _brute_force(p, blank=3).items() if fits(k)}
        best = max(ref, key=ref.get)
        assert res.ids == best
        assert res.confidence == pytest.approx(ref[best], rel=1e-9)


def test_bad_inputs() -> None:
    with pytest.raises(AlprError, match="batch, steps, classes"):
        greedy_decode(np.zeros((2, 3, 4, 5)))
    with pytest.raises(AlprError, match="NaN"):
        greedy_decode(np.full((1, 2, 3), np.nan))
    with pytest.raises(AlprError, match="unknown CTC decoding method"):
        decode(np.zeros((1, 2, 3)), "viterbi")
    with pytest.raises(AlprError, match="needs a format check"):
        decode(np.zeros((1, 2, 3)), "format")
