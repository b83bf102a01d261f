"""The YOLOv4 training loss for the raw heads of ``core.keras.builder`` models, and target assignment.

Box parametrisation: exactly the decoding of ``core.yolo`` (and Darknet's ``[yolo]`` layer)::

    x = (col + sigmoid(tx) * s - (s - 1) / 2) / W        y likewise with row / H      s = scale_x_y
    w = exp(tw) * anchor_w / input_width                 h likewise

Per head and image (Darknet's ``[yolo]`` with ``iou_loss=ciou``):

- box: ``iou_normalizer * (1 - CIoU(pred, truth))`` for every anchor a truth is assigned to;
- objectness: binary cross-entropy, target 1 on assigned anchors, 0 elsewhere, except that
  unassigned predictions whose best IoU with any truth of the image exceeds ``ignore_thresh``
  get no objectness loss; scaled by ``obj_normalizer``;
- classes: binary cross-entropy per class on assigned anchors, scaled by ``cls_normalizer``.

The terms are sums over the image (Darknet sums its deltas too); training divides by the global
batch size. Assignment (``build_targets``, numpy, in the data loader): a truth goes to the anchor
with the best shape IoU among *all* anchors, plus every anchor whose shape IoU exceeds ``iou_thresh``
(Darknet's multi-anchor option; 1.0 disables it), in the cell holding the truth's centre on the head
whose ``mask`` contains that anchor. One deliberate deviation from Darknet: when the best anchor is in
no head's mask (yolov4-tiny's masks skip anchor 0), the truth goes to the best *masked* anchor
instead of being dropped, so that small plates are never left without a positive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.darknet.cfg import DarknetCfg, read_sections
from core.errors import AlprError

EPS = 1e-9


@dataclass(frozen=True)
class HeadSpec:
    """One ``[yolo]`` head as the loss sees it."""

    grid: Tuple[int, int]  # (height, width)
    anchor_ids: Tuple[int, ...]  # indices into LossSpec.anchors (the layer's mask)
    anchors: Tuple[Tuple[float, float], ...]  # masked anchors (w, h) in input pixels
    scale_x_y: float = 1.0
    ignore_thresh: float = 0.7
    iou_normalizer: float = 0.07
    obj_normalizer: float = 1.0
    cls_normalizer: float = 1.0


@dataclass(frozen=True)
class LossSpec:
    """Everything the loss and the target builder need, parsed once from the cfg."""

    input_size: Tuple[int, int]  # (width, height)
    num_classes: int
    anchors: Tuple[Tuple[float, float], ...]  # all anchors of the cfg (w, h) in input pixels
    heads: Tuple[HeadSpec, ...]
    iou_thresh: float = 1.0  # multi-anchor assignment threshold (1.0: best anchor only)
    max_boxes: int = 100  # truths per image kept for the ignore test


def _yolo_options(cfg: DarknetCfg) -> List[Dict[str, str]]:
    """The raw ``[yolo]`` options (loss settings the typed cfg does not keep), in cfg order."""
    path = Path(cfg.source)
    if not path.is_file():
        return [{} for _ in cfg.yolo_layers]
    sections = read_sections(path.read_text(encoding="utf-8"), cfg.source)
    opts = [dict(s.options) for s in sections if s.kind == "yolo"]
    return opts if len(opts) == len(cfg.yolo_layers) else [{} for _ in cfg.yolo_layers]


def loss_spec_from_cfg(cfg: DarknetCfg, max_boxes: int = 100) -> LossSpec:
    """The loss settings of a cfg (normalizers, ignore_thresh, iou_thresh from its ``[yolo]`` sections)."""
    yolos = cfg.yolo_layers
    if any(y.new_coords for y in yolos):
        raise AlprError(f"{cfg.source}: training heads with new_coords=1 is not supported")
    options = _yolo_options(cfg)

    def num(o: Dict[str, str], key: str, default: float) -> float:
        try:
            return float(o.get(key, default))
        except ValueError:
            raise AlprError(f"{cfg.source}: [yolo] {key}={o[key]!r} is not a number") from None

    heads = tuple(HeadSpec(grid=(cfg.shapes[y.index].height, cfg.shapes[y.index].width), anchor_ids=tuple(y.mask),
                           anchors=y.masked_anchors, scale_x_y=y.scale_x_y,
                           ignore_thresh=num(o, "ignore_thresh", 0.5),
                           iou_normalizer=num(o, "iou_normalizer", 0.07 if o.get("iou_loss") == "ciou" else 1.0),
                           obj_normalizer=num(o, "obj_normalizer", 1.0),
                           cls_normalizer=num(o, "cls_normalizer", 1.0))
                  for y, o in zip(yolos, options))
    iou_thresh = min(num(o, "iou_thresh", 1.0) for o in options) if options else 1.0
    return LossSpec(input_size=(cfg.net.width, cfg.net.height), num_classes=cfg.num_classes,
                    anchors=yolos[0].anchors, heads=heads, iou_thresh=iou_thresh, max_boxes=max_boxes)


# ------------------------------------------------------------------------------------ targets (numpy)
def anchor_shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of boxes [N,2] and anchors [A,2] (w, h) aligned at a common centre: [N, A]."""
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter
    return inter / np.maximum(union, EPS)


