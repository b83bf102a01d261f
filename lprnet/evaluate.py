"""Evaluate a reader on a folder of crops named by their text (or a label file).

python -m lprnet.evaluate --weights PATH --charset cn|kr --images DIR [--json OUT] [--decoder greedy]

PATH may be a TFLite file (run with the edge interpreter, TF-free), a SavedModel directory, a Keras
weights file (*.weights.h5) or a Keras model (*.keras). Metrics: sequence accuracy, character
accuracy (1 - CER over charset tokens, with editdistance), format-valid rate, the most common
confusions, and the per-plate latency (batch of 1, model call only) median.
"""
from __future__ import annotations

import bisect
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.errors import AlprError
from lprnet.charset import Charset
from lprnet.ctc import DECODERS
from lprnet.preprocess import normalize, resize_crop
from lprnet.province import check_record

LogitsFn = Callable[[np.ndarray], np.ndarray]
# The smallest character height in pixels that commercial ANPR systems ask of the camera (AxxonSoft's
# ANPR camera requirements: at least 15 px, strokes at least 2 px; Auto-Intellect's: 16 px). Rendered
# crops record their smallest character's height at their lowest resolution (tools.synth.plates, label
# column char_px); those below it are outside what a camera installed to such a spec delivers and are
# scored apart too.
MIN_CHAR_PX = 15.0
CHAR_PX_EDGES = (8.0, 12.0, MIN_CHAR_PX, 24.0)  # bins of the accuracy by character height
_PX_BINS = ([f"<{CHAR_PX_EDGES[0]:g}"] + [f"{lo:g}-{hi:g}" for lo, hi in zip(CHAR_PX_EDGES, CHAR_PX_EDGES[1:])]
            + [f">={CHAR_PX_EDGES[-1]:g}"])


def load_backend(path: str, charset: Charset, num_threads: int = 2) -> Tuple[LogitsFn, str]:
    """A function pre-processed batch -> logits [N,18,68], and the kind of model it runs."""
    p = Path(path)
    if p.is_file() and p.suffix == ".tflite":
        from lprnet.reader import PlateReader

        reader = PlateReader(p, charset, num_threads=num_threads)
        return reader.logits, "tflite"
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            raise AlprError(f"{p} is a directory but not a SavedModel (no saved_model.pb)")
        import tensorflow as tf

        loaded = tf.saved_model.load(str(p))
        fn = getattr(loaded, "serve", None)
        if fn is None:
            sig = loaded.signatures.get("serving_default")
            if sig is None:
                raise AlprError(f"SavedModel {p} has neither a 'serve' endpoint nor 'serving_default'")

            def fn(x):
                out = sig(tf.constant(x))
                return next(iter(out.values()))

        def run(x: np.ndarray, _keep=loaded) -> np.ndarray:  # _keep: the variables live with it
            return np.asarray(fn(tf.constant(x, tf.float32)), np.float32)

        return run, "saved_model"
    if p.is_file() and (p.name.endswith(".weights.h5") or p.suffix == ".keras"):
        import tensorflow as tf

        from lprnet.model import load_keras_model

        model = load_keras_model(str(p), charset.num_classes)
        call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return (lambda x: np.asarray(call(tf.constant(x, tf.float32)), np.float32)), "keras"
    if not p.exists():
        raise AlprError(f"model not found: {p}")
    raise AlprError(f"unsupported model {p}: use a .tflite file, a SavedModel directory, *.weights.h5 or *.keras")


