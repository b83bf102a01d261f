"""--images expansion and image reading with one-line errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import AlprError
from core.images import expand_image_args, read_image, read_image_list


def _png(path: Path, value: int = 100) -> Path:
    ok, buf = cv2.imencode(".png", np.full((8, 12, 3), value, np.uint8))
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    _png(tmp_path / "imgs" / "b.png")
    _png(tmp_path / "imgs" / "a.JPG")  # a PNG with a .JPG name: the name decides the listing
    _png(tmp_path / "imgs" / "sub" / "c.png")
    (tmp_path / "imgs" / "notes.md").write_text("hello")
    (tmp_path / "imgs" / ".hidden.png").write_bytes(b"")
    _png(tmp_path / "other" / "z.png")
    _png(tmp_path / "other" / "y.bmp")
    return tmp_path


def test_folder_sorted_skips_non_images(tree: Path) -> None:
    res = expand_image_args(str(tree / "imgs"))
    assert [Path(p).name for p in res.images] == ["a.JPG", "b.png"]
    assert [Path(p).name for p in res.skipped] == ["notes.md"]
    assert res.missing == []
    rec = expand_image_args([str(tree / "imgs")], recursive=True)
    assert [Path(p).name for p in rec.images] == ["a.JPG", "b.png", "c.png"]


def test_several_args_order_dedupe_glob_missing(tree: Path) -> None:
    args = [str(tree / "other" / "z.png"), str(tree / "imgs"), str(tree / "other" / "*"),
            str(tree / "nothing" / "*.jpg"), str(tree / "absent.jpg"), str(tree / "imgs" / "notes.md")]
    res = expand_image_args(args)
    names = [str(Path(p).relative_to(tree)) for p in res.images]
    # z first (explicit), then the folder, then the glob's remaining match; notes.md given explicitly
    # was already listed as skipped from the folder, so it is not repeated
    assert names == ["other/z.png", "imgs/a.JPG", "imgs/b.png", "other/y.bmp"]
    assert res.missing == [str(tree / "nothing" / "*.jpg"), str(tree / "absent.jpg")]
    assert [Path(p).name for p in res.skipped] == ["notes.md"]


def test_explicit_file_taken_whatever_its_name(tree: Path) -> None:
    res = expand_image_args([str(tree / "imgs" / "notes.md")])
    assert res.images == [str(tree / "imgs" / "notes.md")] and res.skipped == []


def test_txt_argument_is_an_image_list(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Darknet's train.txt: entries relative to the list, then to the working directory, absolute ones as
    they are; comments and blank lines skipped; a missing entry reported with its line."""
    monkeypatch.chdir(tree)
    lst = tree / "imgs" / "list.txt"
    lst.write_text(f"# a comment\nb.png\n\nother/z.png\n{tree / 'other' / 'y.bmp'}\ngone.png\n", encoding="utf-8")
    res = expand_image_args([str(lst)])
    assert [str(Path(p).relative_to(tree)) for p in res.images] == ["imgs/b.png", "other/z.png", "other/y.bmp"]
    assert res.missing == [f"{lst}:6: gone.png"] and res.skipped == []


def test_image_list_prefers_the_lists_folder(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry that exists both beside the list and in the working directory is the one beside the list."""
    monkeypatch.chdir(tree / "other")
    _png(tree / "other" / "b.png")
    lst = tree / "imgs" / "list.txt"
    lst.write_text("b.png\nz.png\n", encoding="utf-8-sig")  # with the BOM a Windows editor writes
    assert read_image_list(lst) == [(1, tree / "imgs" / "b.png"), (2, tree / "other" / "z.png")]


def test_read_image_good_and_unicode(tmp_path: Path) -> None:
    p = _png(tmp_path / "한글 폴더" / "車.png", 77)
    img = read_image(p)
    assert img.shape == (8, 12, 3) and img.dtype == np.uint8 and (img == 77).all()
    gray_path = tmp_path / "g.png"
    ok, buf = cv2.imencode(".png", np.full((5, 6), 9, np.uint8))
    gray_path.write_bytes(buf.tobytes())
    assert read_image(gray_path).shape == (5, 6, 3)


@pytest.mark.parametrize("content,reason", [(b"", "empty file"), (b"not an image at all", "not an image"),
                                             (None, "corrupt")])
def test_read_image_bad_files_one_line(tmp_path: Path, content: bytes | None, reason: str) -> None:
    p = tmp_path / "bad.jpg"
    if content is None:  # a truncated JPEG
        ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
        content = buf.tobytes()[:40]
    p.write_bytes(content)
    with pytest.raises(AlprError) as info:
        read_image(p)
    msg = str(info.value)
    assert reason in msg and "\n" not in msg and str(p) in msg


def test_read_image_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(AlprError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(AlprError, match="folder"):
        read_image(tmp_path)


# --- core.drawing (annotating the images read above) ------------------------------------------------------

def _frame():
    from core.results import PlateInfo, build_frame_result
    from core.types import Detection

    dets = [Detection((50, 50, 400, 280), 0.97, 0, "car"),
            Detection((150, 200, 300, 240), 0.9, 1, "license_plate"),
            Detection((420, 150, 490, 170), 0.6, 1, "license_plate")]
    return build_frame_result(dets, (500, 300), [PlateInfo("12가3456", 0.93, True, True, "blue"),
                                                 PlateInfo("AB123", 0.5, False, False, "white")])


def test_draw_frame_boxes_colours() -> None:
    from core.drawing import CLASS_COLORS, EV_COLOR, TextRenderer, draw_frame

    img = np.full((300, 500, 3), 80, np.uint8)
    out = draw_frame(img, _frame(), fps=12.0, track_ids=[3], renderer=TextRenderer(font_path=""))
    assert out is img
    assert tuple(img[150, 50]) == CLASS_COLORS["car"]  # left edge of the car box
    assert tuple(img[220, 150]) == EV_COLOR  # the EV plate is drawn in the EV colour
    assert tuple(img[160, 420]) == CLASS_COLORS["license_plate"]
    assert tuple(img[150, 200]) == (80, 80, 80)  # inside the car, away from labels: untouched


def test_unicode_text_drawn_with_font_or_question_marks() -> None:
    from core.drawing import TextRenderer, ascii_fallback, find_cjk_font

    assert ascii_fallback("12가3456 皖A") == "12?3456 ?A"
    plain = TextRenderer(font_path="")
    assert not plain.unicode_ok

    def drawn(renderer: TextRenderer, text: str) -> np.ndarray:
        img = np.zeros((40, 120, 3), np.uint8)
        renderer.draw(img, text, (0, 0), (255, 255, 255), 20)
        return img

    # without a font both Hangul syllables become the same '?'
    assert np.array_equal(drawn(plain, "12가"), drawn(plain, "12나"))
    assert drawn(plain, "12가").any()
    font = find_cjk_font()
    if font is None:
        pytest.skip("no CJK font installed (set ALPR_FONT)")
    pil = pytest.importorskip("PIL")
    assert pil is not None
    real = TextRenderer(font_path=font)
    assert real.unicode_ok
    a, b = drawn(real, "12가"), drawn(real, "12나")
    assert a.any() and b.any() and not np.array_equal(a, b)
