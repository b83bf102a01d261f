"""Detector evaluation on a YOLO-txt dataset (what ``evaluate.py`` runs); TF-free.

The dataset (a folder of images with label files beside them, or a list file) is read with
``core.yolo_dataset``; every image goes through a *backend*: any object with
``detect(bgr, score_threshold, iou_threshold) -> [core.types.Detection]`` (boxes in image pixels).
``open_backend`` gives ``core.detector.Detector`` for a ``.tflite`` file or a SavedModel folder
(TensorFlow is imported only for the latter), and the Keras model of a cfg for a Darknet ``.weights``
file (TF side, imported lazily). Metrics come from ``core.metrics`` (COCO-style matching, all-point
AP): AP@0.5 and AP@0.5:0.95 per class, their means over the classes that have ground truth, and the
precision-recall curves at IoU 0.5 (``plot_pr_curves``).

JSON report (``report_dict``)::

    {"map50": {class: AP}, "map50_95": {class: AP}, "mean": {"map50": m, "map50_95": m},
     "images": n, "truths": {class: n}, "detections": {class: n}, "skipped": [...], ...}

A class without ground truth has AP ``null``. Unreadable images are skipped and listed.

Plate reading (``reader``: anything with ``read(crops) -> [PlateRead]``, e.g. ``lprnet.reader.PlateReader``):
every ``license_plate`` truth that carries a text (the label's sixth token) counts. It is *found* when
a plate detection scoring >= ``lpr_score`` overlaps it with IoU >= 0.5 (detections taken best first,
each used once); it is *read* when the crop of that detection reads exactly as the label. The report
gets ``"lpr": {"plates": n, "found": n, "read": n, "accuracy": read / plates,
"accuracy_found": read / found, "by_size": [...]}``: ``by_size`` splits those counts by the labelled
box (its part inside the image) in pixels: its height (``PLATE_HEIGHT_EDGES``) and its shape, ``narrow``
when the runtime's two-line test on aspect alone (``lprnet.preprocess.two_line_aspect``) holds for it and
``wide`` otherwise; one row per non-empty cell: ``{"shape", "height_px": [lo, hi or null], "plates",
"found", "read"}``. It says how tall a plate must be in a user's images to be read.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.cli import atomic_path
from core.errors import AlprError
from core.metrics import DetectionMetrics, ImageBoxes, evaluate
from core.yolo_dataset import load_dataset

EVAL_SCORE_THRESHOLD = 0.001  # mAP wants the whole precision-recall curve
EVAL_IOU_THRESHOLD = 0.5  # NMS IoU
# Plate heights (px) at which the plate-read counts are split (report "lpr" -> "by_size"). On 416-px
# synthetic scenes (model card, session 36) the shipped Korean reader read most one-line plates from
# 12 px up and most two-line ones from 20; the Chinese reader most one-line plates from 16 and two-line from 20.
PLATE_HEIGHT_EDGES = (12, 16, 20, 28, 40)


@dataclass
class EvalReport:
    class_names: Tuple[str, ...]
    metrics: DetectionMetrics
    images: int
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    dataset_problems: int = 0
    seconds: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)

    def name(self, class_id: int) -> str:
        return self.class_names[class_id] if class_id < len(self.class_names) else str(class_id)

    def table(self) -> str:
        """A plain-text table: class, truths, detections, AP@0.5, AP@0.5:0.95."""
        rows = [f"{'class':<20} {'truths':>7} {'dets':>7} {'AP50':>7} {'AP50:95':>8}"]
        for c in self.metrics.per_class:
            rows.append(f"{self.name(c.class_id):<20} {c.num_truth:>7} {c.num_detections:>7} "
                        f"{_fmt(c.ap50):>7} {_fmt(c.ap50_95):>8}")
        rows.append(f"{'mean':<20} {'':>7} {'':>7} {_fmt(self.metrics.map50):>7} {_fmt(self.metrics.map50_95):>8}")
        return "\n".join(rows)


def _fmt(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.4f}"


def _num(v: float) -> Optional[float]:
    return None if math.isnan(v) else round(float(v), 6)


def report_dict(report: EvalReport) -> Dict[str, Any]:
    m = report.metrics
    names = [report.name(c.class_id) for c in m.per_class]
    out: Dict[str, Any] = {
        "map50": {n: _num(c.ap50) for n, c in zip(names, m.per_class)},
        "map50_95": {n: _num(c.ap50_95) for n, c in zip(names, m.per_class)},
        "mean": {"map50": _num(m.map50), "map50_95": _num(m.map50_95)},
        "images": report.images,
        "truths": {n: c.num_truth for n, c in zip(names, m.per_class)},
        "detections": {n: c.num_detections for n, c in zip(names, m.per_class)},
        "skipped": [reason for _, reason in report.skipped],  # read_image's reasons start with the path
        "dataset_problems": report.dataset_problems,
        "seconds": round(report.seconds, 2),
    }
    out.update(report.extra)
    return out


def write_json(report: EvalReport, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(path)


def _match_plates(found: Sequence[Any], truths: Sequence[Any], w: int, h: int, plate_class: int,
                  lpr_score: float) -> List[Tuple[Any, Any]]:
    """(truth box, detection) pairs: plate detections >= lpr_score, best first, to text-bearing truths."""
    from core.yolo import iou_matrix

    gts = [b for b in truths if b.class_id == plate_class and b.text]
    dets = sorted((d for d in found if d.class_id == plate_class and d.score >= lpr_score), key=lambda d: -d.score)
    if not gts or not dets:
        return [(g, None) for g in gts]
    iou = iou_matrix(np.array([d.box for d in dets], np.float64),
                     np.array([g.to_xyxy(w, h) for g in gts], np.float64))
    taken: Dict[int, Any] = {}
    for k, d in enumerate(dets):
        cand = np.array([-1.0 if j in taken else iou[k, j] for j in range(len(gts))])
        j = int(np.argmax(cand))
        if cand[j] >= 0.5:
            taken[j] = d
    return [(g, taken.get(j)) for j, g in enumerate(gts)]


def _size_cell(box_xyxy: Sequence[float]) -> Tuple[str, int]:
    """(shape, height bin index) of a labelled plate box in pixels. Sizes are rounded to 0.01 px first:
    a box from normalised label coordinates may miss its whole-pixel size by a few millionths."""
    from lprnet.preprocess import two_line_aspect

    x1, y1, x2, y2 = box_xyxy
    w, h = round(x2 - x1, 2), round(y2 - y1, 2)
    return "narrow" if two_line_aspect(h, w) else "wide", sum(1 for e in PLATE_HEIGHT_EDGES if h >= e)


def _size_rows(cells: Dict[Tuple[str, int], Dict[str, int]]) -> List[Dict[str, Any]]:
    """The ``by_size`` rows of the report, narrow before wide, short before tall."""
    edges = (0,) + PLATE_HEIGHT_EDGES + (None,)
    return [dict(shape=shape, height_px=[edges[k], edges[k + 1]], **counts)
            for (shape, k), counts in sorted(cells.items())]


def size_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The ``by_size`` rows as plain text, one line each."""
    lines: List[str] = []
    for r in rows:
        lo, hi = r["height_px"]
        span = f"{lo}-{hi}" if hi is not None else f">={lo}"
        share = f"{r['read'] / r['plates']:.3f}" if r["plates"] else "-"
        lines.append(f"  {r['shape']:6s} {span:>7s} px: {r['plates']:5d} plates, {r['found']:5d} found, "
                     f"{r['read']:5d} read ({share})")
    return "\n".join(lines)


