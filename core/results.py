"""Typed per-frame results of the application, their JSON form, and plate/sticker-to-vehicle assignment.

JSON form (``FrameResult.to_json_dict``), one document per image or one JSON Lines record per frame::

    {
      "image": "data/images/demo.jpg",          # the path as given (or a frame label for video)
      "width": 1280, "height": 720,
      "detections": [
        {"class": "car", "score": 0.97, "box": [x1, y1, x2, y2]},
        {"class": "license_plate", "score": 0.91, "box": [...],
         "plate": {"text": "12가3456", "confidence": 0.88, "valid": true, "ev": false, "color": "white"},
         "vehicle": 0},
        {"class": "disabled_sticker", "score": 0.55, "box": [...], "vehicle": 0}
      ],
      "timing_ms": {"detect": 12.1, "read": 3.2}  # only when asked for
    }

- ``box`` is in original-image pixels (floats rounded to 0.1 px), x2 > x1, y2 > y1.
- ``detections`` lists the vehicles first, in ``FrameResult.vehicles`` order, so ``"vehicle": i`` is both the
  index into ``FrameResult.vehicles`` and into ``detections``. Then plates, stickers and other classes.
- ``"plate"`` is present on plates only when the reader ran (``--lpr``); ``"vehicle"`` is present on plates
  and stickers, ``null`` when the plate lies in no vehicle box.
- Scores and confidences are rounded to 4 decimals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

from core.types import Box, Detection

VEHICLE_CLASSES = frozenset({"car", "truck", "bus", "motorcycle", "motorbike", "van", "vehicle"})
PLATE_CLASS = "license_plate"
STICKER_CLASS = "disabled_sticker"
MIN_INSIDE = 0.5  # fraction of a plate's area that must lie inside a vehicle box to belong to it


@dataclass(frozen=True)
class PlateResult:
    """A detected plate, what the reader made of it (None when LPR did not run) and its vehicle."""

    detection: Detection
    text: str | None = None
    confidence: float | None = None
    valid: bool | None = None
    ev: bool | None = None
    color: str | None = None
    vehicle: int | None = None

    @property
    def read(self) -> bool:
        """True when the plate reader ran on this plate."""
        return self.text is not None


@dataclass(frozen=True)
class StickerResult:
    """A detected disabled-parking sticker and the vehicle it is on (None when in no vehicle box)."""

    detection: Detection
    vehicle: int | None = None


@dataclass(frozen=True)
class FrameResult:
    """Everything the pipeline found in one image or video frame."""

    vehicles: Tuple[Detection, ...]
    plates: Tuple[PlateResult, ...]
    stickers: Tuple[StickerResult, ...]
    others: Tuple[Detection, ...] = ()
    image_size: Tuple[int, int] = (0, 0)  # (width, height)
    timing: Mapping[str, float] = field(default_factory=dict, compare=False, hash=False)  # stage -> ms

    def detections(self) -> List[Detection]:
        """All detections in JSON order: vehicles, plates, stickers, others."""
        return (list(self.vehicles) + [p.detection for p in self.plates]
                + [s.detection for s in self.stickers] + list(self.others))

    def counts(self) -> Dict[str, int]:
        """Number of detections per class name (insertion order = JSON order)."""
        out: Dict[str, int] = {}
        for det in self.detections():
            out[det.class_name] = out.get(det.class_name, 0) + 1
        return out

    def to_json_dict(self, image: str | None = None, include_timing: bool = False) -> Dict[str, Any]:
        """The documented JSON form (see the module docstring)."""
        items: List[Dict[str, Any]] = [_det_json(d) for d in self.vehicles]
        for plate in self.plates:
            item = _det_json(plate.detection)
            if plate.read:
                item["plate"] = {
                    "text": plate.text,
                    "confidence": None if plate.confidence is None else round(float(plate.confidence), 4),
                    "valid": None if plate.valid is None else bool(plate.valid),
                    "ev": None if plate.ev is None else bool(plate.ev),
                    "color": plate.color,
                }
            item["vehicle"] = plate.vehicle
            items.append(item)
        for sticker in self.stickers:
            item = _det_json(sticker.detection)
            item["vehicle"] = sticker.vehicle
            items.append(item)
        items.extend(_det_json(d) for d in self.others)
        doc: Dict[str, Any] = {"image": image, "width": int(self.image_size[0]),
                               "height": int(self.image_size[1]), "detections": items}
        if include_timing:
            doc["timing_ms"] = {k: round(float(v), 2) for k, v in self.timing.items()}
        return doc


def _det_json(det: Detection) -> Dict[str, Any]:
    return {"class": det.class_name, "score": round(float(det.score), 4),
            "box": [round(float(v), 1) for v in det.box]}


def boxes_array(boxes: Iterable[Box]) -> np.ndarray:
    """(N, 4) float64 array from boxes (an empty input gives shape (0, 4))."""
    arr = np.asarray(list(boxes), dtype=np.float64)
    return arr.reshape(-1, 4)


def assign_to_vehicles(inner: np.ndarray, vehicles: np.ndarray, min_inside: float = MIN_INSIDE) -> np.ndarray:
    """Index of the vehicle box that contains each inner box (plate, sticker), -1 for none. Vectorised.

    ``inner`` (N, 4) and ``vehicles`` (M, 4) are x1, y1, x2, y2 boxes. The owner is the vehicle with the
    largest intersection area divided by the inner box's area, provided that fraction is at least
    ``min_inside``; ties (a plate wholly inside two overlapping vehicle boxes) go to the smaller vehicle box,
    the tighter fit.
    """
    inner = np.asarray(inner, dtype=np.float64).reshape(-1, 4)
    vehicles = np.asarray(vehicles, dtype=np.float64).reshape(-1, 4)
    if len(inner) == 0 or len(vehicles) == 0:
        return np.full(len(inner), -1, dtype=np.int64)
    ix1 = np.maximum(inner[:, None, 0], vehicles[None, :, 0])
    iy1 = np.maximum(inner[:, None, 1], vehicles[None, :, 1])
    ix2 = np.minimum(inner[:, None, 2], vehicles[None, :, 2])
    iy2 = np.minimum(inner[:, None, 3], vehicles[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = np.clip(inner[:, 2] - inner[:, 0], 0, None) * np.clip(inner[:, 3] - inner[:, 1], 0, None)
    frac = inter / np.maximum(area, 1e-9)[:, None]
    v_area = (vehicles[:, 2] - vehicles[:, 0]) * (vehicles[:, 3] - vehicles[:, 1])
    # lexicographic: highest fraction first, then smallest vehicle area
    order = np.lexsort((np.broadcast_to(v_area, frac.shape), -np.round(frac, 9)), axis=1)
    best = order[:, 0]
    best_frac = frac[np.arange(len(inner)), best]
    return np.where((best_frac >= min_inside) & (best_frac > 0), best, -1).astype(np.int64)


def assign_indices(inner: Sequence[Detection], vehicles: Sequence[Detection],
                   min_inside: float = MIN_INSIDE) -> List[int | None]:
    """``assign_to_vehicles`` on detections, with None for "no vehicle"."""
    idx = assign_to_vehicles(boxes_array(d.box for d in inner), boxes_array(d.box for d in vehicles),
                             min_inside)
    return [None if i < 0 else int(i) for i in idx]


@dataclass(frozen=True)
class PlateInfo:
    """What the reader and the colour check said about one plate (inputs to ``build_frame_result``)."""

    text: str | None = None
    confidence: float | None = None
    valid: bool | None = None
    ev: bool | None = None
    color: str | None = None


def build_frame_result(detections: Sequence[Detection], image_size: Tuple[int, int],
                       plate_info: Sequence[PlateInfo] | None = None,
                       timing: Mapping[str, float] | None = None,
                       vehicle_classes: Iterable[str] = VEHICLE_CLASSES,
                       plate_class: str = PLATE_CLASS, sticker_class: str = STICKER_CLASS,
                       min_inside: float = MIN_INSIDE) -> FrameResult:
    """Split detections by class, attach reads to plates and assign plates/stickers to vehicles.

    ``plate_info``, when given, has one entry per plate in the order the plates appear in ``detections``
    (``plates_of(detections)`` gives that order, e.g. to crop and read them in one batch first).
    """
    vclasses = frozenset(vehicle_classes)
    vehicles = [d for d in detections if d.class_name in vclasses]
    plates = [d for d in detections if d.class_name == plate_class]
    stickers = [d for d in detections if d.class_name == sticker_class]
    others = [d for d in detections
              if d.class_name not in vclasses and d.class_name not in (plate_class, sticker_class)]
    if plate_info is not None and len(plate_info) != len(plates):
        raise ValueError(f"{len(plate_info)} plate reads for {len(plates)} plates")
    infos = list(plate_info) if plate_info is not None else [PlateInfo()] * len(plates)
    p_owner = assign_indices(plates, vehicles, min_inside)
    s_owner = assign_indices(stickers, vehicles, min_inside)
    plate_results = tuple(
        PlateResult(det, info.text, info.confidence, info.valid, info.ev, info.color, owner)
        for det, info, owner in zip(plates, infos, p_owner))
    sticker_results = tuple(StickerResult(det, owner) for det, owner in zip(stickers, s_owner))
    return FrameResult(tuple(vehicles), plate_results, sticker_results, tuple(others),
                       (int(image_size[0]), int(image_size[1])), dict(timing or {}))


def plates_of(detections: Sequence[Detection], plate_class: str = PLATE_CLASS) -> List[Detection]:
    """The plate detections, in the order ``build_frame_result`` expects their ``plate_info``."""
    return [d for d in detections if d.class_name == plate_class]
