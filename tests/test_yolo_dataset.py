"""core.yolo_dataset: a tiny hand-written folder, bad lines reported with file:line, plate text token."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import AlprError
from core.yolo_dataset import YoloBox, box_from_xyxy, load_dataset, parse_line, read_labels, write_labels


def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xd9")  # the reader never decodes images


def test_parse_line_with_and_without_text() -> None:
    assert parse_line("1 0.5 0.25 0.2 0.1 12가3456") == YoloBox(1, 0.5, 0.25, 0.2, 0.1, "12가3456")
    assert parse_line("0 0.5 0.5 1 1") == YoloBox(0, 0.5, 0.5, 1.0, 1.0, None)


@pytest.mark.parametrize(
    "line, reason",
    [
        ("1 0.5 0.5 0.2", "expected 5 or 6 fields"),
        ("1 0.5 0.5 0.2 0.1 a b", "expected 5 or 6 fields"),
        ("x 0.5 0.5 0.2 0.1", "not an integer"),
        ("3 0.5 0.5 0.2 0.1", "out of range"),
        ("-1 0.5 0.5 0.2 0.1", "out of range"),
        ("1 1.5 0.5 0.2 0.1", "outside 0..1"),
        ("1 0.5 0.5 0 0.1", "not in (0, 1]"),
        ("1 0.5 0.5 0.2 nan", "not finite"),
        ("1 0.5 0.5 0.2 abc", "not numbers"),
    ],
)
def test_parse_line_rejects(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        parse_line(line, num_classes=3)


def test_folder_with_bad_lines(tmp_path: Path) -> None:
    _touch_image(tmp_path / "a.jpg")
    lines = "# comment\n0 0.5 0.5 0.4 0.3\n\n1 0.5 0.8 0.1 0.05 서울12바3456\n7 0.5 0.5 0.1 0.1\n"
    (tmp_path / "a.txt").write_text(lines, encoding="utf-8")
    _touch_image(tmp_path / "sub" / "b.png")
    (tmp_path / "sub" / "b.txt").write_text("2 0.2 0.2 0.1\n", encoding="utf-8")
    _touch_image(tmp_path / "c.jpg")  # no label file: a background image
    ds = load_dataset(tmp_path, num_classes=3)
    by_name = {s.image.name: s for s in ds.samples}
    assert sorted(by_name) == ["a.jpg", "b.png", "c.jpg"]
    assert by_name["a.jpg"].boxes == (
        YoloBox(0, 0.5, 0.5, 0.4, 0.3),
        YoloBox(1, 0.5, 0.8, 0.1, 0.05, "서울12바3456"),
    )
    assert by_name["b.png"].boxes == ()
    assert by_name["c.jpg"].label is None
    where = sorted(w for w, _ in ds.problems)
    assert where == [f"{tmp_path / 'a.txt'}:5", f"{tmp_path / 'sub' / 'b.txt'}:1"]
    summary = ds.summary()
    assert "3 images, 2 boxes" in summary and "1 images without a label file" in summary
    assert "2 problems" in summary


def test_folder_takes_every_image_kind_detect_reads(tmp_path: Path) -> None:
    """evaluate.py --dataset and detect.py --images agree on what an image is: .webp and .tif count too."""
    for name in ("a.webp", "b.TIF", "c.jpg"):
        _touch_image(tmp_path / name)
    (tmp_path / "notes.md").write_text("not an image", encoding="utf-8")
    assert sorted(s.image.name for s in load_dataset(tmp_path).samples) == ["a.webp", "b.TIF", "c.jpg"]


def test_list_file_and_darknet_labels_twin(tmp_path: Path) -> None:
    _touch_image(tmp_path / "images" / "x.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text("1 0.25 0.75 0.5 0.5\n", encoding="utf-8")
    lst = tmp_path / "train.txt"
    lst.write_text("images/x.jpg\nimages/missing.jpg\n", encoding="utf-8")
    ds = load_dataset(lst)
    assert [s.image.name for s in ds.samples] == ["x.jpg"]
    assert ds.samples[0].boxes == (YoloBox(1, 0.25, 0.75, 0.5, 0.5),)
    assert ds.problems == [(f"{lst}:2", "image not found: images/missing.jpg")]


def test_missing_source_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(AlprError, match="dataset not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(AlprError, match="no images"):
        load_dataset(tmp_path)


def test_xyxy_round_trip_and_write(tmp_path: Path) -> None:
    box = box_from_xyxy(1, 40, 30, 140, 60, 200, 100, text="京A12345")
    # hand computation: centre (90, 45) / (200, 100), size (100, 30) / (200, 100)
    assert (box.cx, box.cy, box.w, box.h) == (0.45, 0.45, 0.5, 0.3)
    np.testing.assert_allclose(box.to_xyxy(200, 100), (40, 30, 140, 60))
    clipped = box_from_xyxy(0, -10, -5, 50, 20, 100, 100)
    np.testing.assert_allclose(clipped.to_xyxy(100, 100), (0, 0, 50, 20))
    write_labels(tmp_path / "l.txt", [box, clipped])
    first = (tmp_path / "l.txt").read_text(encoding="utf-8").splitlines()[0]
    assert first == "1 0.450000 0.450000 0.500000 0.300000 京A12345"
    boxes, problems = read_labels(tmp_path / "l.txt")
    assert problems == [] and boxes[0].text == "京A12345" and boxes[1].class_id == 0
