"""Detection metrics without TensorFlow: per-class AP, mAP@0.5 and mAP@0.5:0.95.

Matching (per image and class, COCO style): detections in descending score order; each takes the
unmatched ground-truth box of its class with the highest IoU, if that IoU >= the threshold (a true
positive), else it is a false positive. AP is the area under the precision-recall curve with
all-point interpolation (VOC 2010+; precision made monotonically non-increasing from the right,
summed over the recall steps). mAP@0.5:0.95 averages AP over IoU 0.50, 0.55, ..., 0.95. Classes
without any ground truth have no AP (NaN) and are left out of the means; a class with ground
truth but no detection has AP 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.yolo import iou_matrix

COCO_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


@dataclass(frozen=True)
class ImageBoxes:
    """Boxes of one image: x1,y1,x2,y2 [N,4], class ids [N]; scores [N] for detections, None for truth."""

    boxes: np.ndarray
    classes: np.ndarray
    scores: Optional[np.ndarray] = None

    @classmethod
    def make(cls, boxes, classes, scores=None) -> ImageBoxes:
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        c = np.asarray(classes, np.int64).reshape(-1)
        s = None if scores is None else np.asarray(scores, np.float64).reshape(-1)
        if len(c) != len(b) or (s is not None and len(s) != len(b)):
            raise ValueError(f"boxes ({len(b)}), classes ({len(c)}) and scores differ in length")
        return cls(b, c, s)

    @classmethod
    def from_detections(cls, detections: Sequence) -> ImageBoxes:
        """From ``core.types.Detection`` objects."""
        return cls.make([d.box for d in detections], [d.class_id for d in detections],
                        [d.score for d in detections])


@dataclass(frozen=True)
class ClassAP:
    class_id: int
    num_truth: int
    num_detections: int
    ap: Dict[float, float]  # IoU threshold -> AP
    precision: np.ndarray  # at IoU 0.5, one value per detection in score order
    recall: np.ndarray

    @property
    def ap50(self) -> float:
        return self.ap[0.5]

    @property
    def ap50_95(self) -> float:
        vals = [self.ap[t] for t in COCO_IOU_THRESHOLDS if t in self.ap]
        return float(np.mean(vals)) if len(vals) == len(COCO_IOU_THRESHOLDS) else float("nan")


@dataclass(frozen=True)
class DetectionMetrics:
    per_class: Tuple[ClassAP, ...]

    def _mean(self, attr: str) -> float:
        vals = [getattr(c, attr) for c in self.per_class if c.num_truth > 0]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def map50(self) -> float:
        return self._mean("ap50")

    @property
    def map50_95(self) -> float:
        return self._mean("ap50_95")


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP of a PR curve (points in score order)."""
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def match_image(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray,
                iou_thresholds: Sequence[float]) -> np.ndarray:
    """True-positive flags [T, D] for one image and class, detections taken in descending score."""
    order = np.argsort(-det_scores, kind="stable")
    tp = np.zeros((len(iou_thresholds), len(det_boxes)), bool)
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return tp
    iou = iou_matrix(det_boxes[order], gt_boxes)
    for ti, thr in enumerate(iou_thresholds):
        taken = np.zeros(len(gt_boxes), bool)
        for k in range(len(order)):
            cand = np.where(taken, -1.0, iou[k])
            j = int(np.argmax(cand))
            if cand[j] >= thr:
                taken[j] = True
                tp[ti, order[k]] = True
    return tp


def evaluate(detections: Sequence[ImageBoxes], truths: Sequence[ImageBoxes], num_classes: int,
             iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS) -> DetectionMetrics:
    """Per-class AP over a dataset; ``detections[i]`` and ``truths[i]`` belong to the same image."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detection lists for {len(truths)} images")
    thresholds = tuple(sorted(set(float(t) for t in iou_thresholds) | {0.5}))
    per_class: List[ClassAP] = []
    for c in range(num_classes):
        scores: List[np.ndarray] = []
        tps: List[np.ndarray] = []
        n_truth = 0
        for det, gt in zip(detections, truths):
            dm, gm = det.classes == c, gt.classes == c
            n_truth += int(gm.sum())
            if not dm.any():
                continue
            s = det.scores[dm] if det.scores is not None else np.ones(int(dm.sum()))
            scores.append(s)
            tps.append(match_image(det.boxes[dm], s, gt.boxes[gm], thresholds))
        if scores:
            s = np.concatenate(scores)
            tp = np.concatenate(tps, axis=1)
            order = np.argsort(-s, kind="stable")
            tp = tp[:, order]
        else:
            tp = np.zeros((len(thresholds), 0), bool)
        aps: Dict[float, float] = {}
        prec50 = rec50 = np.zeros(0)
        for ti, thr in enumerate(thresholds):
            ctp = np.cumsum(tp[ti])
            cfp = np.cumsum(~tp[ti])
            precision = ctp / np.maximum(ctp + cfp, 1)
            recall = ctp / n_truth if n_truth else np.zeros_like(ctp, dtype=np.float64)
            aps[round(thr, 2)] = average_precision(recall, precision) if n_truth else float("nan")
            if abs(thr - 0.5) < 1e-9:
                prec50, rec50 = precision.astype(np.float64), recall.astype(np.float64)
        per_class.append(ClassAP(c, n_truth, int(tp.shape[1]), aps, prec50, rec50))
    return DetectionMetrics(tuple(per_class))
