"""Anchors for a dataset: k-means on the labelled box sizes with 1 - IoU as the distance (YOLOv2's recipe).

Boxes are measured at the network input size, as the letterbox places them (the image's longer side
scaled to the input). The anchors are sorted by area and written into a *copy* of a cfg (every
``anchors=`` line of its ``[yolo]`` sections; ``num`` and ``mask`` untouched), so a shipped cfg is
never modified in place::

    python -m tools.anchors --dataset runs/scenes/train.txt --cfg data/cfg/yolov4-tiny.cfg \\
        --out runs/yolov4-tiny-alpr.cfg --size 320

TF-free; Python 3.8 compatible.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from core.errors import AlprError


def box_sizes(source: str, size: int, num_classes: Optional[int] = None) -> np.ndarray:
    """(w, h) in input pixels [N, 2] of every labelled box of a dataset (folder or list file)."""
    from PIL import Image

    from core.yolo_dataset import load_dataset

    ds = load_dataset(source, num_classes)
    out: List[Tuple[float, float]] = []
    for s in ds.samples:
        if not s.boxes:
            continue
        try:
            with Image.open(s.image) as im:
                w, h = im.size
        except OSError:
            continue
        scale = size / max(w, h)
        for b in s.boxes:
            out.append((b.w * w * scale, b.h * h * scale))
    return np.asarray(out, np.float64).reshape(-1, 2)


def shape_iou(wh: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """IoU of (w, h) pairs aligned at a common centre: [N, K]."""
    inter = np.minimum(wh[:, None, 0], centroids[None, :, 0]) * np.minimum(wh[:, None, 1], centroids[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + centroids[None, :, 0] * centroids[None, :, 1] - inter
    return inter / np.maximum(union, 1e-12)


def kmeans_anchors(wh: np.ndarray, k: int, seed: int = 0, iterations: int = 300) -> np.ndarray:
    """``k`` anchors [k, 2] sorted by area; k-means++ seeding, 1 - IoU distance, median updates."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    if len(wh) < k:
        raise AlprError(f"{len(wh)} boxes are too few for {k} anchors")
    rng = np.random.default_rng(seed)
    centroids = [wh[rng.integers(len(wh))]]
    for _ in range(1, k):
        d = 1.0 - shape_iou(wh, np.array(centroids)).max(axis=1)
        p = d ** 2
        centroids.append(wh[rng.choice(len(wh), p=p / p.sum())] if p.sum() > 0 else wh[rng.integers(len(wh))])
    c = np.array(centroids)
    assign = None
    for _ in range(iterations):
        new = np.argmax(shape_iou(wh, c), axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            members = wh[assign == j]
            if len(members):
                c[j] = np.median(members, axis=0)
    return c[np.argsort(c[:, 0] * c[:, 1])]


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """Average over boxes of the best anchor IoU (how well the anchors fit)."""
    return float(shape_iou(np.asarray(wh, np.float64), np.asarray(anchors, np.float64)).max(axis=1).mean())


def rewrite_anchors(cfg_text: str, anchors: Sequence[Tuple[float, float]]) -> str:
    """The cfg text with every ``anchors=`` line replaced (rounded to whole pixels, at least 1)."""
    values = ",  ".join(f"{max(1, round(w))},{max(1, round(h))}" for w, h in anchors)
    new, count = re.subn(r"(?m)^(\s*anchors\s*=).*$", lambda m: f"{m.group(1)} {values}", cfg_text)
    if count == 0:
        raise AlprError("the cfg has no anchors= line to rewrite")
    return new


def rewrite_masks(cfg_text: str, masks: str) -> str:
    """Replace the ``mask=`` lines of the [yolo] sections in order; ``masks`` like ``"3,4,5;0,1,2"``."""
    groups = [g.strip() for g in masks.split(";") if g.strip()]
    lines = list(re.finditer(r"(?m)^(\s*mask\s*=).*$", cfg_text))
    if len(groups) != len(lines):
        raise AlprError(f"--masks has {len(groups)} groups but the cfg has {len(lines)} mask= lines")
    for g in groups:
        if not re.fullmatch(r"\d+(\s*,\s*\d+)*", g):
            raise AlprError(f"--masks group {g!r} is not a comma-separated list of anchor indices")
    out, last = [], 0
    for m, g in zip(lines, groups):
        out.append(cfg_text[last:m.start()] + f"{m.group(1)}{g}")
        last = m.end()
    return "".join(out) + cfg_text[last:]


def anchors_in_cfg(path: str) -> int:
    """How many anchors the cfg's first [yolo] section lists."""
    from core.darknet.cfg import load_cfg

    yolos = load_cfg(path).yolo_layers
    if not yolos:
        raise AlprError(f"{path} has no [yolo] section")
    return len(yolos[0].anchors)


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from core.cli import atomic_path

    f = flags.FLAGS
    if len(argv) > 1:
        raise AlprError(f"unexpected arguments: {' '.join(argv[1:])}")
    k = anchors_in_cfg(f.cfg)
    wh = box_sizes(f.dataset, f.size)
    anchors = kmeans_anchors(wh, k, f.seed)
    from core.darknet.cfg import load_cfg

    old = np.asarray(load_cfg(f.cfg).yolo_layers[0].anchors, np.float64)
    # the cfg's anchors are for its own width; compare at the size asked for
    old_scaled = old * f.size / load_cfg(f.cfg).net.width
    text = rewrite_anchors(Path(f.cfg).read_text(encoding="utf-8"), anchors)
    if f.masks:
        text = rewrite_masks(text, f.masks)
    if f.set_size:
        text = re.sub(r"(?m)^(\s*width\s*=).*$", lambda m: f"{m.group(1)}{f.size}", text, count=1)
        text = re.sub(r"(?m)^(\s*height\s*=).*$", lambda m: f"{m.group(1)}{f.size}", text, count=1)
    with atomic_path(f.out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"{len(wh)} boxes; anchors at {f.size}: " + ", ".join(f"{w:.0f}x{h:.0f}" for w, h in anchors))
    print(f"mean best IoU: {mean_best_iou(wh, anchors):.3f} (the cfg's anchors: {mean_best_iou(wh, old_scaled):.3f})")
    print(f"wrote {f.out}")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("dataset", None, "dataset folder or list file (train.txt) with YOLO txt labels")
    flags.DEFINE_string("cfg", None, "cfg whose [yolo] anchors are replaced (read only)")
    flags.DEFINE_string("out", None, "where to write the new cfg")
    flags.DEFINE_integer("size", 416, "network input size the anchors are for")
    flags.DEFINE_bool("set_size", True, "also set the cfg's [net] width and height to --size")
    flags.DEFINE_integer("seed", 0, "k-means seed")
    flags.DEFINE_string("masks", None, "optional new [yolo] masks in cfg order, e.g. '3,4,5;0,1,2' "
                        "(yolov4-tiny's own masks skip anchor 0)")
    flags.mark_flags_as_required(["dataset", "cfg", "out"])


if __name__ == "__main__":
    from absl import app

    from core.cli import guarded

    _define_flags()
    app.run(guarded(main), argv=sys.argv)
