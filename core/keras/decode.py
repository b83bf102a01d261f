"""The Darknet yolo-layer decoding of ``core.yolo.decode_head``, in TensorFlow ops.

Used to give a SavedModel a signature with decoded boxes and class scores for every candidate
(no NMS inside). Candidate order matches the numpy decoder: head by head, row, column, anchor.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

from core.model_info import YoloHead


def decode_heads_tf(raws: Sequence[tf.Tensor], heads: Sequence[YoloHead], num_classes: int,
                    in_w: int, in_h: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Raw heads [B,H,W,A*(5+C)] -> boxes [B,N,4] (x1,y1,x2,y2 fractions of the input), scores [B,N,C]."""
    all_boxes, all_scores = [], []
    for raw, head in zip(raws, heads):
        gh, gw = head.grid
        na = len(head.anchors)
        p = tf.reshape(raw, [-1, gh, gw, na, 5 + num_classes])
        cols = tf.constant(np.arange(gw, dtype=np.float32).reshape(1, 1, gw, 1))
        rows = tf.constant(np.arange(gh, dtype=np.float32).reshape(1, gh, 1, 1))
        anchors = np.asarray(head.anchors, np.float32)
        s = float(head.scale_x_y)
        if head.new_coords:
            txy, wh, obj, cls = p[..., 0:2], (2.0 * p[..., 2:4]) ** 2, p[..., 4], p[..., 5:]
        else:
            txy, wh = tf.sigmoid(p[..., 0:2]), tf.exp(p[..., 2:4])
            obj, cls = tf.sigmoid(p[..., 4]), tf.sigmoid(p[..., 5:])
        off = (s - 1.0) / 2.0
        cx = (cols + txy[..., 0] * s - off) / gw
        cy = (rows + txy[..., 1] * s - off) / gh
        bw = wh[..., 0] * tf.constant(anchors[:, 0] / in_w)
        bh = wh[..., 1] * tf.constant(anchors[:, 1] / in_h)
        boxes = tf.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1)
        all_boxes.append(tf.reshape(boxes, [-1, gh * gw * na, 4]))
        all_scores.append(tf.reshape(obj[..., None] * cls, [-1, gh * gw * na, num_classes]))
    return tf.concat(all_boxes, axis=1), tf.concat(all_scores, axis=1)
