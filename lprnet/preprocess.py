"""Reader pre-processing (edge runtime, TF-free), as LPRNet_Pytorch does it.

BGR crop as OpenCV reads it -> resize to 94x24 -> (x - 127.5) * 0.0078125 -> NHWC float32.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from core.errors import AlprError

INPUT_WIDTH = 94
INPUT_HEIGHT = 24
MEAN = 127.5
SCALE = 0.0078125


def resize_crop(crop: np.ndarray) -> np.ndarray:
    """One BGR (or grey) uint8 crop -> uint8 [24, 94, 3]."""
    arr = np.asarray(crop)
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise AlprError(f"a plate crop must be an HxWx3 BGR image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.shape[:2] != (INPUT_HEIGHT, INPUT_WIDTH):
        arr = cv2.resize(arr, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_LINEAR)
    return arr


def normalize(batch_uint8: np.ndarray) -> np.ndarray:
    return ((batch_uint8.astype(np.float32) - MEAN) * SCALE).astype(np.float32)


def preprocess_batch(crops: Sequence[np.ndarray]) -> np.ndarray:
    """BGR crops of any size -> float32 [N, 24, 94, 3] in [-1, 1)."""
    if len(crops) == 0:
        return np.zeros((0, INPUT_HEIGHT, INPUT_WIDTH, 3), np.float32)
    return normalize(np.stack([resize_crop(c) for c in crops]))
