"""core.metrics: AP / mAP checked against hand computations and a brute-force reference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.metrics import COCO_IOU_THRESHOLDS, ImageBoxes, average_precision, evaluate
from core.types import Detection


def _reference_ap(tp_flags, scores, n_truth) -> float:
    """VOC 2010 definition written as loops: for each recall reached, the best precision at or beyond it."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    tp = fp = 0
    points = []
    for i in order:
        tp += tp_flags[i]
        fp += not tp_flags[i]
        points.append((tp / n_truth, tp / (tp + fp)))
    ap, prev_r = 0.0, 0.0
    for r in sorted({r for r, _ in points}):
        best = max(p for rr, p in points if rr >= r)
        ap += (r - prev_r) * best
        prev_r = r
    return ap


def test_hand_computed_ap():
    # 2 truths; detections by score: TP, FP, TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    # envelope: 1 up to recall 1/2, 2/3 up to 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    gt = ImageBoxes.make([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])
    det = ImageBoxes.make([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0, 0, 0], [0.9, 0.8, 0.7])
    m = evaluate([det], [gt], num_classes=1)
    c = m.per_class[0]
    assert c.ap50 == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert c.precision.tolist() == pytest.approx([1, 0.5, 2 / 3])
    assert c.recall.tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert m.map50 == pytest.approx(c.ap50) and c.num_truth == 2 and c.num_detections == 3
    # exact boxes: the same at every IoU threshold
    assert c.ap50_95 == pytest.approx(c.ap50)


def test_iou_thresholds_and_map50_95():
    # IoU of a 10x6.2 box inside a 10x10 truth is 0.62: a hit at 0.50, 0.55, 0.60 only -> AP 0.5:0.95 = 3/10
    m = evaluate([ImageBoxes.make([[0, 0, 10, 6.2]], [0], [0.5])], [ImageBoxes.make([[0, 0, 10, 10]], [0])], 1)
    assert m.per_class[0].ap == pytest.approx({t: (1.0 if t <= 0.6 else 0.0) for t in COCO_IOU_THRESHOLDS})
    assert m.map50 == 1.0 and m.map50_95 == pytest.approx(0.3)


def test_duplicates_classes_and_empty_cases():
    gt = [ImageBoxes.make([[0, 0, 10, 10]], [1]), ImageBoxes.make(np.zeros((0, 4)), [])]
    det = [ImageBoxes.make([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], [1, 1, 0], [0.9, 0.8, 0.95]),
           ImageBoxes.make([[5, 5, 9, 9]], [1], [0.99])]
    m = evaluate(det, gt, num_classes=3)
    a, b, c = m.per_class
    # class 0 has no truth: NaN, left out of the mean; class 2 has neither
    assert math.isnan(a.ap50) and a.num_detections == 1 and math.isnan(c.ap50)
    # class 1 by score: FP (0.99, other image), TP (0.9), FP duplicate (0.8): P = 0, 1/2, 1/3; R = 0, 1, 1
    assert b.precision.tolist() == pytest.approx([0, 0.5, 1 / 3]) and b.recall.tolist() == [0, 1, 1]
    assert b.ap50 == pytest.approx(0.5)
    assert m.map50 == pytest.approx(0.5)
    # a class with truth but no detections has AP 0
    m2 = evaluate([ImageBoxes.make(np.zeros((0, 4)), [], [])], [ImageBoxes.make([[0, 0, 1, 1]], [0])], 1)
    assert m2.map50 == 0.0
    assert math.isnan(evaluate([], [], 2).map50)


def test_greedy_matching_prefers_an_unmatched_truth():
    # two truths side by side; the best detection overlaps both, the second one only truth A
    gt = ImageBoxes.make([[0, 0, 10, 10], [8, 0, 18, 10]], [0, 0])
    det = ImageBoxes.make([[1, 0, 11, 10], [0, 0, 9, 10]], [0, 0], [0.9, 0.8])
    # det 1 -> truth A (IoU 9/11 beats 3/17), det 2 -> A is taken, B has IoU 1/18: FP
    c = evaluate([det], [gt], 1).per_class[0]
    assert c.precision.tolist() == pytest.approx([1, 0.5]) and c.recall.tolist() == pytest.approx([0.5, 0.5])
    assert c.ap50 == pytest.approx(0.5)


def test_matches_reference_on_random_sets():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n_img, truths, dets, flags, scores = 4, [], [], [], []
        n_truth = 0
        for _ in range(n_img):
            k = int(rng.integers(1, 5))
            xy = rng.uniform(0, 200, (k, 2))
            g = np.concatenate([xy, xy + rng.uniform(10, 40, (k, 2))], axis=1)
            n_truth += k
            truths.append(ImageBoxes.make(g, np.zeros(k)))
            # each truth: detected exactly (TP) with prob. 0.7; plus far-away false positives
            hit = rng.random(k) < 0.7
            far = rng.uniform(1000, 2000, (int(rng.integers(0, 3)), 2))
            boxes = np.concatenate([g[hit], np.concatenate([far, far + 20], axis=1)])
            s = rng.uniform(0, 1, len(boxes))
            dets.append(ImageBoxes.make(boxes, np.zeros(len(boxes)), s))
            flags += [True] * int(hit.sum()) + [False] * len(far)
            scores += s.tolist()
        got = evaluate(dets, truths, 1).map50
        assert got == pytest.approx(_reference_ap(flags, scores, n_truth)), trial


def test_average_precision_curve_and_detections():
    assert average_precision(np.array([1.0]), np.array([1.0])) == 1.0
    assert average_precision(np.array([0.25, 0.5]), np.array([1.0, 0.5])) == pytest.approx(0.25 + 0.25 * 0.5)
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0
    d = [Detection((0, 0, 10, 10), 0.9, 2, "car")]
    ib = ImageBoxes.from_detections(d)
    assert ib.classes.tolist() == [2] and ib.scores.tolist() == [0.9] and ib.boxes.shape == (1, 4)
    with pytest.raises(ValueError):
        ImageBoxes.make([[0, 0, 1, 1]], [0, 1])
