"""tools.synth.plates: determinism, exact labels in the documented formats, two-line order, the CLI."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import AlprError
from tools.synth import fonts
from tools.synth.charsets import tokenize, validate
from tools.synth.plates import (
    KINDS,
    _layout,
    draw_plate,
    night_cast,
    read_labels,
    render_plate,
    unique_name,
    write_crops,
)

# Hand-typed from the brief, independent of tools.synth.charsets.
PROVINCES = "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
HANGUL = "가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주아바사자배하허호"
REGIONS = "서울 부산 대구 인천 광주 대전 울산 세종 경기 강원 충북 충남 전북 전남 경북 경남 제주".split()
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
KR_RE = re.compile(f"^({'|'.join(REGIONS)})?[0-9]{{2,3}}[{HANGUL}][0-9]{{4}}$")
CN_RE = re.compile(f"^[{PROVINCES}][{LETTERS}][0-9{LETTERS}]{{5,6}}$")
EXPECTED = {  # kind -> (format regex, two-line?, EV?)
    "kr_white": (re.compile(f"^[0-9]{{2,3}}[{HANGUL}][0-9]{{4}}$"), False, False),
    "kr_white_old": (re.compile(f"^[0-9]{{2}}[{HANGUL}][0-9]{{4}}$"), False, False),
    "kr_ev": (re.compile(f"^[0-9]{{2,3}}[{HANGUL}][0-9]{{4}}$"), False, True),
    "kr_yellow": (re.compile(f"^({'|'.join(REGIONS)})[0-9]{{2}}[바사아자배][0-9]{{4}}$"), False, False),
    "kr_yellow2": (re.compile(f"^({'|'.join(REGIONS)})[0-9]{{2}}[바사아자배][0-9]{{4}}$"), True, False),
    "kr_green2": (re.compile(f"^({'|'.join(REGIONS)})[0-9]{{2}}[{HANGUL}][0-9]{{4}}$"), True, False),
    "cn_blue": (re.compile(f"^[{PROVINCES}][{LETTERS}][0-9{LETTERS}]{{5}}$"), False, False),
    "cn_yellow": (re.compile(f"^[{PROVINCES}][{LETTERS}][0-9{LETTERS}]{{5}}$"), False, False),
    "cn_yellow2": (re.compile(f"^[{PROVINCES}][{LETTERS}][0-9{LETTERS}]{{5}}$"), True, False),
    "cn_green": (
        re.compile(f"^[{PROVINCES}][{LETTERS}]([DF][0-9{LETTERS}][0-9]{{4}}|[0-9]{{5}}[DF])$"), False, True
    ),
}


def test_every_kind_is_checked() -> None:
    assert set(EXPECTED) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_labels_exact(kind: str) -> None:
    pattern, two_lines, ev = EXPECTED[kind]
    charset = KINDS[kind].charset
    rng = np.random.default_rng(123)
    for _ in range(25):
        img, text, pk = render_plate(rng, charset, kind)
        assert pk.name == kind and pk.ev == ev and (pk.lines == 2) == two_lines
        assert pattern.match(text), text
        assert (KR_RE if charset == "kr" else CN_RE).match(text)
        assert validate(text, charset)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert img.shape[0] >= 4 and img.shape[1] >= 8


def test_random_kind_mix_and_tokens() -> None:
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(120):
        _img, text, pk = render_plate(rng, "kr")
        seen.add(pk.name)
        toks = tokenize(text, "kr")
        assert "".join(toks) == text
        assert all(t in REGIONS or t in HANGUL or t.isdigit() for t in toks)
    assert seen == {k for k in KINDS if k.startswith("kr_")}
    assert tokenize("서울12바3456", "kr") == ["서울", "1", "2", "바", "3", "4", "5", "6"]


def test_crop_does_not_depend_on_what_the_process_drew_before() -> None:
    """A seed's crop is the same in a fresh process and after other crops (as in a worker of a pool,
    whose share of the crops depends on the worker count): the glyph caches must not leak history."""
    from tools.synth import stroke_font

    def crop(i: int) -> np.ndarray:
        return render_plate(np.random.default_rng([41, i]), "cn", font_variants=True)[0]

    fresh = []
    for i in range(40):
        stroke_font._CACHE.clear()
        fresh.append(crop(i))
    stroke_font._CACHE.clear()
    for i in range(40, 240):  # fill the cache with other crops' strokes and variants first
        crop(i)
    again = [crop(i) for i in range(40)]
    same = [a.shape == b.shape and np.array_equal(a, b) for a, b in zip(fresh, again)]
    assert all(same), f"crops {[i for i, s in enumerate(same) if not s]} changed with the cache's history"


def test_same_seed_same_crop_other_seed_other_crop() -> None:
    a = render_plate(np.random.default_rng([9, 1]), "cn")
    b = render_plate(np.random.default_rng([9, 1]), "cn")
    c = render_plate(np.random.default_rng([9, 2]), "cn")
    assert a[1] == b[1] and a[2] == b[2] and np.array_equal(a[0], b[0])
    assert a[1] != c[1] or not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kind, text", [("kr_yellow2", "서울12바3456"), ("kr_green2", "경기07가1234"),
                                        ("cn_yellow2", "京A12345")])
def test_two_line_reading_order(kind: str, text: str) -> None:
    """Reading the drawn glyphs top line first, left to right, gives back the label."""
    slots, _ = _layout(np.random.default_rng(0), KINDS[kind], text)
    height = KINDS[kind].size_mm[1]
    rows = [(0 if y + h / 2 < height / 2 else 1, x, g) for g, x, y, _w, h in slots]
    assert {r for r, _, _ in rows} == {0, 1}
    assert "".join(g for _, _, g in sorted(rows)) == text


def test_text_argument_and_bad_text() -> None:
    rng = np.random.default_rng(0)
    _img, text, pk = render_plate(rng, "kr", "kr_ev", text="123가4567")
    assert text == "123가4567" and pk.ev
    with pytest.raises(AlprError, match="does not fit"):
        render_plate(rng, "kr", "kr_yellow", text="123가4567")
    with pytest.raises(AlprError, match="unknown plate kind"):
        render_plate(rng, "kr", "cn_blue")


def test_clean_plate_ink_where_the_text_is(monkeypatch) -> None:
    """A clean white plate has dark ink inside the glyph band and none in its top and bottom margins.

    One face (the first the machine has: a bold Nanum face where fonts-nanum is installed) for every glyph,
    so that the seed does not pick a different face on a machine with more or fewer fonts installed."""
    from tools.synth import plates as plates_mod
    from tools.synth.fonts import find_fonts

    first = find_fonts("kr")[:1]
    monkeypatch.setattr(plates_mod, "find_fonts", lambda charset: first)
    monkeypatch.setattr(plates_mod, "find_digit_fonts", lambda charset: first)
    rng = np.random.default_rng(3)
    img, box = draw_plate(rng, KINDS["kr_white"], "12가3456", px_per_mm=1.0, decorate=False)
    assert box == (0, 0, 520, 110)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    band = gray[20:90, 20:510]
    assert (band < 100).mean() > 0.15  # glyph strokes
    assert (gray[:8] < 100).mean() < 0.01 and (gray[-8:] < 100).mean() < 0.01


def test_unique_name() -> None:
    seen: dict = {}
    assert [unique_name(t, seen) for t in ("a", "b", "a", "a")] == ["a", "b", "a_1", "a_2"]


def test_write_crops_folder(tmp_path: Path) -> None:
    out = write_crops(str(tmp_path / "one"), "kr", 12, seed=4, workers=1, progress=False)
    rows = read_labels(str(out / "labels.txt"))
    assert len(rows) == 12
    for name, text, kind, ev, lines in rows:
        assert re.fullmatch(re.escape(text) + r"(_[0-9]+)?\.jpg", name)
        assert ev == int(KINDS[kind].ev) and lines == KINDS[kind].lines
        img = cv2.imdecode(np.fromfile(str(out / name), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (24, 94, 3)
    # the same seed with two worker processes gives the same labels
    out2 = write_crops(str(tmp_path / "two"), "kr", 12, seed=4, workers=2, progress=False)
    assert read_labels(str(out2 / "labels.txt")) == rows
    with pytest.raises(AlprError, match="not an empty folder"):
        write_crops(str(out), "kr", 2, seed=4, workers=1, progress=False)


def test_keep_original(tmp_path: Path) -> None:
    out = write_crops(str(tmp_path / "k"), "cn", 5, seed=8, workers=1, progress=False, keep_original=True)
    rows = read_labels(str(out / "labels.txt"))
    for name, *_ in rows:
        small = cv2.imdecode(np.fromfile(str(out / name), np.uint8), cv2.IMREAD_COLOR)
        big = cv2.imdecode(np.fromfile(str(out / "original" / name), np.uint8), cv2.IMREAD_COLOR)
        assert small.shape == (24, 94, 3) and big.shape != small.shape
        # the small crop is the original one resized
        again = cv2.resize(big, (94, 24), interpolation=cv2.INTER_AREA)
        assert np.abs(again.astype(int) - small.astype(int)).mean() < 12  # JPEG noise only


def test_cli_keeps_the_rendered_size_by_default(tmp_path: Path, repo_root: Path) -> None:
    """No --size: crops at their rendered size (training stitches two-line plates from them)."""
    cmd = [sys.executable, "-m", "tools.synth.plates", "--charset", "cn", "--count", "6", "--out",
           str(tmp_path / "o"), "--seed", "2", "--workers", "1"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = read_labels(str(tmp_path / "o" / "labels.txt"))
    assert len(rows) == 6 and all(CN_RE.match(t) for _, t, _, _, _ in rows)
    sizes = {cv2.imdecode(np.fromfile(str(tmp_path / "o" / r[0]), np.uint8), 1).shape for r in rows}
    assert len(sizes) > 1  # crops keep their rendered sizes
    bad = subprocess.run(cmd + ["--size", "94by24"], cwd=repo_root, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "--size must be" in bad.stderr


def test_missing_fonts_name_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fonts, "_SYSTEM_DIRS", ())
    monkeypatch.setattr(fonts, "REPO", tmp_path)
    monkeypatch.delenv("ALPR_FONT_DIRS", raising=False)
    for f in (fonts._font_files, fonts.find_fonts, fonts.find_digit_fonts):
        f.cache_clear()
    try:
        with pytest.raises(AlprError, match="apt-get install -y fonts-nanum"):
            fonts.find_fonts("kr")
        with pytest.raises(AlprError, match="apt-get install -y fonts-wqy-microhei"):
            fonts.find_fonts("cn")
    finally:
        for f in (fonts._font_files, fonts.find_fonts, fonts.find_digit_fonts):
            f.cache_clear()


def test_a_latin_only_font_is_refused() -> None:
    latin = [s for s in fonts._candidates(("DejaVuSans-Bold.ttf",))]
    if not latin:
        pytest.skip("DejaVuSans-Bold.ttf not installed")
    assert fonts.covers(latin[0], "0123456789AB")
    assert not fonts.covers(latin[0], "가")  # no Hangul glyph: the missing-glyph box is detected


@pytest.mark.parametrize("charset", ["kr", "cn"])
def test_tokens_are_in_the_readers_charset_file(charset: str, repo_root: Path) -> None:
    """Every token the renderer can write is a class of the reader (data/charsets/<charset>.txt)."""
    path = repo_root / "data" / "charsets" / f"{charset}.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    reader = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")}
    from tools.synth.charsets import tokens

    assert set(tokens(charset)) <= reader
    assert len(tokens(charset)) == (67 if charset == "kr" else 65)


def test_stroke_plate_font_has_the_chinese_plate_shapes() -> None:
    """The plate font facts the stroke font encodes: every letter and digit of a Chinese plate, a 1:2 box,
    a plain-bar 1, a flat-topped 3 (top-left corner inked, unlike the round-topped 2)."""
    from tools.synth import charsets as cs
    from tools.synth.stroke_font import HEIGHT, has_glyph, stroke_glyph

    for ch in list(cs.DIGITS) + list(cs.CN_LETTERS):
        assert has_glyph(ch), ch
    zero, one = stroke_glyph("0"), stroke_glyph("1")
    assert abs(zero.shape[1] / zero.shape[0] - 0.5) < 0.08
    assert one.shape[1] < 0.35 * zero.shape[1]  # a bar as wide as the stroke
    assert abs(zero.shape[0] - HEIGHT) <= 0.25 * HEIGHT

    def corner(mask: np.ndarray) -> float:
        h, w = mask.shape
        return float(mask[: h // 10, : w // 5].mean())

    assert corner(stroke_glyph("3")) > 100 and corner(stroke_glyph("2")) < 60


@pytest.mark.parametrize("option, value, bad, seed", [("shear", 0.35, 0.9, 3), ("night", 1.0, 1.5, 8)])
def test_view_options_change_the_crop_not_the_label(tmp_path: Path, option: str, value: float, bad: float,
                                                    seed: int) -> None:
    """--shear (the oblique view) and --night (night 1: every crop under a night light) draw after the text: the
    same seed gives the same plate text and kind, seen another way; out-of-range values are refused."""
    changed = 0
    for i in range(6):
        a, text_a, kind_a = render_plate(np.random.default_rng([seed, i]), "cn")
        b, text_b, kind_b = render_plate(np.random.default_rng([seed, i]), "cn", **{option: value})
        assert (text_a, kind_a.name) == (text_b, kind_b.name)
        changed += a.shape != b.shape or not np.array_equal(a, b)
    assert changed == 6  # the option's extra draws move every later draw, so no crop stays the same
    with pytest.raises(AlprError, match=f"--{option}"):
        write_crops(str(tmp_path / "x"), "cn", 2, 0, progress=False, **{option: bad})


def test_clip_cuts_into_the_plate(tmp_path: Path) -> None:
    """--clip draws after the plate and its view, so the same seed gives the same plate; on half of the
    crops the box lies inside the plate's outline (each side from -clip to +0.01 of its size) where the
    twin without --clip is at least 0.94 of it wide (a tight box: -0.03 to +0.1 a side; a loose one wider).
    By hand, with clip 0.1 (the widest allowed), about 85 % of the cut crops (all against a loose twin,
    four in five against a tight one) and about a fifth of the others (tight against a loose twin) come
    out more than 10 % narrower than their twin: about 54 % of all."""
    narrower = 0
    n = 40
    for i in range(n):
        a, text_a, kind_a = render_plate(np.random.default_rng([5, i]), "cn")
        b, text_b, kind_b = render_plate(np.random.default_rng([5, i]), "cn", clip=0.1)
        assert (text_a, kind_a.name) == (text_b, kind_b.name)
        narrower += b.shape[1] < 0.9 * a.shape[1]
    assert narrower >= 0.35 * n
    with pytest.raises(AlprError, match="--clip"):
        write_crops(str(tmp_path / "x"), "cn", 2, 0, clip=0.15, progress=False)


def test_night_cast_darkens_blue_paint_and_tints_white() -> None:
    """A blue plate (BGR 200, 60, 20) with white characters under night_cast: the grey level takes at most
    0.25 of the blue channel, so blue paint is at most 0.25 * 200 + 0.75 * 60 = 95 while white stays 255, and
    at most 0.3 of the day colour is kept, at (20 + 60 + 200) against 765 in channel sum: by hand, white stays
    at least min(255 / 95, 765 / 280) = 2.68 times as bright as the paint in every cast. The light is red to
    green (hue 0-150), so white never comes out bluest, and over 60 casts both reddish and greenish whites
    appear."""
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = (200, 60, 20)
    img[:, 10:] = 255
    reddish = greenish = 0
    for i in range(60):
        out = night_cast(np.random.default_rng([7, i]), img).astype(np.float64)
        paint, white = out[:, :10].sum(axis=2).mean(), out[:, 10:].sum(axis=2).mean()
        assert white >= 2.6 * paint
        b, g, r = out[:, 10:].reshape(-1, 3).mean(axis=0)
        assert b <= max(g, r) + 1
        reddish += r > g + 10
        greenish += g > r + 10
    assert reddish >= 5 and greenish >= 5


def test_plate_font_variants_have_the_shapes_they_name() -> None:
    """Hand geometry of the variants (stroke 0.2 of the width): M's middle vertex at 42 % of the height
    with shape 0 and 82 % with shape 1; an oval 0 against a true stadium, whose sides are straight over
    the middle half of its height; a square or a rounded lower-right corner of G. Characters outside
    VARIABLE and an empty shape keep the base glyph."""
    from tools.synth.stroke_font import VARIABLE, stroke_glyph

    def centre_ink_depth(mask: np.ndarray) -> float:  # lowest inked row of the middle column, 0-1
        col = mask[:, mask.shape[1] // 2] > 127
        return float(np.nonzero(col)[0].max() / (mask.shape[0] - 1))

    shallow, deep = stroke_glyph("M", 0.2, (0.0, 0.5, 0.5)), stroke_glyph("M", 0.2, (1.0, 0.5, 0.5))
    assert 0.40 < centre_ink_depth(shallow) < 0.55  # vertex 0.42 plus half a stroke
    assert 0.80 < centre_ink_depth(deep) < 0.92

    def side_ink(mask: np.ndarray, y: float) -> int:  # leftmost inked column at height y
        return int(np.nonzero(mask[int(y * (mask.shape[0] - 1))] > 127)[0].min())

    oval, stadium = stroke_glyph("0", 0.2, (0.5, 0.0, 0.5)), stroke_glyph("0", 0.2, (0.5, 1.0, 0.0))
    # an oval's left edge moves in away from the middle row; a stadium's stays put from 25 % to 75 %
    assert side_ink(oval, 0.3) - side_ink(oval, 0.5) >= 2
    assert abs(side_ink(stadium, 0.3) - side_ink(stadium, 0.5)) <= 1
    assert abs(side_ink(stadium, 0.7) - side_ink(stadium, 0.5)) <= 1

    square, round_ = stroke_glyph("G", 0.2, (0.0, 0.5, 0.5)), stroke_glyph("G", 0.2, (1.0, 0.5, 0.5))
    corner = (slice(-4, None), slice(-4, None))
    assert square[corner].mean() > 150 and round_[corner].mean() < 40

    assert "1" not in VARIABLE and np.array_equal(stroke_glyph("1", 0.2, (0.3, 0.3, 0.3)), stroke_glyph("1", 0.2))
    assert np.array_equal(stroke_glyph("M", 0.2, ()), stroke_glyph("M", 0.2))


def test_font_variants_keep_the_label_and_reach_the_plate() -> None:
    """--font_variants draws the variant after the text: same text and kind for a seed; off, the crop is
    the one the seed always gave; on, stroke-font plates change (a variant per plate)."""
    changed = 0
    for i in range(8):
        a, text_a, kind_a = render_plate(np.random.default_rng([5, i]), "cn")
        b, text_b, kind_b = render_plate(np.random.default_rng([5, i]), "cn", font_variants=True)
        c, _, _ = render_plate(np.random.default_rng([5, i]), "cn", font_variants=False)
        assert (text_a, kind_a.name) == (text_b, kind_b.name)
        assert np.array_equal(a, c)
        changed += a.shape != b.shape or not np.array_equal(a, b)
    assert changed >= 3  # 60 % of plates use the stroke font; those draw a variant and every later draw moves


NOTO_CJK_BOLD = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")


@pytest.mark.skipif(not NOTO_CJK_BOLD.exists(), reason="fonts-noto-cjk is not installed (optional renderer font)")
def test_pan_cjk_collection_gives_each_charset_its_locale_face() -> None:
    """Noto Sans CJK's collection orders its faces JP, KR, SC, TC, HK (then the Mono ones); Chinese plates
    must get the SC face, whose forms differ from JP's for some characters (骨 is the textbook case)."""
    from PIL import Image, ImageDraw, ImageFont

    path = str(NOTO_CJK_BOLD)
    assert fonts.face_index(path, "cn") == 2
    assert fonts.face_index(path, "kr") == 1
    assert fonts.face_index(path, None) == 0

    def ink(index: int) -> np.ndarray:
        img = Image.new("L", (80, 80), 0)
        ImageDraw.Draw(img).text((8, 0), "骨", font=ImageFont.truetype(path, 64, index=index), fill=255)
        return np.asarray(img) > 127

    assert (ink(2) != ink(0)).sum() > 30  # the SC and JP forms differ
    assert fonts.FontSpec(path, 2) in fonts.find_fonts("cn")