def build_targets(labels: np.ndarray, spec: LossSpec) -> Tuple[List[np.ndarray], np.ndarray]:
    """Targets of one image.

    ``labels`` [N,5]: class, cx, cy, w, h (fractions of the network input). Returns one array per head
    [H, W, A, 5 + C] (cx, cy, w, h, assigned flag, one-hot class) and the truths [max_boxes, 4]
    (cx, cy, w, h; zero rows pad).
    """
    c = spec.num_classes
    in_w, in_h = spec.input_size
    targets = [np.zeros((h.grid[0], h.grid[1], len(h.anchors), 5 + c), np.float32) for h in spec.heads]
    truths = np.zeros((spec.max_boxes, 4), np.float32)
    labels = np.asarray(labels, np.float32).reshape(-1, 5)
    labels = labels[(labels[:, 3] > 0) & (labels[:, 4] > 0)][: spec.max_boxes]
    if len(labels) == 0:
        return targets, truths
    truths[: len(labels)] = labels[:, 1:5]
    anchors = np.asarray(spec.anchors, np.float32)
    where: Dict[int, Tuple[int, int]] = {}  # anchor id -> (head index, slot in its mask)
    for hi, head in enumerate(spec.heads):
        for slot, a in enumerate(head.anchor_ids):
            where.setdefault(a, (hi, slot))
    masked = np.array(sorted(where), np.int64)
    ious = anchor_shape_iou(labels[:, 3:5] * np.array([in_w, in_h], np.float32), anchors)
    for k, (cls, cx, cy, w, h) in enumerate(labels):
        best = int(np.argmax(ious[k]))
        chosen = {best} if best in where else {int(masked[np.argmax(ious[k, masked])])}
        chosen |= {int(a) for a in masked if ious[k, a] > spec.iou_thresh}
        for a in chosen:
            hi, slot = where[a]
            gh, gw = spec.heads[hi].grid
            col = min(int(cx * gw), gw - 1)
            row = min(int(cy * gh), gh - 1)
            t = targets[hi][row, col, slot]
            t[:] = 0.0
            t[0:4] = (cx, cy, w, h)
            t[4] = 1.0
            t[5 + int(cls)] = 1.0
    return targets, truths


