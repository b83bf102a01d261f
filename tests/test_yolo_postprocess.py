"""numpy decoding, letterbox and NMS against hand computations."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.model_info import YoloHead
from core.yolo import (
    decode_head,
    filter_and_nms,
    iou_matrix,
    letterbox_image,
    letterbox_params,
    nms,
    undo_letterbox,
)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_decode_one_cell_by_hand() -> None:
    # grid 2x2, one anchor (20, 10) px, 2 classes, input 64x64, scale_x_y 1.2
    head = YoloHead(grid=(2, 2), anchors=((20.0, 10.0),), scale_x_y=1.2)
    raw = np.zeros((2, 2, 7), np.float32)
    raw[1, 0] = [_logit(0.75), _logit(0.25), math.log(2.0), 0.0, _logit(0.8), _logit(0.5), _logit(0.1)]
    boxes, scores = decode_head(raw, head, 2, 64, 64)
    idx = 1 * 2 + 0  # row 1, col 0
    # x = (0 + 0.75*1.2 - 0.1)/2 = 0.4 ; y = (1 + 0.25*1.2 - 0.1)/2 = 0.6 ; w = 2*20/64 ; h = 10/64
    np.testing.assert_allclose(boxes[idx], [0.4, 0.6, 40 / 64, 10 / 64], rtol=1e-6)
    np.testing.assert_allclose(scores[idx], [0.4, 0.08], rtol=1e-6)
    # an all-zero cell: sigmoid(0) = 0.5 everywhere -> centre of the cell, anchor size, score 0.25
    np.testing.assert_allclose(boxes[0], [(0.6 - 0.1) / 2, (0.6 - 0.1) / 2, 20 / 64, 10 / 64], rtol=1e-6)
    np.testing.assert_allclose(scores[0], [0.25, 0.25])


def test_decode_new_coords() -> None:
    head = YoloHead(grid=(1, 1), anchors=((32.0, 16.0),), scale_x_y=2.0, new_coords=True)
    raw = np.array([[[0.5, 0.25, 0.5, 1.0, 0.9, 0.5]]], np.float32)
    boxes, scores = decode_head(raw, head, 1, 64, 64)
    # x = 0.5*2 - 0.5 = 0.5 ; y = 0.25*2 - 0.5 = 0 ; w = (2*0.5)^2*32/64 = 0.5 ; h = 4*16/64 = 1
    np.testing.assert_allclose(boxes[0], [0.5, 0.0, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(scores[0], [0.45], rtol=1e-6)


def test_letterbox_geometry_and_inverse() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = 255  # left half white
    rgb, lb = letterbox_image(img, 64, 64)
    # 200x100 -> 64x32, placed at y offset 16
    assert (lb.pad_x, lb.pad_y) == (0, 16) and lb.scale_x == pytest.approx(0.32)
    assert rgb[0, 0].tolist() == [128, 128, 128] and rgb[20, 5].tolist() == [255, 255, 255]
    assert rgb[20, 60].tolist() == [0, 0, 0]
    box = np.array([[0.0, 16 / 64, 0.5, 48 / 64]], np.float32)  # the left half of the placed image
    np.testing.assert_allclose(undo_letterbox(box, lb, 64, 64), [[0, 0, 100, 100]], atol=1e-4)
    stretch = letterbox_params(200, 100, 64, 64, keep_ratio=False)
    np.testing.assert_allclose(undo_letterbox(np.array([[0.5, 0.5, 1, 1]], np.float32), stretch, 64, 64),
                               [[100, 50, 200, 100]])


def test_iou_and_nms_by_hand() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0.0]])
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [5, 0, 15, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # IoU(0,1) = 90/110 = 0.82 -> suppressed; IoU(0,2) = 1/3 -> kept at 0.45
    assert nms(boxes, scores, 0.45) == [0, 2, 3]
    assert nms(boxes, scores, 0.3) == [0, 3]
    assert nms(boxes, scores, 0.45, max_keep=2) == [0, 2]  # the first two of the full pass above


def test_filter_and_nms_caps_at_max_detections_with_the_highest_scores() -> None:
    # 400 disjoint 1x1 boxes on a grid and a duplicate of each, shifted by a tenth: every duplicate
    # goes, every grid box stays, so the 5 kept are the 5 best-scoring grid boxes
    xy = np.stack(np.meshgrid(np.arange(20) * 3.0, np.arange(20) * 3.0), -1).reshape(-1, 2)
    grid = np.concatenate([xy, xy + 1], 1)
    boxes = np.concatenate([grid, grid + 0.1]).astype(np.float32)
    s = np.random.default_rng(0).permutation(400) / 400 * 0.5 + 0.4
    scores = np.concatenate([s, s - 0.01])[:, None].astype(np.float32)
    b, sc, c = filter_and_nms(boxes, scores, 0.1, 0.5, max_detections=5)
    best = np.argsort(-s)[:5]
    np.testing.assert_allclose(b, grid[best])
    np.testing.assert_allclose(sc, s[best], rtol=1e-6)


def test_filter_and_nms_is_per_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]], np.float32)
    b, s, c = filter_and_nms(boxes, scores, 0.5, 0.45)
    assert c.tolist() == [0, 1] and s.tolist() == pytest.approx([0.9, 0.7])
    b, s, c = filter_and_nms(boxes, scores, 0.95, 0.45)
    assert len(b) == 0


def test_decode_above_objectness_is_the_full_decode_filtered() -> None:
    rng = np.random.default_rng(3)
    heads = [YoloHead(grid=(4, 5), anchors=((10.0, 12.0), (30.0, 20.0)), scale_x_y=1.05),
             YoloHead(grid=(2, 3), anchors=((40.0, 50.0),), scale_x_y=1.0)]
    raws = [rng.normal(0, 2, (4, 5, 2 * 8)).astype(np.float32), rng.normal(0, 2, (2, 3, 8)).astype(np.float32)]
    from core.yolo import decode_heads

    boxes, scores = decode_heads(raws, heads, 3, 96, 64)
    obj = np.concatenate([1 / (1 + np.exp(-r.reshape(-1, 8)[:, 4])) for r in raws])
    keep = obj >= 0.6
    b2, s2 = decode_heads(raws, heads, 3, 96, 64, min_objectness=0.6)
    np.testing.assert_allclose(b2, boxes[keep], rtol=1e-6)
    np.testing.assert_allclose(s2, scores[keep], rtol=1e-6)
    assert 0 < keep.sum() < keep.size