def test_smallest_character_height_is_the_drawn_ink(monkeypatch) -> None:
    """draw_plate's ``glyph_px`` is the height of the characters' ink: on a Chinese blue plate every
    character has the same height, so the rows holding white ink span it (within antialiasing)."""
    from tools.synth import plates as plates_mod
    from tools.synth.fonts import find_fonts

    first = find_fonts("cn")[:1]
    monkeypatch.setattr(plates_mod, "find_fonts", lambda charset: first)
    monkeypatch.setattr(plates_mod, "find_digit_fonts", lambda charset: first)
    for seed in range(4):
        info: dict = {}
        img, _box = draw_plate(np.random.default_rng(seed), KINDS["cn_blue"], "京A12345", px_per_mm=0.8,
                               decorate=False, info=info)
        rows = np.nonzero((cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) > 170).any(axis=1))[0]
        assert abs((rows.max() - rows.min() + 1) - info["glyph_px"]) <= 2.0, (seed, info)


def test_char_px_is_the_small_characters_and_is_written(tmp_path: Path) -> None:
    """A Korean region syllable (41 mm stacked) or a two-line top line (46 mm) is never taller than
    0.7 px/mm (the largest drawing scale) x 46 mm x 1.05 (the largest height jitter) = 33.8 px, while
    the digits (80 mm) often are; write_crops puts the height in the sixth column, and at ``--size
    94x24`` scaled to the written crop."""
    for i in range(30):
        info: dict = {}
        a = render_plate(np.random.default_rng([8, i]), "kr", info=info)
        assert info["char_px"] > 0
        if a[2].lines == 2 or a[1][:2] in REGIONS:
            assert info["char_px"] <= 0.7 * 46 * 1.05
    out = write_crops(str(tmp_path / "o"), "kr", 6, seed=8, size=None, workers=1, progress=False)
    lines = (out / "labels.txt").read_text(encoding="utf-8").splitlines()
    for line, i in zip(lines, range(6)):
        info = {}
        render_plate(np.random.default_rng([8, i]), "kr", info=info)
        assert float(line.split("\t")[5]) == pytest.approx(info["char_px"], abs=0.005)
    small = write_crops(str(tmp_path / "s"), "kr", 6, seed=8, size=(94, 24), workers=1, progress=False)
    for line, i in zip((small / "labels.txt").read_text(encoding="utf-8").splitlines(), range(6)):
        info = {}
        img, _, _ = render_plate(np.random.default_rng([8, i]), "kr", info=info)
        want = info["char_px"] * min(1.0, 24 / img.shape[0])
        assert float(line.split("\t")[5]) == pytest.approx(want, abs=0.005)