# ------------------------------------------------------------------------------------------- loss (TF)
def _corners_and_iou(a, b):
    """(a_min, a_max, b_min, b_max, IoU) of boxes ``a`` and ``b`` (..., 4) as cx, cy, w, h. TF ops."""
    import tensorflow as tf

    a_min, a_max = a[..., 0:2] - a[..., 2:4] / 2, a[..., 0:2] + a[..., 2:4] / 2
    b_min, b_max = b[..., 0:2] - b[..., 2:4] / 2, b[..., 0:2] + b[..., 2:4] / 2
    inter_wh = tf.maximum(tf.minimum(a_max, b_max) - tf.maximum(a_min, b_min), 0.0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return a_min, a_max, b_min, b_max, inter / tf.maximum(union, EPS)


def box_iou(a, b):
    """IoU of boxes ``a`` and ``b`` (..., 4) as cx, cy, w, h (broadcasting). TF ops."""
    return _corners_and_iou(a, b)[-1]


def box_iou_terms(a, b):
    """IoU, and CIoU, of boxes ``a`` and ``b`` (..., 4) as cx, cy, w, h (broadcasting). TF ops."""
    import tensorflow as tf

    a_min, a_max, b_min, b_max, iou = _corners_and_iou(a, b)
    enclose = tf.maximum(a_max, b_max) - tf.minimum(a_min, b_min)
    c2 = enclose[..., 0] ** 2 + enclose[..., 1] ** 2
    rho2 = tf.reduce_sum((a[..., 0:2] - b[..., 0:2]) ** 2, axis=-1)
    v = (4.0 / math.pi ** 2) * (tf.atan(b[..., 2] / tf.maximum(b[..., 3], EPS))
                                - tf.atan(a[..., 2] / tf.maximum(a[..., 3], EPS))) ** 2
    alpha = tf.stop_gradient(v / tf.maximum(1.0 - iou + v, EPS))
    ciou = iou - rho2 / tf.maximum(c2, EPS) - alpha * v
    return iou, ciou


def decode_for_loss(raw, head: HeadSpec, num_classes: int, input_size: Tuple[int, int]):
    """Raw head [B,H,W,A*(5+C)] -> (boxes [B,H,W,A,4] cx,cy,w,h fractions, raw [B,H,W,A,5+C])."""
    import tensorflow as tf

    gh, gw = head.grid
    na = len(head.anchors)
    p = tf.reshape(raw, [-1, gh, gw, na, 5 + num_classes])
    s = float(head.scale_x_y)
    cols = tf.constant(np.arange(gw, dtype=np.float32).reshape(1, 1, gw, 1))
    rows = tf.constant(np.arange(gh, dtype=np.float32).reshape(1, gh, 1, 1))
    txy = tf.sigmoid(p[..., 0:2]) * s - (s - 1.0) / 2.0
    cx = (cols + txy[..., 0]) / gw
    cy = (rows + txy[..., 1]) / gh
    anchors = np.asarray(head.anchors, np.float32) / np.asarray(input_size, np.float32)
    wh = tf.exp(tf.clip_by_value(p[..., 2:4], -12.0, 8.0)) * tf.constant(anchors)
    boxes = tf.stack([cx, cy, wh[..., 0], wh[..., 1]], axis=-1)
    return boxes, p


def used_truth_rows(truths):
    """How many leading rows of the padded truths [B, max_boxes, 4] any image of the batch uses (at least 1)."""
    import tensorflow as tf

    per_image = tf.reduce_sum(tf.cast(truths[..., 2] * truths[..., 3] > 0, tf.int32), axis=-1)
    return tf.maximum(tf.reduce_max(per_image), 1)


def head_loss(raw, target, truths, head: HeadSpec, spec: LossSpec):
    """Per-image (box, objectness, class) loss terms [B] of one head."""
    import tensorflow as tf

    boxes, p = decode_for_loss(raw, head, spec.num_classes, spec.input_size)
    assigned = target[..., 4]
    _, ciou = box_iou_terms(boxes, target[..., 0:4])
    box = head.iou_normalizer * tf.reduce_sum(assigned * (1.0 - ciou), axis=[1, 2, 3])
    # Ignore: an unassigned prediction already overlapping some truth well is not pushed to 0. The test
    # only gates the loss, so it needs no gradient, and only the truths' rows in use (the target builder
    # fills them from the front; a zero row has IoU 0 with everything, so the cut changes nothing).
    best = tf.reduce_max(box_iou(tf.stop_gradient(boxes)[..., None, :],
                                 truths[:, None, None, None, :used_truth_rows(truths), :]), axis=-1)
    negative = (1.0 - assigned) * tf.cast(best < head.ignore_thresh, boxes.dtype)
    obj_bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=assigned, logits=p[..., 4])
    obj = head.obj_normalizer * tf.reduce_sum((assigned + negative) * obj_bce, axis=[1, 2, 3])
    cls_bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target[..., 5:], logits=p[..., 5:])
    cls = head.cls_normalizer * tf.reduce_sum(assigned[..., None] * cls_bce, axis=[1, 2, 3, 4])
    return box, obj, cls


def yolo_loss(raws: Sequence, targets: Sequence, truths, spec: LossSpec, box_gain: float = 1.0):
    """Sum over heads: dict of per-image terms [B] ``box``, ``obj``, ``cls`` and ``total``."""
    terms: Optional[List] = None
    for raw, target, head in zip(raws, targets, spec.heads):
        parts = head_loss(raw, target, truths, head, spec)
        terms = list(parts) if terms is None else [t + q for t, q in zip(terms, parts)]
    assert terms is not None
    box, obj, cls = terms
    box = box * box_gain
    return {"box": box, "obj": obj, "cls": cls, "total": box + obj + cls}
