"""The shear correction of two-line plates before their line cut (lprnet.preprocess.line_shear)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from lprnet.preprocess import (
    SHEAR_MAX,
    SHEAR_STEPS,
    TOP_WIDTH,
    line_shear,
    stitch_two_lines,
    straightened,
    straightens,
    unshear,
)

BLUE, RED = (255, 0, 0), (0, 0, 255)
STEP = 2 * SHEAR_MAX / (SHEAR_STEPS - 1)


def _tilted_plate(tilt: float, h: int = 90, w: int = 160) -> np.ndarray:
    """A hand-drawn two-line plate whose rows run at ``tilt`` (rows per column, from the centre): three
    blue top-line bars (rows 22-36 at the centre column) and five red bottom-line bars (rows 44-72).
    Each bar is a parallelogram drawn from its corners, so the geometry does not depend on the code
    under test."""
    img = np.full((h, w, 3), 230, np.uint8)
    xc = (w - 1) / 2.0

    def bar(x0: int, x1: int, y0: int, y1: int, colour: tuple) -> None:
        pts = [(x, y + tilt * (x - xc)) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        cv2.fillPoly(img, [np.round(np.array(pts)).astype(np.int32)], colour)

    xs = np.linspace(50, 110, 7).astype(int)
    for i in range(3):
        bar(xs[2 * i], xs[2 * i + 1], 22, 36, BLUE)
    xs = np.linspace(12, 148, 11).astype(int)
    for i in range(5):
        bar(xs[2 * i], xs[2 * i + 1], 44, 72, RED)
    return img


def _mask(img: np.ndarray, bgr: tuple) -> np.ndarray:
    return np.all(np.abs(img.astype(int) - np.array(bgr)) < 60, axis=-1)


@pytest.mark.parametrize("tilt", [-0.2, -0.1, 0.15, 0.25])
def test_line_shear_finds_the_tilt_it_was_drawn_with(tilt: float) -> None:
    assert abs(line_shear(_tilted_plate(tilt)) - tilt) <= STEP + 1e-9


def test_a_level_plate_is_left_alone() -> None:
    img = _tilted_plate(0.0)
    assert abs(line_shear(img)) <= 1e-9
    assert np.array_equal(straightened(img), img)
    assert unshear(img, 0.0) is img
    tiny = np.zeros((6, 40, 3), np.uint8)
    assert line_shear(tiny) == 0.0


def test_straightened_rows_are_horizontal() -> None:
    """After ``straightened`` the blue and red bars are separated by a row; before, no row separates them."""
    tilt = 0.25
    img = _tilted_plate(tilt)

    def separable(a: np.ndarray) -> bool:
        blue_rows = np.nonzero(_mask(a, BLUE).any(axis=1))[0]
        red_rows = np.nonzero(_mask(a, RED).any(axis=1))[0]
        return bool(blue_rows.max() < red_rows.min())

    assert not separable(img)  # the bars overlap in rows: a horizontal cut must clip a line
    assert separable(straightened(img))


def test_the_stitch_of_a_tilted_plate_keeps_each_line_on_its_side() -> None:
    tilted = _tilted_plate(0.25)
    out = stitch_two_lines(tilted, straighten=True)
    left, right = out[:, :TOP_WIDTH], out[:, TOP_WIDTH:]
    assert _mask(left, BLUE).sum() >= 30 and _mask(right, RED).sum() >= 30
    assert _mask(left, RED).sum() == 0 and _mask(right, BLUE).sum() == 0
    plain = stitch_two_lines(tilted)  # the level cut clips a line
    assert _mask(plain[:, :TOP_WIDTH], RED).sum() > 0 or _mask(plain[:, TOP_WIDTH:], BLUE).sum() > 0


def test_only_the_korean_reader_straightens() -> None:
    assert straightens("kr") and not straightens("cn") and not straightens("")


def test_training_stitches_follow_the_listing_charset(tmp_path) -> None:
    """``load_crops`` straightens two-line crops for a Korean listing and not for a Chinese one, as the
    runtime reads them."""
    from lprnet.charset import load_charset
    from lprnet.dataset import list_samples, load_crops

    img = _tilted_plate(0.25)
    cv2.imwrite(str(tmp_path / "p.png"), img)
    for charset, text, straighten in (("kr", "서울12가3456", True), ("cn", "皖A12345", False)):
        labels = tmp_path / f"{charset}.txt"
        labels.write_text(f"p.png\t{text}\tkind\t0\t2\n", encoding="utf-8")
        listing = list_samples(labels, load_charset(charset))
        assert listing.charset == charset
        images, _ = load_crops(listing)
        assert np.array_equal(images[0], stitch_two_lines(img, straighten=straighten))
    assert not np.array_equal(stitch_two_lines(img, straighten=True), stitch_two_lines(img))


def test_the_reader_straightens_korean_stitches_only() -> None:
    """``read_crops`` hands the model the straightened stitch of a narrow crop for ``kr`` and the level one
    for ``cn`` (a stand-in model records its inputs)."""
    from lprnet.charset import load_charset
    from lprnet.preprocess import normalize
    from lprnet.reader import read_crops

    img = _tilted_plate(0.25)
    for charset, straighten in (("kr", True), ("cn", False)):
        cs = load_charset(charset)
        seen: list = []

        def logits(x: np.ndarray, seen: list = seen, classes: int = cs.num_classes) -> np.ndarray:
            seen.append(x.copy())
            return np.zeros((len(x), 18, classes), np.float32)

        read_crops([img], logits, cs, tta=False, retry_cuts=False)
        inputs = np.concatenate(seen)
        want = normalize(stitch_two_lines(img, straighten=straighten)[None])[0]
        other = normalize(stitch_two_lines(img, straighten=not straighten)[None])[0]
        assert any(np.array_equal(x, want) for x in inputs)
        assert not any(np.array_equal(x, other) for x in inputs)


def test_ties_keep_the_crop_level() -> None:
    """On a small crop neighbouring shears round to the same row shifts and score alike; the level one wins
    such ties (the scan once let the most negative shear win them). A flat crop has no rows to line up."""
    small = cv2.resize(_tilted_plate(0.0), (40, 24), interpolation=cv2.INTER_AREA)
    assert line_shear(small) == 0.0
    assert line_shear(cv2.flip(small, 1)) == 0.0
    assert line_shear(np.full((40, 80, 3), 128, np.uint8)) == 0.0


def test_the_retry_cuts_are_made_on_the_straightened_crop() -> None:
    """A weak read of a narrow Korean crop is retried with shifted cuts of the straightened crop (a stand-in
    model whose reads are all weak records its inputs)."""
    from lprnet.charset import load_charset
    from lprnet.preprocess import candidate_inputs, normalize, shifted_stitches
    from lprnet.reader import read_crops

    img = _tilted_plate(0.25)
    cs = load_charset("kr")
    seen: list = []

    def logits(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return np.zeros((len(x), 18, cs.num_classes), np.float32)

    read_crops([img], logits, cs, tta=False, retry_cuts=True)
    inputs = np.concatenate(seen)
    straight, _ = shifted_stitches([straightened(img)])
    level, _ = shifted_stitches([img])
    assert len(straight) and len(inputs) == len(candidate_inputs([img])[0]) + len(straight)  # candidates, then retry
    assert all(any(np.array_equal(x, normalize(s[None])[0]) for x in inputs) for s in straight)
    assert not any(np.array_equal(x, normalize(s[None])[0]) for x in inputs for s in level)
