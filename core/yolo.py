"""YOLO pre- and post-processing in numpy: letterbox, Darknet yolo-layer decoding, NMS.

The decoding follows Darknet's ``[yolo]`` layer (and OpenCV's importer): for a head of grid
``H x W`` with anchors ``(aw, ah)`` in input pixels, for each cell (row, col) and anchor::

    x = (col + sigmoid(tx) * s - (s - 1) / 2) / W        s = scale_x_y
    y = (row + sigmoid(ty) * s - (s - 1) / 2) / H
    w = exp(tw) * aw / input_width                       h = exp(th) * ah / input_height
    score[c] = sigmoid(obj) * sigmoid(cls[c])

With ``new_coords=1`` the convolution already applied the logistic, and ``w = (2 tw)^2 aw / in_w``.
Boxes are centre/size as fractions of the network input; ``to_corners`` and ``undo_letterbox``
bring them to original-image pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from core.model_info import YoloHead

LETTERBOX_FILL = 128  # Darknet fills letterbox borders with 0.5 grey


@dataclass(frozen=True)
class Letterbox:
    """How an image of ``(orig_w, orig_h)`` was placed into the network input."""

    orig_w: int
    orig_h: int
    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int


def letterbox_params(orig_w: int, orig_h: int, in_w: int, in_h: int, keep_ratio: bool = True) -> Letterbox:
    if not keep_ratio:
        return Letterbox(orig_w, orig_h, in_w / orig_w, in_h / orig_h, 0, 0)
    scale = min(in_w / orig_w, in_h / orig_h)
    new_w = max(1, int(round(orig_w * scale)))
    new_h = max(1, int(round(orig_h * scale)))
    return Letterbox(orig_w, orig_h, new_w / orig_w, new_h / orig_h, (in_w - new_w) // 2, (in_h - new_h) // 2)


def letterbox_image(bgr: np.ndarray, in_w: int, in_h: int, keep_ratio: bool = True
                    ) -> Tuple[np.ndarray, Letterbox]:
    """BGR uint8 image -> RGB uint8 [in_h, in_w, 3] network input (unnormalised) and its geometry."""
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    elif bgr.shape[2] == 4:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
    h, w = bgr.shape[:2]
    lb = letterbox_params(w, h, in_w, in_h, keep_ratio)
    new_w, new_h = int(round(w * lb.scale_x)), int(round(h * lb.scale_y))
    resized = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if new_w == in_w and new_h == in_h:
        canvas = resized
    else:
        canvas = np.full((in_h, in_w, 3), LETTERBOX_FILL, np.uint8)
        canvas[lb.pad_y:lb.pad_y + new_h, lb.pad_x:lb.pad_x + new_w] = resized
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), lb


def to_input_tensor(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 [H,W,3] -> float32 [1,H,W,3] in [0, 1], as Darknet feeds its networks."""
    return (rgb.astype(np.float32) * (1.0 / 255.0))[None]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free logistic


def decode_head(raw: np.ndarray, head: YoloHead, num_classes: int, in_w: int, in_h: int,
                min_objectness: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """One head's raw output [H, W, A*(5+C)] -> (boxes [N,4] as cx,cy,w,h fractions, scores [N,C]).

    With ``min_objectness`` only the candidates whose objectness reaches it are decoded (a score is
    objectness x class probability, so no other candidate can pass a score threshold that high);
    without it every candidate is returned, in (row, col, anchor) order.
    """
    gh, gw = head.grid
    na = len(head.anchors)
    p = np.asarray(raw, np.float32).reshape(gh, gw, na, 5 + num_classes)
    obj = p[..., 4] if head.new_coords else _sigmoid(p[..., 4])
    if min_objectness is None:
        rows, cols, anc = (a.reshape(-1) for a in np.meshgrid(np.arange(gh), np.arange(gw), np.arange(na),
                                                              indexing="ij"))
    else:
        rows, cols, anc = np.nonzero(obj >= min_objectness)
    sel = p[rows, cols, anc]
    if head.new_coords:  # the convolution already applied the logistic
        txy, wh, cls = sel[:, 0:2], (2.0 * sel[:, 2:4]) ** 2, sel[:, 5:]
    else:
        txy, wh, cls = _sigmoid(sel[:, 0:2]), np.exp(sel[:, 2:4]), _sigmoid(sel[:, 5:])
    s = np.float32(head.scale_x_y)
    off = (s - 1.0) / 2.0
    anchors = np.asarray(head.anchors, np.float32)[anc]
    boxes = np.stack([(cols + txy[:, 0] * s - off) / gw, (rows + txy[:, 1] * s - off) / gh,
                      wh[:, 0] * anchors[:, 0] / in_w, wh[:, 1] * anchors[:, 1] / in_h], axis=1)
    scores = obj[rows, cols, anc][:, None] * cls
    return boxes.astype(np.float32), scores.astype(np.float32)


def decode_heads(raws: Sequence[np.ndarray], heads: Sequence[YoloHead], num_classes: int,
                 in_w: int, in_h: int, min_objectness: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """All heads of one image -> (boxes [N,4] x1,y1,x2,y2 fractions of the input, scores [N,C])."""
    parts = [decode_head(r, h, num_classes, in_w, in_h, min_objectness) for r, h in zip(raws, heads)]
    boxes = np.concatenate([b for b, _ in parts])
    scores = np.concatenate([s for _, s in parts])
    return to_corners(boxes), scores


def to_corners(cxcywh: np.ndarray) -> np.ndarray:
    half = cxcywh[:, 2:4] / 2.0
    return np.concatenate([cxcywh[:, 0:2] - half, cxcywh[:, 0:2] + half], axis=1)


def undo_letterbox(boxes: np.ndarray, lb: Letterbox, in_w: int, in_h: int, clip: bool = True) -> np.ndarray:
    """x1,y1,x2,y2 fractions of the network input -> original-image pixels."""
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, [0, 2]] = (boxes[:, [0, 2]] * in_w - lb.pad_x) / lb.scale_x
    out[:, [1, 3]] = (boxes[:, [1, 3]] * in_h - lb.pad_y) / lb.scale_y
    if clip:
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, lb.orig_w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, lb.orig_h)
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [N,4] with every box in ``b`` [M,4] (x1,y1,x2,y2)."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: Optional[int] = None) -> List[int]:
    """Greedy NMS on one class: indices kept, by descending score.

    ``max_keep`` stops after that many (the same boxes as the first ``max_keep`` of a full pass); with
    tens of thousands of low-score candidates, as from an untrained head, a full pass takes seconds.
    """
    order = np.argsort(-scores, kind="stable")
    keep: List[int] = []
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    while order.size and (max_keep is None or len(keep) < max_keep):
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[iou <= iou_threshold]
    return keep


def filter_and_nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float, iou_threshold: float,
                   max_detections: int = 300) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class NMS, Darknet style: a box is a candidate for every class scoring >= the threshold.

    Returns (boxes [K,4], scores [K], class ids [K]) sorted by descending score.
    """
    idx, cls = np.nonzero(scores >= score_threshold)
    if idx.size == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    cand_boxes = boxes[idx].astype(np.float32)
    cand_scores = scores[idx, cls].astype(np.float32)
    # One NMS pass over all classes: shifting each class's boxes apart keeps classes independent.
    span = float(max(cand_boxes.max() - min(cand_boxes.min(), 0.0), 1.0)) + 1.0
    shifted = cand_boxes + (cls.astype(np.float32) * span)[:, None]
    keep = np.asarray(nms(shifted, cand_scores, iou_threshold, max_detections), np.int64)
    return cand_boxes[keep], cand_scores[keep], cls[keep]