def align(truth: Sequence[int], pred: Sequence[int]) -> List[Tuple[int, int]]:
    """Levenshtein alignment -> (truth id or -1, pred id or -1) for every edit (no matches)."""
    n, m = len(truth), len(pred)
    d = np.zeros((n + 1, m + 1), np.int32)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (truth[i - 1] != pred[j - 1]))
    edits = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (truth[i - 1] != pred[j - 1]):
            if truth[i - 1] != pred[j - 1]:
                edits.append((truth[i - 1], pred[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and d[i, j] == d[i - 1, j] + 1:
            edits.append((truth[i - 1], -1))
            i -= 1
        else:
            edits.append((-1, pred[j - 1]))
            j -= 1
    return edits[::-1]


def score(preds: Sequence[str], texts: Sequence[str], charset: Charset, top: int = 10) -> Dict[str, object]:
    """Sequence / character accuracy, format-valid rate and the most common confusions."""
    import editdistance

    if len(preds) != len(texts) or not texts:
        raise AlprError("nothing to score")
    errors = 0
    total = 0
    confusions: Counter = Counter()
    seen: Counter = Counter()  # truth token -> occurrences
    missed: Counter = Counter()  # truth token -> substituted or deleted
    for pred, truth in zip(preds, texts):
        t_ids = charset.encode(truth)
        p_ids = charset.encode(pred)
        errors += int(editdistance.eval(t_ids, p_ids))
        total += len(t_ids)
        seen.update(charset.tokens[t] for t in t_ids)
        for a, b in align(t_ids, p_ids):
            key = f"{charset.tokens[a] if a >= 0 else '∅'}->{charset.tokens[b] if b >= 0 else '∅'}"
            confusions[key] += 1
            if a >= 0:
                missed[charset.tokens[a]] += 1
    # the characters the reader gets wrong most often, relative to how often they occur
    hardest = sorted(missed, key=lambda t: (-missed[t] / seen[t], -missed[t], t))
    return {
        "count": len(texts),
        "sequence_accuracy": float(np.mean([p == t for p, t in zip(preds, texts)])),
        "char_accuracy": max(0.0, 1.0 - errors / max(total, 1)),
        "format_valid_rate": float(np.mean([charset.is_valid_format(p) for p in preds])),
        "confusions": [[k, n] for k, n in confusions.most_common(top)],
        "char_errors": [[t, seen[t], missed[t]] for t in hardest],
    }


def evaluate(
    logits_fn: LogitsFn,
    crops: Sequence[np.ndarray],
    texts: Sequence[str],
    charset: Charset,
    decoder: str = DECODERS[0],
    batch_size: int = 64,
    latency_samples: int = 200,
    kinds: Optional[Sequence[str]] = None,
    char_px: Optional[Sequence[float]] = None,
    tta: bool = True,
    retry_cuts: bool = True,
    province: Optional[Any] = None,
    home: Optional[Any] = None,
) -> Dict[str, object]:
    """Read every crop (BGR, any size) as the runtime does (lprnet.reader.read_crops), time batch-1
    model calls, and score; with ``kinds`` (one plate kind per crop, "" when unknown) also the
    sequence accuracy of each kind, with ``char_px`` (each crop's smallest character height, 0 when
    unknown) the accuracy by that height (``accuracy_by_char_px``). ``tta``, ``retry_cuts``: as in
    ``read_crops``; ``province``: ``lprnet.province.ProvinceReader`` checks of each read, one or several in order;
    ``home``: the ``lprnet.home.HomeRegion`` the reads lean to (give the checks the same one)."""
    from lprnet.reader import read_crops

    reads = read_crops(crops, logits_fn, charset, decoder, batch_size=batch_size, tta=tta, retry_cuts=retry_cuts,
                       province=province, home=home)
    preds = [r.text for r in reads]
    x = normalize(np.stack([resize_crop(c) for c in crops[:latency_samples]]))
    times = []
    logits_fn(x[:1])  # warm-up (retracing, allocation)
    for i in range(len(x)):
        t0 = time.perf_counter()
        logits_fn(x[i : i + 1])
        times.append(time.perf_counter() - t0)
    result = score(preds, texts, charset)
    result["latency_ms_median"] = float(np.median(times) * 1000.0)
    result["mean_confidence"] = float(np.mean([r.confidence for r in reads]))
    result["wrong"] = [[t, p] for t, p in zip(texts, preds) if t != p][:50]
    if kinds is not None and any(kinds):
        result["by_kind"] = accuracy_by_kind(preds, texts, kinds)
    if char_px is not None and any(px > 0 for px in char_px):
        result["by_char_px"] = accuracy_by_char_px(preds, texts, char_px)
    return result


def _rates(hits: Dict[str, List[bool]]) -> Dict[str, Dict[str, float]]:
    """{group: {"count", "sequence_accuracy"}} of each non-empty group, in ``hits``' order."""
    return {k: {"count": len(v), "sequence_accuracy": float(np.mean(v))} for k, v in hits.items() if v}


def accuracy_by_char_px(preds: Sequence[str], texts: Sequence[str],
                        char_px: Sequence[float]) -> Dict[str, Dict[str, float]]:
    """{bin: {"count", "sequence_accuracy"}} by the smallest character's height in px, bins split at
    ``CHAR_PX_EDGES`` (lowest first), then ``below_spec`` and ``within_spec`` (under / at least
    ``MIN_CHAR_PX``); crops of unknown height (0) are left out, empty bins too."""
    if not len(preds) == len(texts) == len(char_px):
        raise ValueError(f"{len(preds)} reads, {len(texts)} texts and {len(char_px)} heights: one each per crop")
    hits: Dict[str, List[bool]] = {k: [] for k in (*_PX_BINS, "below_spec", "within_spec")}
    for pred, truth, px in zip(preds, texts, char_px):
        if px > 0:
            hits[_PX_BINS[bisect.bisect_right(CHAR_PX_EDGES, px)]].append(pred == truth)
            hits["within_spec" if px >= MIN_CHAR_PX else "below_spec"].append(pred == truth)
    return _rates(hits)


def accuracy_by_kind(preds: Sequence[str], texts: Sequence[str], kinds: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """{kind: {"count", "sequence_accuracy"}}, kinds sorted by name; crops of unknown kind under "?"."""
    hits: Dict[str, List[bool]] = {}
    for pred, truth, kind in zip(preds, texts, kinds):
        hits.setdefault(kind or "?", []).append(pred == truth)
    return _rates(dict(sorted(hits.items())))


def format_report(result: Dict[str, object]) -> str:
    conf = ", ".join(f"{k} x{n}" for k, n in result["confusions"][:5])  # type: ignore[index]
    hard = ", ".join(f"{t} {m}/{n}" for t, n, m in result.get("char_errors", [])[:5])  # type: ignore[union-attr]
    return (
        f"{result['count']} plates: sequence accuracy {result['sequence_accuracy']:.4f}, "
        f"char accuracy {result['char_accuracy']:.4f}, format-valid {result['format_valid_rate']:.4f}, "
        f"latency median {result['latency_ms_median']:.2f} ms/plate\n"
        f"most common confusions: {conf or 'none'}"
    ) + (f"\nhardest characters (missed / seen): {hard}" if hard else "") + "".join(
        f"\n  {k}: {v['sequence_accuracy']:.4f} of {v['count']}"
        for k, v in result.get("by_kind", {}).items()  # type: ignore[union-attr]
    ) + _format_char_px(result.get("by_char_px", {}))  # type: ignore[arg-type]


def _format_char_px(by_px: Dict[str, Dict[str, float]]) -> str:
    if not by_px:
        return ""
    bins = ", ".join(f"{k} px {v['sequence_accuracy']:.4f} of {v['count']}" for k, v in by_px.items()
                     if not k.endswith("_spec"))
    spec = "; ".join(f"{k.replace('_', ' ')} {by_px[k]['sequence_accuracy']:.4f} of {by_px[k]['count']}"
                     for k in ("within_spec", "below_spec") if k in by_px)
    return (f"\nby smallest character height: {bins}"
            f"\n  ANPR camera spec (smallest character >= {MIN_CHAR_PX:g} px): {spec}")


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from core.cli import atomic_path
    from lprnet.charset import load_charset
    from lprnet.dataset import list_samples, load_originals
    from lprnet.home import home_record, parse_home

    del argv
    f = flags.FLAGS
    charset = load_charset(f.charset)
    home = parse_home(f.home_region, charset, f.home_weight)
    listing = list_samples(f.images, charset)
    images, texts = load_originals(listing, progress=True)
    if listing.skipped:
        print(f"skipped: {listing.summary()}")
    logits_fn, kind = load_backend(f.weights, charset, f.threads)
    province = ()
    if f.province:  # opt-in here: no --province, no check (detect.py's default: the shipped ones of the charset)
        from core.pipeline import open_checks

        province = open_checks(f.charset, f.province, f.threads, f.province_min_probability, home=home)
    result = evaluate(logits_fn, images, texts, charset, f.decoder, kinds=[s.kind for s in listing.samples],
                      char_px=[s.char_px for s in listing.samples], tta=f.tta, retry_cuts=f.retry,
                      province=province, home=home)
    result.update({"model": str(f.weights), "kind": kind, "charset": charset.name,
                   "images": str(f.images), "skipped": len(listing.skipped), "decoder": f.decoder,
                   "tta": f.tta, "retry_cuts": f.retry, **check_record(province), **home_record(home)})
    print(f"[{kind}] {format_report(result)}")
    if f.json:
        with atomic_path(f.json, suffix=".json") as tmp:
            tmp.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
        print(f"wrote {f.json}")


if __name__ == "__main__":
    from absl import app, flags

    from core.cli import guarded

    flags.DEFINE_string("weights", None, "model: .tflite, SavedModel dir, *.weights.h5 or *.keras")
    flags.DEFINE_string("charset", "cn", "charset: cn, kr or a charset file")
    flags.DEFINE_string("images", None, "folder of crops named by their text, or a label file")
    flags.DEFINE_string("json", None, "write the metrics as JSON here")
    flags.DEFINE_enum("decoder", DECODERS[0], list(DECODERS), "CTC decoding: format (the runtime's: beam "
                      "search, the most probable label that fits the plate format), greedy or beam")
    flags.DEFINE_integer("threads", 2, "TFLite interpreter threads")
    flags.DEFINE_boolean("tta", True, "read each crop also zoomed in and out, as the runtime does "
                         "(lprnet.reader.read_crops); --notta: one pass")
    flags.DEFINE_boolean("retry", True, "read weak reads of narrow crops again with other line cuts, as detect.py "
                         "does; --notta --noretry: as detect_video.py reads")
    flags.DEFINE_string("province", None, "checks (lprnet.province: province and top-line letter (cn), region, "
                        "top-line digits and Hangul letter (kr)): "
                        "comma-separated model .tflite files with their .json beside them, run in order, as "
                        "detect.py uses the shipped ones by default")
    flags.DEFINE_float("province_min_probability", None, "one threshold for every check of --province (default: "
                       "each model's own)")
    flags.DEFINE_string("home_region", None, "the province (cn) or region (kr) the reads (and the checks of "
                        "--province) lean to, or several comma-separated, as detect.py --home_region (lprnet.home; "
                        "default: none)")
    flags.DEFINE_float("home_weight", None, "how much they lean, as detect.py --home_weight (default: 10)")
    flags.mark_flags_as_required(["weights", "images"])
    app.run(guarded(main))
