"""tools.synth.scenes: determinism, boxes inside the image and on what is drawn, occlusion, dataset CLI."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.yolo_dataset import load_dataset, read_labels
from tools.synth.scenes import VehicleSpec, render_demo, render_scene, write_scenes

HANGUL = "가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주아바사자배하허호"
REGIONS = "서울|부산|대구|인천|광주|대전|울산|세종|경기|강원|충북|충남|전북|전남|경북|경남|제주"
KR_RE = re.compile(f"^({REGIONS})?[0-9]{{2,3}}[{HANGUL}][0-9]{{4}}$")


def test_same_seed_same_scene() -> None:
    a = render_scene(np.random.default_rng([3, 7]), 160, 160)
    b = render_scene(np.random.default_rng([3, 7]), 160, 160)
    assert np.array_equal(a.image, b.image) and a.objects == b.objects
    c = render_scene(np.random.default_rng([3, 8]), 160, 160)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("seed", range(12))
def test_random_scenes_labels_valid(seed: int) -> None:
    scene = render_scene(np.random.default_rng([11, seed]), 256, 192)
    assert scene.image.shape == (192, 256, 3)
    for o in scene.objects:
        x1, y1, x2, y2 = o.box
        assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 192
        assert o.class_id in (0, 1, 2)
        assert x2 - x1 >= (6, 6, 5)[o.class_id] and y2 - y1 >= (6, 3, 5)[o.class_id]
        if o.text is not None:
            assert o.class_id == 1 and KR_RE.match(o.text)


def test_boxes_cover_what_is_drawn() -> None:
    """One white-plated car with a sticker, daylight, nothing in front: the plate box holds a white
    plate of the real aspect ratio, the sticker box is blue, both inside the car box."""
    spec = VehicleSpec(x=0.5, bottom=0.95, width=0.6, view="front", kind="kr_white", text="12가3456",
                       sticker=True, paint=(40, 40, 40))
    scene = render_scene(np.random.default_rng(1), 480, 360, vehicles=[spec], night=False, rain=False,
                         context="parking", occluders=False)
    by_class = {o.class_id: o for o in scene.objects}
    assert sorted(o.class_id for o in scene.objects) == [0, 1, 2]
    car, plate, sticker = by_class[0], by_class[1], by_class[2]
    assert plate.text == "12가3456"
    # car: the spec says 0.6 * 480 = 288 px wide, centred at 240, bottom at 0.95 * 360 = 342
    assert abs((car.box[2] - car.box[0]) - 288) < 10 and abs((car.box[0] + car.box[2]) / 2 - 240) < 6
    assert abs(car.box[3] - 342) < 3
    for inner in (plate, sticker):
        assert car.box[0] <= inner.box[0] and car.box[1] <= inner.box[1]
        assert inner.box[2] <= car.box[2] and inner.box[3] <= car.box[3]
    x1, y1, x2, y2 = (int(round(v)) for v in plate.box)
    crop = scene.image[y1:y2, x1:x2].astype(int)
    aspect = (x2 - x1) / (y2 - y1)
    assert 3.5 < aspect < 6.0  # 520 x 110 mm plate
    bright = crop.min(axis=2) > 150  # the white background
    assert bright.mean() > 0.3
    assert (crop.max(axis=2) < 100).mean() > 0.1  # black glyphs
    # just outside the plate box, below it, is the dark bumper of a dark car, not plate
    assert scene.image[y2 + 2 : y2 + 5, x1:x2].mean() < 120
    sx1, sy1, sx2, sy2 = (int(round(v)) for v in sticker.box)
    s = scene.image[sy1:sy2, sx1:sx2].astype(int)
    blue = (s[..., 0] > s[..., 2] + 60)
    assert blue.mean() > 0.4 and abs((sx2 - sx1) - (sy2 - sy1)) <= 2


def test_hidden_plate_gets_no_label() -> None:
    """A small car right behind a big one: it and its plate are covered, so only one car and one
    plate are labelled."""
    far = VehicleSpec(x=0.5, bottom=0.75, width=0.15, view="rear", kind="kr_white", text="11가1111")
    near = VehicleSpec(x=0.5, bottom=1.05, width=0.7, view="rear", kind="kr_white", text="22나2222")
    scene = render_scene(np.random.default_rng(2), 416, 416, vehicles=[near, far], night=False, rain=False,
                         context="street", occluders=False)
    assert sorted(o.class_id for o in scene.objects) == [0, 1]
    assert [o.text for o in scene.objects if o.class_id == 1] == ["22나2222"]


def test_night_and_rain_render() -> None:
    spec = VehicleSpec(x=0.5, bottom=0.9, width=0.5, view="rear", kind="kr_ev", text="123가4567")
    day = render_scene(np.random.default_rng(4), 200, 150, vehicles=[spec], night=False, rain=False,
                       occluders=False)
    night = render_scene(np.random.default_rng(4), 200, 150, vehicles=[spec], night=True, rain=True,
                         occluders=False)
    assert night.image.mean() < day.image.mean() * 0.75
    assert [o.text for o in night.objects if o.class_id == 1] == ["123가4567"]


def test_write_scenes_dataset(tmp_path: Path, repo_root: Path) -> None:
    out = write_scenes(str(tmp_path / "ds"), 4, seed=5, size=128, valid_fraction=0.25, workers=1,
                       progress=False)
    train = (out / "train.txt").read_text(encoding="utf-8").split()
    valid = (out / "valid.txt").read_text(encoding="utf-8").split()
    assert len(train) == 3 and len(valid) == 1
    names = (out / "obj.names").read_text(encoding="utf-8")
    custom = (repo_root / "data" / "classes" / "custom.names").read_text(encoding="utf-8")
    assert names == custom.strip() + "\n"
    ds = load_dataset(out / "train.txt", num_classes=3)
    assert ds.problems == [] and len(ds.samples) == 3
    assert any(b.text for s in ds.samples for b in s.boxes)


def test_cli(tmp_path: Path, repo_root: Path) -> None:
    cmd = [sys.executable, "-m", "tools.synth.scenes", "--count", "3", "--out", str(tmp_path / "s"),
           "--seed", "1", "--size", "96", "--valid_fraction", "0.34", "--workers", "2", "--charset", "cn"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "s" / "images").glob("*.jpg"))) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left


def test_demo_sidecar_matches_the_renderer(repo_root: Path) -> None:
    committed, problems = read_labels(repo_root / "data" / "images" / "demo.txt", num_classes=3)
    assert problems == []
    scene = render_demo()
    assert scene.image.shape == (720, 1280, 3)
    fresh = scene.yolo_boxes()
    assert [b.class_id for b in committed] == [b.class_id for b in fresh]
    assert [b.text for b in committed] == [b.text for b in fresh]
    np.testing.assert_allclose([[b.cx, b.cy, b.w, b.h] for b in committed],
                               [[b.cx, b.cy, b.w, b.h] for b in fresh], atol=2e-6)
    classes = sorted(b.class_id for b in committed)
    assert classes == [0, 0, 0, 1, 1, 1, 2]
    assert all(KR_RE.match(b.text) for b in committed if b.class_id == 1)


def test_foreign_plate_is_a_plate_without_text() -> None:
    spec = VehicleSpec(x=0.5, bottom=0.95, width=0.6, view="rear", foreign=True, paint=(40, 40, 40))
    scene = render_scene(np.random.default_rng(6), 320, 240, vehicles=[spec], night=False, rain=False,
                         occluders=False)
    plates = [o for o in scene.objects if o.class_id == 1]
    assert len(plates) == 1 and plates[0].text is None and plates[0].visible > 0.97
    x1, y1, x2, y2 = plates[0].box
    assert 1.6 < (x2 - x1) / (y2 - y1) < 6.0  # a US (2:1) or EU (4.7:1) plate
