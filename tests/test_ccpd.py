"""tools.ccpd on hand-made CCPD file names (expected values decoded by hand from the CCPD tables)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.yolo_dataset import load_dataset
from tools import ccpd
from tools.synth.plates import read_labels

# The example of the CCPD README: indices 0_0_22_27_27_33_16 are 皖 A Y 3 3 9 S.
BLUE_NAME = "025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg"
# CCPD2020 style green plate: 12 -> 京, 0 -> A, 3 -> D, 24..28 -> 0 1 2 3 4.
GREEN_NAME = "01-90_90-20&30_120&70-120&70_20&70_20&30_120&30-12_0_3_24_25_26_27_28-100-10.jpg"
# Province index 31 is 警 (not in the reader charset) and 34 (ADS 'O') means "no character".
POLICE_NAME = "01-90_90-20&30_120&70-120&70_20&70_20&30_120&30-31_0_34_24_25_26_27-100-10.jpg"


def test_parse_readme_example() -> None:
    label = ccpd.parse_name("ccpd_base/" + BLUE_NAME)
    assert label.text == "皖AY339S"
    assert label.box == (154, 383, 386, 473)
    assert label.corners == ((154, 383), (363, 402), (386, 473), (177, 454))  # TL, TR, BR, BL
    assert (label.area, label.tilt, label.brightness, label.blur) == (25, (95, 113), 37, 15)
    assert ccpd.usable_text(label)


def test_parse_green_and_unusable() -> None:
    assert ccpd.parse_name(GREEN_NAME).text == "京AD01234"
    police = ccpd.parse_name(POLICE_NAME)
    assert police.text == "警AO0123" and not ccpd.usable_text(police)


@pytest.mark.parametrize(
    "name",
    ["car.jpg", "1-2-3-4-5-6.jpg", "025-95_113-154&383-386&473_177&454-0_0_22_27_27_33_16-37-15.jpg",
     "025-95_113-1&1_5&5-5&5_1&5_1&1_5&1-0_0_99_27_27_33_16-37-15.jpg",
     "025-95_113-1&1_5&5-5&5_1&5_1&1-0_0_22_27_27_33_16-37-15.jpg"],
)
def test_parse_rejects(name: str) -> None:
    with pytest.raises(ValueError):
        ccpd.parse_name(name)


def _make_images(folder: Path) -> None:
    """200x100 images whose plate quad (20,30)-(120,70) is black on its left half, white on its right."""
    folder.mkdir(parents=True)
    img = np.full((100, 200, 3), 128, np.uint8)
    img[30:70, 20:70] = 0
    img[30:70, 70:120] = 255
    for name in (GREEN_NAME, POLICE_NAME):
        cv2.imwrite(str(folder / name), img)
    (folder / "not_ccpd.jpg").write_bytes(b"junk")


def test_to_yolo(tmp_path: Path) -> None:
    src = tmp_path / "ccpd"
    _make_images(src)
    report = ccpd.to_yolo(src, tmp_path / "out", valid_fraction=0.5, seed=0, progress=False)
    assert report.written == 2 and report.without_text == 1 and len(report.skipped) == 1
    assert "not_ccpd.jpg" in report.line()
    out = tmp_path / "out"
    lines = (out / "images" / (Path(GREEN_NAME).stem + ".txt")).read_text(encoding="utf-8").split()
    # box (20,30)-(120,70) in 200x100: centre (70, 50) -> 0.35 0.5; size 100x40 -> 0.5 0.4
    assert lines == ["1", "0.350000", "0.500000", "0.500000", "0.400000", "京AD01234"]
    police = (out / "images" / (Path(POLICE_NAME).stem + ".txt")).read_text(encoding="utf-8").split()
    assert len(police) == 5  # no text token for an unusable plate
    train = (out / "train.txt").read_text(encoding="utf-8").split()
    valid = (out / "valid.txt").read_text(encoding="utf-8").split()
    assert len(train) == 1 and len(valid) == 1 and sorted(train + valid) == sorted(
        "images/" + n for n in (GREEN_NAME, POLICE_NAME)
    )
    names = (out / "obj.names").read_text(encoding="utf-8").split()
    assert names == ["car", "license_plate", "disabled_sticker"]
    ds = load_dataset(out / "train.txt", num_classes=3)
    assert ds.problems == [] and len(ds.samples) == 1


def test_to_crops_rectifies(tmp_path: Path) -> None:
    src = tmp_path / "ccpd"
    _make_images(src)
    report = ccpd.to_crops(src, tmp_path / "crops", progress=False)
    assert report.written == 1 and len(report.skipped) == 2
    rows = read_labels(str(tmp_path / "crops" / "labels.txt"))
    assert rows == [("京AD01234.jpg", "京AD01234", "cn_green", 1, 1)]
    data = np.fromfile(str(tmp_path / "crops" / "京AD01234.jpg"), np.uint8)
    crop = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    assert crop.shape == (24, 94)
    assert crop[:, 5:40].mean() < 20 and crop[:, 54:90].mean() > 235  # black left half, white right half


def test_rectify_tilted_quad() -> None:
    # a tilted white quad on black: the rectified crop must be white everywhere
    img = np.zeros((120, 200, 3), np.uint8)
    quad = np.array([[30, 40], [160, 20], [170, 70], [40, 95]], np.int32)
    cv2.fillConvexPoly(img, quad, (255, 255, 255))
    crop = ccpd.rectify(img, [tuple(p) for p in quad], (94, 24))
    assert crop[2:-2, 2:-2].min() > 200


def test_cli_and_existing_out(tmp_path: Path, repo_root: Path) -> None:
    src = tmp_path / "ccpd"
    _make_images(src)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep")
    cmd = [sys.executable, "-m", "tools.ccpd", "--images", str(src), "--out", str(tmp_path / "busy")]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not an empty folder" in proc.stderr
    assert (tmp_path / "busy" / "x").read_text() == "keep"
    cmd[-1] = str(tmp_path / "c")
    proc = subprocess.run(cmd + ["--crops"], cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "1 written" in proc.stdout and "2 files skipped" in proc.stdout
