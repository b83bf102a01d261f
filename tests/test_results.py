"""Frame results: JSON schema, vehicle assignment by hand-computed geometry."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.results import (
    FrameResult,
    PlateInfo,
    PlateResult,
    StickerResult,
    assign_indices,
    assign_to_vehicles,
    build_frame_result,
    plates_of,
)
from core.types import Detection


def _det(box, name: str, score: float = 0.9, cid: int = 0) -> Detection:
    return Detection(tuple(float(v) for v in box), score, cid, name)


def test_assignment_hand_geometry() -> None:
    vehicles = np.array([[0, 0, 100, 100], [80, 0, 200, 100]], float)
    plates = np.array([
        [10, 80, 30, 90],     # wholly in vehicle 0 only
        [85, 80, 95, 90],     # wholly in both: tie on fraction 1.0 -> smaller box (0: 10000 < 12000)
        [90, 50, 130, 60],    # in 0: x 90-100 -> 10x10=100 of 400 (0.25); in 1: 90-130 -> 400/400 = 1
        [190, 90, 230, 110],  # in 1: x 190-200, y 90-100 -> 100 of 800 = 0.125 < 0.5 -> none
        [300, 300, 310, 310],  # outside everything
    ], float)
    assert assign_to_vehicles(plates, vehicles).tolist() == [0, 0, 1, -1, -1]
    # with a low enough threshold the partial plate goes to vehicle 1
    assert assign_to_vehicles(plates, vehicles, min_inside=0.1).tolist() == [0, 0, 1, 1, -1]


def test_assignment_largest_fraction_wins() -> None:
    vehicles = np.array([[0, 0, 50, 50], [40, 0, 100, 50]], float)
    # plate 30..60 x 10..20 (area 300): in 0 -> x 30-50 = 20*10 = 200 (0.667); in 1 -> x 40-60 = 200 (0.667)
    # tie -> smaller vehicle (0: 2500 < 1: 3000)
    assert assign_to_vehicles(np.array([[30, 10, 60, 20]], float), vehicles).tolist() == [0]
    # plate 35..65: in 0 -> 15*10 = 150 (0.5); in 1 -> 25*10 = 250 (0.833) -> 1
    assert assign_to_vehicles(np.array([[35, 10, 65, 20]], float), vehicles).tolist() == [1]


def test_assignment_empty() -> None:
    assert assign_to_vehicles(np.zeros((0, 4)), np.zeros((2, 4))).shape == (0,)
    assert assign_to_vehicles(np.array([[0, 0, 1, 1]], float), np.zeros((0, 4))).tolist() == [-1]
    assert assign_indices([], []) == []


def test_build_frame_result_and_json_schema() -> None:
    car_a = _det((0, 0, 100, 100), "car", 0.95)
    car_b = _det((200, 0, 300, 100), "car", 0.8)
    plate_b = _det((230, 80, 270, 90), "license_plate", 0.9, 1)
    plate_free = _det((500, 500, 540, 510), "license_plate", 0.7, 1)
    sticker_a = _det((5, 5, 15, 15), "disabled_sticker", 0.6, 2)
    person = _det((400, 0, 420, 50), "person", 0.5, 3)
    dets = [plate_b, car_a, sticker_a, person, plate_free, car_b]
    assert [d.box for d in plates_of(dets)] == [plate_b.box, plate_free.box]
    info = [PlateInfo("12가3456", 0.876543, True, False, "white"), PlateInfo("?", 0.1, False, None, None)]
    frame = build_frame_result(dets, (640, 480), info, timing={"detect": 12.345})
    assert frame.vehicles == (car_a, car_b)
    assert [p.vehicle for p in frame.plates] == [1, None]
    assert [s.vehicle for s in frame.stickers] == [0]
    assert frame.others == (person,)
    assert frame.counts() == {"car": 2, "license_plate": 2, "disabled_sticker": 1, "person": 1}

    doc = json.loads(json.dumps(frame.to_json_dict("a/b.jpg", include_timing=True), ensure_ascii=False))
    assert doc["image"] == "a/b.jpg" and doc["width"] == 640 and doc["height"] == 480
    assert doc["timing_ms"] == {"detect": 12.35}
    classes = [d["class"] for d in doc["detections"]]
    assert classes == ["car", "car", "license_plate", "license_plate", "disabled_sticker", "person"]
    p0 = doc["detections"][2]
    assert p0["box"] == [230.0, 80.0, 270.0, 90.0] and p0["score"] == 0.9
    assert p0["plate"] == {"text": "12가3456", "confidence": 0.8765, "valid": True, "ev": False,
                           "color": "white"}
    assert p0["vehicle"] == 1 and doc["detections"][p0["vehicle"]]["box"] == [200.0, 0.0, 300.0, 100.0]
    assert doc["detections"][3]["vehicle"] is None
    assert doc["detections"][4]["vehicle"] == 0
    assert "vehicle" not in doc["detections"][0] and "plate" not in doc["detections"][0]
    assert "vehicle" not in doc["detections"][5]


def test_json_without_lpr_has_no_plate_key() -> None:
    frame = build_frame_result([_det((1, 2, 3, 4), "license_plate")], (10, 10))
    doc = frame.to_json_dict("x.png")
    assert "plate" not in doc["detections"][0] and doc["detections"][0]["vehicle"] is None
    assert "timing_ms" not in doc


def test_plate_info_count_must_match() -> None:
    with pytest.raises(ValueError):
        build_frame_result([_det((1, 2, 3, 4), "license_plate")], (10, 10), [])


def test_results_are_frozen() -> None:
    p = PlateResult(_det((0, 0, 1, 1), "license_plate"))
    with pytest.raises(AttributeError):
        p.text = "x"  # type: ignore[misc]
    assert not p.read
    f = FrameResult((), (p,), (StickerResult(_det((0, 0, 1, 1), "disabled_sticker")),))
    assert f.to_json_dict()["detections"][1]["vehicle"] is None


def test_edge_modules_import_without_tensorflow(repo_root) -> None:
    """The application building blocks are edge runtime: importable with TensorFlow unavailable."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "import core.results, core.plate_color, core.crops, core.images, core.tracking, core.video, "
            "core.drawing\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras') "
            "and sys.modules[m] is not None]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(repo_root), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
