"""OpenCV DNN (``cv2.dnn.readNetFromDarknet``) as the independent reference for the converter."""
from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np

from core.darknet.cfg import DarknetCfg


def opencv_net(cfg_path, weights_path):
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise RuntimeError("this OpenCV has no Darknet reader (OpenCV >= 5): install opencv-python-headless<5")
    return cv2.dnn.readNetFromDarknet(str(cfg_path), str(weights_path))


def opencv_heads(net, cfg: DarknetCfg, x_nhwc: np.ndarray) -> List[np.ndarray]:
    """Raw outputs of the convolutions feeding each [yolo] layer, NHWC like ours."""
    net.setInput(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    outs = net.forward([f"conv_{y.index - 1}" for y in cfg.yolo_layers])
    return [o.transpose(0, 2, 3, 1) for o in outs]


def opencv_detections(net, x_nhwc: np.ndarray, score: float, iou: float
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's own yolo decoding + cv2.dnn.NMSBoxes per class.

    Returns boxes (x1, y1, x2, y2 as fractions of the input), scores and class ids, the same
    Darknet-style rule as ours: a box is a candidate for every class scoring >= ``score``.
    """
    net.setInput(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in net.forward(net.getUnconnectedOutLayersNames())])
    cxcywh, scores = rows[:, :4], rows[:, 5:]
    boxes, out_scores, out_classes = [], [], []
    for c in range(scores.shape[1]):
        idx = np.nonzero(scores[:, c] >= score)[0]
        if idx.size == 0:
            continue
        xywh = [[float(b[0] - b[2] / 2), float(b[1] - b[3] / 2), float(b[2]), float(b[3])] for b in cxcywh[idx]]
        keep = np.asarray(cv2.dnn.NMSBoxes(xywh, scores[idx, c].tolist(), score, iou)).reshape(-1)
        for k in keep:
            x, y, w, h = xywh[k]
            boxes.append([x, y, x + w, y + h])
            out_scores.append(scores[idx[k], c])
            out_classes.append(c)
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(out_scores, np.float32),
            np.asarray(out_classes, np.int64))