def evaluate_dataset(backend: Any, dataset: str | Path, class_names: Sequence[str],
                     score_threshold: float = EVAL_SCORE_THRESHOLD, iou_threshold: float = EVAL_IOU_THRESHOLD,
                     max_images: Optional[int] = None, progress: bool = True, reader: Any = None,
                     lpr_score: float = 0.25, crop_pad: Optional[float] = None,
                     lpr_retry: bool = True) -> EvalReport:
    """Run ``backend`` on every image of ``dataset`` and score it against the labels (and ``reader``'s reads,
    cropped and read as the runtime does: ``core.plate_reading``; ``crop_pad`` None is the runtime's pad)."""
    from core.images import read_image

    names = tuple(class_names)
    ds = load_dataset(dataset, len(names))
    samples = ds.samples[:max_images] if max_images else ds.samples
    dets: List[ImageBoxes] = []
    truths: List[ImageBoxes] = []
    skipped: List[Tuple[str, str]] = []
    by_size: Dict[Tuple[str, int], Dict[str, int]] = {}  # the plate-read counts, by (shape, height bin)
    plate_class = names.index("license_plate") if "license_plate" in names else -1
    if reader is not None and plate_class < 0:
        raise AlprError("plate reading needs a license_plate class among the class names")
    t0 = time.perf_counter()
    it: Any = samples
    if progress:
        from tqdm import tqdm

        it = tqdm(samples, desc="evaluate", unit="img", leave=False)
    for sample in it:
        try:
            bgr = read_image(sample.image)
        except AlprError as exc:
            skipped.append((str(sample.image), str(exc)))
            continue
        h, w = bgr.shape[:2]
        found = backend.detect(bgr, score_threshold=score_threshold, iou_threshold=iou_threshold)
        for d in found:
            if not 0 <= d.class_id < len(names):
                raise AlprError(f"the detector returned class {d.class_id} but {len(names)} classes were given")
        if reader is not None:
            from core.plate_reading import PLATE_PAD, read_plate_boxes

            pairs = _match_plates(found, sample.boxes, w, h, plate_class, lpr_score)
            _, reads = read_plate_boxes(reader, bgr, [d.box for _, d in pairs if d is not None],
                                        PLATE_PAD if crop_pad is None else crop_pad, lpr_retry)
            matched_reads = iter(reads)  # in the order of the matched pairs
            for g, d in pairs:
                r = next(matched_reads) if d is not None else None
                cell = by_size.setdefault(_size_cell(g.to_xyxy(w, h)), {"plates": 0, "found": 0, "read": 0})
                cell["plates"] += 1
                cell["found"] += int(r is not None)
                cell["read"] += int(r is not None and r.text == g.text)
        dets.append(ImageBoxes.from_detections(found) if found else ImageBoxes.make(np.zeros((0, 4)), [], []))
        truths.append(ImageBoxes.make([b.to_xyxy(w, h) for b in sample.boxes], [b.class_id for b in sample.boxes]))
    if not truths:
        raise AlprError(f"no readable image in {dataset}")
    metrics = evaluate(dets, truths, len(names))
    report = EvalReport(names, metrics, len(truths), skipped, len(ds.problems), time.perf_counter() - t0)
    if reader is not None:
        lpr = {key: sum(cell[key] for cell in by_size.values()) for key in ("plates", "found", "read")}
        report.extra["lpr"] = dict(lpr, accuracy=lpr["read"] / lpr["plates"] if lpr["plates"] else None,
                                   accuracy_found=lpr["read"] / lpr["found"] if lpr["found"] else None,
                                   by_size=_size_rows(by_size))
    return report


