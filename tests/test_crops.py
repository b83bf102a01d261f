"""Crops: clamping at the edges, padding, safe names, no overwrite, unicode paths, atomic writes."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.crops import clamp_box, crop, crop_dir, encode_image, safe_name, save_crop, write_new_file
from core.errors import AlprError


def test_clamp_box_edges() -> None:
    assert clamp_box((10.2, 20.7, 30.1, 40.0), 100, 50) == (10, 20, 31, 40)
    assert clamp_box((-5, -3, 20, 10), 100, 50) == (0, 0, 20, 10)
    assert clamp_box((90, 40, 130, 70), 100, 50) == (90, 40, 100, 50)
    assert clamp_box((30, 10, 10, 5), 100, 50) == (10, 5, 30, 10)  # swapped corners
    x1, y1, x2, y2 = clamp_box((150, 60, 200, 80), 100, 50)  # wholly outside
    assert x1 == x2 == 100 and y1 == y2 == 50
    x1, y1, x2, y2 = clamp_box((-50, -20, -10, -5), 100, 50)
    assert x2 == x1 == 0 and y2 == y1 == 0


def test_clamp_box_padding() -> None:
    # 20 x 10 box, pad 0.1 -> 2 px left/right, 1 px top/bottom
    assert clamp_box((40, 20, 60, 30), 100, 50, pad=0.1) == (38, 19, 62, 31)
    # at the corner the padding is cut by the image
    assert clamp_box((0, 0, 20, 10), 100, 50, pad=0.5) == (0, 0, 30, 15)


def test_crop_content_and_empty() -> None:
    img = np.arange(50 * 100 * 3, dtype=np.uint32).reshape(50, 100, 3).astype(np.uint8)
    part = crop(img, (95, 45, 120, 60))
    assert part is not None and part.shape == (5, 5, 3)
    assert np.array_equal(part, img[45:50, 95:100])
    assert crop(img, (200, 200, 300, 300)) is None


def test_safe_name() -> None:
    assert safe_name("12가3456") == "12가3456"
    assert safe_name("皖A·12345") == "皖A_12345"
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("a b\tc\nd") == "a_b_c_d"
    assert safe_name("a:*?<>|\"b") == "a_b"
    assert safe_name("") == "unnamed" and safe_name("///") == "unnamed"
    assert safe_name("x" * 200) == "x" * 80
    # NFD (decomposed) Hangul gives the same name as NFC
    import unicodedata
    assert safe_name(unicodedata.normalize("NFD", "가나")) == "가나"


def test_write_never_overwrites(tmp_path: Path) -> None:
    a = write_new_file(tmp_path / "d", "plate", ".bin", b"one")
    b = write_new_file(tmp_path / "d", "plate", ".bin", b"two")
    c = write_new_file(tmp_path / "d", "plate", "bin", b"three")
    assert [p.name for p in (a, b, c)] == ["plate.bin", "plate_1.bin", "plate_2.bin"]
    assert a.read_bytes() == b"one" and b.read_bytes() == b"two" and c.read_bytes() == b"three"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["plate.bin", "plate_1.bin", "plate_2.bin"]


def test_save_crop_unicode_path_roundtrip(tmp_path: Path) -> None:
    img = np.zeros((60, 120, 3), np.uint8)
    img[10:30, 20:80] = (0, 0, 255)
    out = tmp_path / "출력"
    args = (img, (20, 10, 80, 30), out, "사진/장면 1.jpg", "license_plate", 1)
    p1 = save_crop(*args, text="12가 3456", ext=".png")
    p2 = save_crop(*args, text="12가 3456", ext=".png")
    assert p1 == out / "crop" / "장면_1" / "license_plate_1_12가_3456.png"
    assert p2 is not None and p2.name == "license_plate_1_12가_3456_1.png"
    back = cv2.imdecode(np.fromfile(str(p1), np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == (20, 60, 3) and (back == (0, 0, 255)).all()
    assert save_crop(img, (500, 500, 600, 600), out, "x.jpg", "car", 2) is None
    assert crop_dir(out, "/a/b/c.d.jpg") == out / "crop" / "c_d"
    # no temporary files left behind
    assert sorted(p.name for p in (out / "crop" / "장면_1").iterdir()) == [p1.name, p2.name]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Path, data: bytes) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(OSError):
        write_new_file(tmp_path, "x", ".jpg", b"data")
    assert list(tmp_path.iterdir()) == []


def test_encode_error_is_alpr_error() -> None:
    with pytest.raises(AlprError):
        encode_image(np.zeros((4, 4, 3), np.uint8), ".notaformat")
