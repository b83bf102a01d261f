"""EV flag precision and recall on plates from the training renderer (``tools.synth.plates``).

The renderer's crops carry everything the detector's boxes do in the field: loose boxes with car body,
perspective, shadows, glare, low light with a warm tint, exposure and contrast changes, per-channel
colour casts, blur, low resolution and JPEG. Every plate kind of the region is rendered (EV and not
EV, by the renderer's kind weights) and ``core.plate_color.is_ev`` judges it.

    python -m tools.ev_benchmark --region kr --count 2000 --seed 7100 [--json out.json] [--dump DIR]

``--dump`` writes the misjudged crops (named by kind, verdict and index) for a look.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence

import cv2
import numpy as np
from absl import app, flags

from core.cli import atomic_path, guarded
from core.plate_color import classify_plate_color
from tools.synth.plates import render_plate

FLAGS = flags.FLAGS


def render_set(region: str, count: int, seed: int) -> List[tuple]:
    """``count`` (crop, kind) pairs, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        crop, _text, kind = render_plate(rng, region)
        out.append((crop, kind))
    return out


def score(region: str, samples: Sequence[tuple]) -> Dict[str, object]:
    """Precision, recall and per-kind error counts of the EV flag on (crop, kind) pairs."""
    tp = fp = fn = tn = 0
    errors: Counter = Counter()
    per_kind: Counter = Counter()
    wrong = []
    for i, (crop, kind) in enumerate(samples):
        ev = classify_plate_color(crop, region).ev
        per_kind[kind.name] += 1
        if kind.ev and ev:
            tp += 1
        elif kind.ev:
            fn += 1
        elif ev:
            fp += 1
        else:
            tn += 1
        if ev != kind.ev:
            errors[kind.name] += 1
            wrong.append(i)
    return {
        "region": region,
        "count": len(samples),
        "ev_plates": tp + fn,
        "precision": tp / max(1, tp + fp),
        "recall": tp / max(1, tp + fn),
        "false_positives": fp,
        "false_negatives": fn,
        "errors_by_kind": dict(errors),
        "plates_by_kind": dict(per_kind),
        "wrong": wrong,
    }


def main(argv: Sequence[str]) -> None:
    del argv
    samples = render_set(FLAGS.region, FLAGS.count, FLAGS.seed)
    result = score(FLAGS.region, samples)
    print(f"{FLAGS.region}: {result['count']} plates ({result['ev_plates']} EV), "
          f"precision {result['precision']:.4f}, recall {result['recall']:.4f} "
          f"({result['false_positives']} false EV, {result['false_negatives']} missed EV)")
    for kind, n in sorted(result["plates_by_kind"].items()):
        print(f"  {kind:14s} {n:5d} plates, {result['errors_by_kind'].get(kind, 0):4d} misjudged")
    if FLAGS.dump:
        folder = Path(FLAGS.dump)
        folder.mkdir(parents=True, exist_ok=True)
        for i in result["wrong"]:
            crop, kind = samples[i]
            verdict = "ev" if not kind.ev else "notev"
            cv2.imwrite(str(folder / f"{kind.name}_{verdict}_{i:05d}.png"), crop)
    if FLAGS.json:
        payload = {k: v for k, v in result.items() if k != "wrong"}
        payload["seed"] = FLAGS.seed
        with atomic_path(Path(FLAGS.json), suffix=".json") as tmp:
            tmp.write_text(json.dumps(payload, indent=2) + "\n")


def _define_flags() -> None:
    flags.DEFINE_enum("region", "kr", ["kr", "cn"], "plate region (kr: light-blue EV plates, cn: green new-energy)")
    flags.DEFINE_integer("count", 2000, "plates to render")
    flags.DEFINE_integer("seed", 7100, "renderer seed")
    flags.DEFINE_string("json", None, "write the figures here")
    flags.DEFINE_string("dump", None, "write the misjudged crops to this folder")


if __name__ == "__main__":
    _define_flags()
    app.run(guarded(main))