def plot_pr_curves(report: EvalReport, path: str | Path) -> Path:
    """Precision-recall curves at IoU 0.5, one line per class with ground truth, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for c in report.metrics.per_class:
        if c.num_truth == 0:
            continue
        r = np.concatenate([[0.0], c.recall])
        p = np.concatenate([[1.0], c.precision])
        ax.plot(r, p, label=f"{report.name(c.class_id)} (AP50 {_fmt(c.ap50)})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(f"PR @ IoU 0.5, {report.images} images, mAP50 {_fmt(report.metrics.map50)}")
    if ax.get_legend_handles_labels()[0]:  # no class with ground truth: no curve, no legend
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def open_backend(weights: str | Path, framework: str, class_names: Sequence[str], size: Optional[int] = None,
                 cfg: Optional[str] = None, num_threads: Optional[int] = None) -> Any:
    """The detector to evaluate.

    ``framework="tflite"``: a ``.tflite`` file; ``"tf"``: a SavedModel folder, or a Darknet ``.weights``
    file with its ``cfg`` (built in Keras at ``size``). Models with metadata have a fixed input size:
    ``size``, when given, must match it.
    """
    path = Path(weights)
    if not path.exists():
        raise AlprError(f"model not found: {path}")
    if framework not in ("tf", "tflite"):
        raise AlprError(f"--framework must be tf or tflite, got {framework!r}")
    if path.suffix == ".weights":
        if framework != "tf":
            raise AlprError(f"{path} is Darknet weights: evaluate it with --framework tf and --cfg")
        if not cfg:
            raise AlprError(f"{path} is Darknet weights: pass --cfg, the cfg it was trained with")
        from core.keras.train_detector import KerasDetector

        return KerasDetector.from_darknet(cfg, str(path), class_names, size or _cfg_width(cfg))
    if framework == "tflite" and path.is_dir():
        raise AlprError(f"{path} is a folder: --framework tflite wants a .tflite file")
    if framework == "tf" and path.is_file():
        raise AlprError(f"{path} is a file: --framework tf wants a SavedModel folder (or .weights with --cfg)")
    from core.detector import Detector

    det = Detector.open(path, num_threads=num_threads, class_names=list(class_names))
    if size is not None and tuple(det.input_size) != (size, size):
        raise AlprError(f"{path} takes {det.input_size[0]}x{det.input_size[1]} images, not --size {size}; "
                        f"convert it at that size or leave --size out")
    return det


def _cfg_width(cfg: str) -> int:
    from core.darknet.cfg import load_cfg

    return load_cfg(cfg).net.width
