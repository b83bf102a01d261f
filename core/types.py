"""Typed results shared by the detector, the reader and the application."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

Box = Tuple[float, float, float, float]  # x1, y1, x2, y2 in original-image pixels


@dataclass(frozen=True)
class Detection:
    """One detector output after score filtering and NMS."""

    box: Box
    score: float
    class_id: int
    class_name: str
