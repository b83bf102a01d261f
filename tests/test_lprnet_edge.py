"""TF-free parts of the reader: datasets, pre-processing, scoring, and the no-TensorFlow import rule."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import AlprError
from lprnet.charset import load_charset
from lprnet.dataset import list_samples, load_crops, text_from_filename
from lprnet.evaluate import align, score
from lprnet.preprocess import preprocess_batch
from tests.paths import REPO

EDGE_MODULES = ["lprnet.charset", "lprnet.ctc", "lprnet.preprocess", "lprnet.dataset", "lprnet.reader",
                "lprnet.benchmark", "lprnet.evaluate", "lprnet.home"]


def test_edge_modules_import_without_tensorflow() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["tensorflow"] = None  # any import of tensorflow now raises ImportError
        sys.modules["keras"] = None
        for name in {EDGE_MODULES!r}:
            __import__(name)
        assert "tensorflow" not in [m for m in sys.modules if sys.modules[m] is not None]
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "name,text",
    [("京PL3N67.jpg", "京PL3N67"), ("01주6939-2.jpg", "01주6939"), ("42소9166_3.png", "42소9166"),
     ("인천86바3430.jpg", "인천86바3430"), ("1234-10.png", "1234")],
)
def test_text_from_filename(name: str, text: str) -> None:
    assert text_from_filename(name) == text


def _png(path: Path, value: int = 200, shape=(24, 94, 3)) -> None:
    ok, buf = cv2.imencode(".png", np.full(shape, value, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())


def test_folder_listing_counts_bad_files(tmp_path: Path) -> None:
    _png(tmp_path / "12가3456.png")
    _png(tmp_path / "12가3456-2.png", shape=(40, 160, 3))
    _png(tmp_path / "12X3456.png")  # X is not in the Korean charset
    (tmp_path / "34나5678.jpg").write_bytes(b"not a jpeg at all")  # corrupt
    (tmp_path / "notes.txt").write_text("ignored")
    cs = load_charset("kr")
    listing = list_samples(tmp_path, cs)
    assert [s.text for s in listing.samples] == ["12가3456", "12가3456", "34나5678"]
    assert len(listing.skipped) == 1 and "'X'" in listing.skipped[0][1]
    images, texts = load_crops(listing)
    assert images.shape == (2, 24, 94, 3) and texts == ["12가3456", "12가3456"]
    assert len(listing.skipped) == 2
    assert "corrupt" in listing.skipped[1][1]
    assert "2 samples, 2 skipped (1 bad image, 1 bad label" in listing.summary()


def test_label_file(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    labels = tmp_path / "labels.tsv"
    labels.write_text("# comment\nimg/a.png\t서울12가3456\nimg/b.png\t12가34ñ6\nno tab here\n\n", encoding="utf-8")
    listing = list_samples(labels, load_charset("kr"))
    assert [s.text for s in listing.samples] == ["서울12가3456"]
    reasons = [r for _, r in listing.skipped]
    assert reasons[0].startswith("bad label") and reasons[1].startswith("malformed line")


def test_empty_and_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(AlprError, match="no usable plate crops in"):
        list_samples(tmp_path, load_charset("cn"))
    with pytest.raises(AlprError, match="plate data not found"):
        list_samples(tmp_path / "nope", load_charset("cn"))
    (tmp_path / "bad.jpg").write_bytes(b"")  # 'bad' is not a Chinese plate text
    with pytest.raises(AlprError, match=r"no usable plate crops in .*1 skipped \(1 bad label"):
        list_samples(tmp_path, load_charset("cn"))


def test_preprocess_values_and_resize() -> None:
    crop = np.zeros((48, 188, 3), np.uint8)
    crop[:, 94:] = 255
    x = preprocess_batch([crop, np.full((24, 94), 128, np.uint8)])
    assert x.shape == (2, 24, 94, 3) and x.dtype == np.float32
    assert x[0, 5, 10, 0] == pytest.approx((0 - 127.5) * 0.0078125)
    assert x[0, 5, 80, 2] == pytest.approx((255 - 127.5) * 0.0078125)
    assert np.allclose(x[1], 0.5 * 0.0078125)
    with pytest.raises(AlprError, match="HxWx3"):
        preprocess_batch([np.zeros((24, 94, 2), np.uint8)])


def test_align_and_score_by_hand() -> None:
    # truth 1 2 3, prediction 1 4 3 5: one substitution 2->4 and one insertion of 5.
    assert align([1, 2, 3], [1, 4, 3, 5]) == [(2, 4), (-1, 5)]
    assert align([1, 2, 3], [1, 3]) == [(2, -1)]
    cs = load_charset("kr")
    res = score(["12가3456", "12나3456", "1234"], ["12가3456", "12가3456", "12가3456"], cs)
    assert res["count"] == 3
    assert res["sequence_accuracy"] == pytest.approx(1 / 3)
    # edits: 1 (가->나) + 3 (가, 5, 6 deleted from 12가3456 -> 1234... by Levenshtein: 3) over 21 tokens
    assert res["char_accuracy"] == pytest.approx(1 - 4 / 21)
    assert res["format_valid_rate"] == pytest.approx(2 / 3)
    assert ["가->나", 1] in res["confusions"]
    # per truth character: 가 occurs 3 times, substituted once and deleted once; 5 and 6 deleted once of 3
    assert res["char_errors"] == [["가", 3, 2], ["5", 3, 1], ["6", 3, 1]]


def test_label_file_accepts_extra_columns_of_the_renderer(tmp_path) -> None:
    """tools.synth.plates writes filename, text, kind, ev, lines: the first two are what matters."""
    import cv2
    import numpy as np

    from lprnet.charset import load_charset
    from lprnet.dataset import list_label_file

    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((24, 94, 3), 200, np.uint8))
    (tmp_path / "labels.txt").write_text("a.jpg\t12가3456\tkr_white\t0\t1\nbroken-line\n", encoding="utf-8")
    listing = list_label_file(tmp_path / "labels.txt", load_charset("kr"))
    assert [s.text for s in listing.samples] == ["12가3456"]
    assert [(s.kind, s.lines) for s in listing.samples] == [("kr_white", 1)]
    assert len(listing.skipped) == 1 and "malformed" in listing.skipped[0][1]


def test_two_line_crops_squashed_to_the_input_size_are_counted(tmp_path) -> None:
    """A two-line crop rendered straight at 94x24 (aspect 3.9) is wider than any the runtime stitches
    (aspect < 2.6), so training on it stitched would teach a layout the runtime never produces; a
    two-line crop at its own size (150x80, aspect 1.9) and a one-line 94x24 crop are fine."""
    cv2.imwrite(str(tmp_path / "squashed.png"), np.full((24, 94, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "tall.png"), np.full((80, 150, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "one.png"), np.full((24, 94, 3), 200, np.uint8))
    (tmp_path / "labels.txt").write_text(
        "squashed.png\t서울12가3456\tkr_yellow2\t0\t2\n"
        "tall.png\t서울12가3456\tkr_yellow2\t0\t2\n"
        "one.png\t12가3456\tkr_white\t0\t1\n", encoding="utf-8")
    listing = list_samples(tmp_path / "labels.txt", load_charset("kr"))
    images, _ = load_crops(listing)
    assert images.shape == (3, 24, 94, 3)
    assert listing.wide_two_line == 1


def test_accuracy_by_kind_by_hand() -> None:
    from lprnet.evaluate import accuracy_by_kind

    preds = ["12가3456", "12나3456", "서울12가3456", "34다5678", "1"]
    texts = ["12가3456", "12가3456", "서울12가3456", "34다5678", "2"]
    kinds = ["kr_white", "kr_white", "kr_yellow", "", "kr_white"]
    # kr_white: 1 of 3 right; kr_yellow 1 of 1; the unlabelled crop under "?"
    assert accuracy_by_kind(preds, texts, kinds) == {
        "?": {"count": 1, "sequence_accuracy": 1.0},
        "kr_white": {"count": 3, "sequence_accuracy": pytest.approx(1 / 3)},
        "kr_yellow": {"count": 1, "sequence_accuracy": 1.0},
    }


def test_shrinking_averages_the_pixels_it_drops() -> None:
    """Independent noise shrunk 4x on each axis: averaging the 16 pixels behind each output pixel divides
    the noise's spread by 4; linear interpolation reads at most 2x2 of them (spread / 2 or more) and
    leaves the other pixels out, which is what aliases the strokes of a large crop."""
    from lprnet.preprocess import fit_size, resize_crop

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (96, 376, 3)).astype(np.uint8)
    out = resize_crop(noise)
    assert out.shape == (24, 94, 3)
    ratio = out.astype(np.float64).std() / noise.astype(np.float64).std()
    assert 0.22 < ratio < 0.28  # 1/4
    # width shrinks 4x, height grows 2x: rows that are all the same noise average 4 columns (spread / 2;
    # linear: 2 columns, / 1.41) and stay the same rows
    row = rng.integers(0, 256, (1, 376, 3)).astype(np.uint8)
    out = fit_size(np.repeat(row, 12, axis=0), 94, 24)
    assert out.shape == (24, 94, 3) and (out == out[:1]).all()
    ratio = out[0].astype(np.float64).std() / row.astype(np.float64).std()
    assert 0.44 < ratio < 0.56  # 1/2
    # a crop at the input size is left as it is; a smaller one grows as cv2's linear resize makes it
    crop = rng.integers(0, 256, (24, 94, 3)).astype(np.uint8)
    assert np.array_equal(resize_crop(crop), crop)
    small = crop[:12, :47]
    assert np.array_equal(resize_crop(small), cv2.resize(small, (94, 24), interpolation=cv2.INTER_LINEAR))


def test_label_file_char_px_column(tmp_path) -> None:
    """The renderer's sixth column (smallest character height in px) reaches the samples; a missing or
    unreadable value is 0 (unknown)."""
    from lprnet.dataset import list_label_file

    for name in ("a", "b", "c", "d"):
        cv2.imwrite(str(tmp_path / f"{name}.jpg"), np.full((24, 94, 3), 200, np.uint8))
    (tmp_path / "labels.txt").write_text(
        "a.jpg\t12가3456\tkr_white\t0\t1\t17.3\n"
        "b.jpg\t12가3457\tkr_white\t0\t1\n"
        "c.jpg\t12가3458\tkr_white\t0\t1\tnan\n"
        "d.jpg\t12가3459\tkr_white\t0\t1\t-2\n", encoding="utf-8")
    listing = list_label_file(tmp_path / "labels.txt", load_charset("kr"))
    assert [s.char_px for s in listing.samples] == [pytest.approx(17.3), 0.0, 0.0, 0.0]


def test_accuracy_by_char_px_by_hand() -> None:
    from lprnet.evaluate import accuracy_by_char_px

    preds = ["a", "b", "x", "d", "e", "f", "g"]
    texts = ["a", "b", "c", "d", "e", "f", "z"]
    px = [5.0, 7.9, 10.0, 14.99, 15.0, 30.0, 0.0]  # the last is unknown: left out
    # <8: a, b right (2/2); 8-12: x wrong (0/1); 12-15: d (1/1); 15-24: e (1/1); >=24: f (1/1)
    # below the 15 px spec: a, b, x, d -> 3 of 4; within: e, f -> 2 of 2
    assert accuracy_by_char_px(preds, texts, px) == {
        "<8": {"count": 2, "sequence_accuracy": 1.0},
        "8-12": {"count": 1, "sequence_accuracy": 0.0},
        "12-15": {"count": 1, "sequence_accuracy": 1.0},
        "15-24": {"count": 1, "sequence_accuracy": 1.0},
        ">=24": {"count": 1, "sequence_accuracy": 1.0},
        "below_spec": {"count": 4, "sequence_accuracy": 0.75},
        "within_spec": {"count": 2, "sequence_accuracy": 1.0},
    }
