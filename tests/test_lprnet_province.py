"""The province and top-line letter checks of the Chinese reader and the region, top-line digits and Hangul letter
checks of the Korean one: the view, the replacement rule, the model file, the runtime's use of them, the shipped
models and the training command."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import lprnet.reader
from core.errors import AlprError
from core.pipeline import DEFAULT_PROVINCE, open_checks
from lprnet.charset import CN_LETTERS, CN_PROVINCES, KR_HANGUL, KR_REGIONS, load_charset
from lprnet.preprocess import (
    INPUT_HEIGHT,
    PROVINCE_MIN_ROWS,
    PROVINCE_VIEW_HEIGHT,
    PROVINCE_VIEW_WIDTH,
    VIEW_SHARES,
    line_split_row,
    province_view,
)
from lprnet.province import (
    CHARSET_FIELDS,
    DIGIT_PAIRS,
    FIELDS,
    ProvinceReader,
    find_field,
    first_class,
    metadata_path,
    replace_provinces,
)
from lprnet.reader import read_crops
from tests.paths import REPO

SHIPPED, SHIPPED_LETTER = DEFAULT_PROVINCE["cn"]
SHIPPED_KR, SHIPPED_DIGITS, SHIPPED_HANGUL = DEFAULT_PROVINCE["kr"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
RED, GREEN, BLUE, MAGENTA = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 0, 255)


def _has(part: np.ndarray, bgr: tuple) -> bool:
    near = np.all(np.abs(part.astype(int) - np.array(bgr)) < 70, axis=-1)
    return int(near.sum()) >= 10


def _glyph(img: np.ndarray, x: int, y0: int, y1: int, width: int, color: tuple) -> None:
    """A stand-in character: a box with a grid of strokes 6 px apart, so that most of its rows and columns have
    the corners (strokes meeting) that ``_text_box``'s corner energy looks for, as real glyphs do."""
    cv2.rectangle(img, (x, y0), (x + width, y1), color, 2)
    for gx in range(x + 6, x + width, 6):
        cv2.line(img, (gx, y0), (gx, y1), color, 1)
    for gy in range(y0 + 6, y1, 6):
        cv2.line(img, (x, gy), (x + width, gy), color, 1)


def _one_line_plate(scale: int = 1) -> np.ndarray:
    """A light plate 60x300 (times ``scale``) with seven glyphs in rows 12-48: the first red, the third magenta,
    the last green, the rest blue. Glyph pitch 38 px from x 20: the text box spans about x 18-272."""
    img = np.full((60 * scale, 300 * scale, 3), 225, np.uint8)
    for k in range(7):
        color = {0: RED, 2: MAGENTA, 6: GREEN}.get(k, BLUE)
        _glyph(img, (20 + 38 * k) * scale, 12 * scale, 48 * scale, 24 * scale, color)
    return img


def test_one_line_view_is_the_left_of_the_text() -> None:
    view = province_view(_one_line_plate(), 1)
    assert view is not None and view.shape == (PROVINCE_VIEW_HEIGHT, PROVINCE_VIEW_WIDTH, 3)
    # 0.26 of a text box about 255 px wide is about 66 px: the first glyph (20-44) and part of the second (58-82),
    # not the third (96-120)
    assert _has(view, RED) and _has(view, BLUE) and not _has(view, MAGENTA) and not _has(view, GREEN)
    red_cols = np.nonzero(np.all(np.abs(view.astype(int) - RED) < 70, axis=-1).any(axis=0))[0]
    assert red_cols.min() < 8 and red_cols.max() < PROVINCE_VIEW_WIDTH // 2  # the province sits at the left


def test_two_line_view_is_cut_from_the_top_line() -> None:
    """Top line (rows 14-60): a red province and a blue letter, centred; bottom line (rows 80-146): four green
    glyphs. The top line holds about a quarter of the horizontal gradient energy, as on a rendered plate."""
    img = np.full((160, 220, 3), 225, np.uint8)
    _glyph(img, 60, 14, 60, 26, RED)
    _glyph(img, 130, 14, 60, 26, BLUE)
    for k in range(4):
        _glyph(img, 14 + 52 * k, 80, 146, 34, GREEN)
    assert 60 < line_split_row(img) <= 80
    view = province_view(img, 2)
    assert view is not None
    # 0.62 of the top line's box (about x 58-158) ends near x 120: the province, not the letter (130-156)
    assert _has(view, RED) and not _has(view, BLUE) and not _has(view, GREEN)
    one_line = province_view(img, 1)  # read as one line, the view would be the bottom line's start too
    assert one_line is not None and _has(one_line, GREEN)


def test_view_has_a_row_floor_for_the_runtime() -> None:
    small = cv2.resize(_one_line_plate(), (94, INPUT_HEIGHT), interpolation=cv2.INTER_AREA)
    assert province_view(small, 1) is not None  # training takes every crop
    assert province_view(small, 1, PROVINCE_MIN_ROWS) is None  # no more rows than LPRNet's input: no check
    assert province_view(_one_line_plate(), 1, PROVINCE_MIN_ROWS) is not None  # text box 36+ rows


def test_replace_provinces_rule() -> None:
    classes = "京沪皖"
    probs = np.array([[0.1, 0.05, 0.85],  # 皖 at 0.85: replaces 京
                      [0.1, 0.1, 0.8],  # 皖 at exactly the threshold: replaces 沪
                      [0.2, 0.1, 0.7],  # below the threshold: kept
                      [0.9, 0.05, 0.05],  # agrees: kept
                      [0.0, 0.0, 1.0],  # the read starts with no province: kept
                      [0.0, 0.0, 1.0]], np.float32)  # empty read: kept
    texts = ["京A12345", "沪B12345", "京C12345", "京D12345", "A12345", ""]
    assert replace_provinces(texts, probs, classes, 0.8) == [
        "皖A12345", "皖B12345", "京C12345", "京D12345", "A12345", ""]
    with pytest.raises(AlprError):
        replace_provinces(texts[:2], probs, classes, 0.8)


def test_replace_regions_rule() -> None:
    """Korean regions are two-character tokens: the whole region is replaced, and a plate without one is kept."""
    classes = ("서울", "부산", "전북", "전남")
    probs = np.array([[0.05, 0.05, 0.85, 0.05],  # 전북 at 0.85: replaces 전남, the rest of the read kept
                      [0.9, 0.05, 0.03, 0.02],  # 서울 on a plate read without a region: kept
                      [0.0, 0.0, 0.0, 1.0],  # agrees: kept
                      [0.0, 0.6, 0.4, 0.0]], np.float32)  # below the threshold: kept
    texts = ["전남33아4505", "12가3456", "전남11바1111", "서울22사2222"]
    assert replace_provinces(texts, probs, classes, 0.8) == [
        "전북33아4505", "12가3456", "전남11바1111", "서울22사2222"]


def _region_plate() -> np.ndarray:
    """A light Korean one-line plate 60x400: a red region (two stacked glyphs, x 20-44) and seven blue/green
    glyphs at a pitch of 48 px from x 60 (the last green); the text box spans about x 18-372."""
    img = np.full((60, 400, 3), 225, np.uint8)
    _glyph(img, 20, 8, 28, 24, RED)
    _glyph(img, 20, 32, 52, 24, RED)
    for k in range(7):
        _glyph(img, 60 + 48 * k, 10, 50, 26, GREEN if k in (1, 6) else BLUE)
    return img


def test_region_view_is_the_region_and_not_the_digits() -> None:
    # 0.19 of a text box about 358 px wide (x 17-376) is about 68 px: the region (20-44) and the first digit
    # (60-86), not the second glyph (108-134), which the Chinese share (0.26: about 93 px) reaches
    view = province_view(_region_plate(), 1, shares=VIEW_SHARES["kr"])
    assert view is not None and _has(view, RED) and _has(view, BLUE) and not _has(view, GREEN)
    assert _has(province_view(_region_plate(), 1, shares=VIEW_SHARES["cn"]), GREEN)
    red_cols = np.nonzero(np.all(np.abs(view.astype(int) - RED) < 70, axis=-1).any(axis=0))[0]
    assert red_cols.min() < 8 and red_cols.max() < PROVINCE_VIEW_WIDTH // 2


def _constant_logits(text: str, charset) -> np.ndarray:
    """Logits [18, classes] whose greedy and format decodes give ``text``: its ids on frames 1, 3, 5, ..."""
    z = np.full((18, charset.num_classes), -10.0, np.float32)
    z[:, charset.blank] = 10.0
    for k, i in enumerate(charset.encode(text)):
        z[1 + 2 * k, charset.blank] = -10.0
        z[1 + 2 * k, i] = 10.0
    return z


class _Check:
    """A check that records its calls and sets the class every read starts with to ``new`` (by default every
    Chinese province to 皖)."""

    def __init__(self, new: str = "皖", classes=tuple(CN_PROVINCES), shares=VIEW_SHARES["cn"]) -> None:
        self.calls: list = []
        self.new, self.classes, self.shares, self.starts = new, classes, shares, (0.0, 0.0)

    def applies(self, text: str, lines=None, confidence=None) -> bool:
        return first_class(text, self.classes) is not None

    def check(self, texts, views):
        self.calls.append((list(texts), np.asarray(views).copy()))
        return [self.new + t[len(first_class(t, self.classes)):] for t in texts]


def test_read_crops_applies_the_check_only_where_the_view_has_more_rows() -> None:
    cs = load_charset("cn")
    logits = _constant_logits("京A12345", cs)

    def fn(x: np.ndarray) -> np.ndarray:
        return np.repeat(logits[None], len(x), axis=0)

    big = _one_line_plate(1)
    small = cv2.resize(big, (94, 24), interpolation=cv2.INTER_AREA)
    check = _Check()
    reads = read_crops([big, small, np.zeros((0, 5, 3), np.uint8)], fn, cs, tta=False, retry_cuts=False,
                       province=check)
    assert [r.text for r in reads] == ["皖A12345", "京A12345", ""]
    assert reads[0].valid and reads[0].confidence == pytest.approx(reads[1].confidence)
    assert len(check.calls) == 1 and check.calls[0][0] == ["京A12345"]
    assert np.array_equal(check.calls[0][1][0], province_view(big, 1))
    assert [r.text for r in read_crops([big], fn, cs, tta=False, retry_cuts=False)] == ["京A12345"]


def _copy_model(tmp_path: Path) -> Path:
    model = tmp_path / "p.tflite"
    shutil.copy(SHIPPED, model)
    shutil.copy(metadata_path(SHIPPED), metadata_path(model))
    return model


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped province model is missing")
def test_model_file_errors_are_one_line(tmp_path: Path) -> None:
    model = _copy_model(tmp_path)
    metadata_path(model).unlink()
    with pytest.raises(AlprError, match="no metadata file"):
        ProvinceReader(model)
    metadata_path(model).write_text(json.dumps({"classes": "京京", "min_probability": 0.8}), encoding="utf-8")
    with pytest.raises(AlprError, match="distinct"):
        ProvinceReader(model)
    metadata_path(model).write_text(json.dumps({"classes": "京沪", "min_probability": 0.8}), encoding="utf-8")
    with pytest.raises(AlprError, match="does not match its 2 classes"):
        ProvinceReader(model)
    metadata_path(model).write_text("{not json", encoding="utf-8")
    with pytest.raises(AlprError, match="bad province model metadata"):
        ProvinceReader(model)
    metadata_path(model).unlink()
    metadata_path(model).mkdir()  # unreadable as a file: still a one-line error
    with pytest.raises(AlprError, match="bad province model metadata"):
        ProvinceReader(model)
    with pytest.raises(AlprError, match="not found"):  # a wrong path says so, not "no metadata"
        ProvinceReader(tmp_path / "typo.tflite")
    with pytest.raises(AlprError, match="not found"):
        open_checks("cn", tmp_path / "missing.tflite")


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped province model is missing")
def test_pipeline_choice_of_the_check() -> None:
    assert open_checks("cn", "none") == () and open_checks("kr", "None") == ()
    shipped, letter = open_checks("cn")  # the province, then the top-line letter
    assert isinstance(shipped, ProvinceReader) and shipped.classes == tuple(CN_PROVINCES)
    assert letter.is_field("letter") and not letter.is_field("province") and not shipped.is_field("letter")
    assert shipped.shares == VIEW_SHARES["cn"]  # the cn model's .json names no shares: the Chinese ones
    assert shipped.starts == (0.0, 0.0) and shipped.after == () and shipped.lines == (1, 2)
    # a charset file is known by its stem (evaluate.py --charset takes either)
    assert [c.model_path for c in open_checks(str(REPO / "data" / "charsets" / "cn.txt"))] == [
        str(SHIPPED), str(SHIPPED_LETTER)]
    assert open_checks("cn", min_probability=0.95)[0].min_probability == 0.95
    assert shipped.suits(load_charset("cn")) and not shipped.suits(load_charset("kr"))
    with pytest.raises(AlprError, match="outside charset"):
        open_checks("kr", SHIPPED)
    # a comma-separated list, in order, as --lpr_province takes it; a list naming nothing is an error, not a
    # silent way to turn the checks off
    assert [c.model_path for c in open_checks("cn", f"{SHIPPED}, {SHIPPED}")] == [str(SHIPPED)] * 2
    for empty in ("", ",", " , "):
        with pytest.raises(AlprError, match="no check model named"):
            open_checks("cn", empty)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped province model is missing")
def test_shipped_check_reads_rendered_provinces() -> None:
    """200 rendered Chinese plates (a seed no set of the model card uses): the shipped int8 classifier's top
    province is the renderer's in at least 0.90 of the views (0.951 on the validation views in float, model
    card; 3 standard errors at n = 200 are 0.046)."""
    from tools.synth.plates import render_plate

    rng = np.random.default_rng(39_001)
    views, truth = [], []
    for _ in range(200):
        crop, text, kind = render_plate(rng, "cn")
        views.append(province_view(crop, kind.lines))
        truth.append(CN_PROVINCES.index(text[0]))
    probs = ProvinceReader(SHIPPED).probabilities(np.stack(views))
    assert probs.shape == (200, len(CN_PROVINCES))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert float(np.mean(probs.argmax(axis=1) == np.array(truth))) >= 0.90


@pytest.mark.parametrize("charset,field", [("cn", None), ("kr", None), ("kr", "digits"), ("cn", "letter"),
                                           ("kr", "hangul")])
def test_training_command_smoke(tmp_path: Path, charset: str, field: str | None) -> None:
    """The training command for two steps on 24 rendered crops, given as two label files, writes a model the
    runtime loads, with the field's classes and view (shares, starts, the tokens it follows, the line counts it
    checks); crops without the field (Korean plates without a region; for digits and letter, one-line plates) are
    left out."""
    from tools.synth.plates import render_plate

    rng = np.random.default_rng(5)
    files, with_class = [], 0
    for part in range(2):
        data = tmp_path / f"crops{part}"
        data.mkdir()
        lines = []
        for i in range(12):
            kind_name = {"digits": ("kr_yellow2", "kr_green2", "kr_yellow")[i % 3],
                         "letter": ("cn_yellow2", "cn_yellow2", "cn_blue")[i % 3],
                         "hangul": ("kr_white", "kr_yellow", "kr_green2")[i % 3]}.get(field or "")
            crop, text, kind = render_plate(rng, charset, kind=kind_name)
            if field == "digits":
                with_class += kind.lines == 2 and text[:2] in KR_REGIONS and text[2:4].isdigit()
            elif field == "letter":
                with_class += kind.lines == 2 and text[0] in CN_PROVINCES and text[1] in CN_LETTERS
            elif field == "hangul":
                with_class += kind.lines == 1  # every Korean plate has its letter after its digits
            else:
                with_class += text[:2] in KR_REGIONS if charset == "kr" else 1
            name = f"{i:02d}.jpg"
            cv2.imwrite(str(data / name), crop)
            lines.append(f"{name}\t{text}\t{kind.name}\t0\t{kind.lines}\t0")
        (data / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        files.append(str(data / "labels.txt"))
    assert 8 <= with_class < 24 or (charset, field) == ("cn", None)  # a batch of 8, and some crops to leave out
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "lprnet.train_province", "--charset", charset, "--data", ",".join(files),
                        "--val_data", files[0], "--out", str(out), "--epochs", "1",
                        "--max_steps", "2", "--batch_size", "8", "--calibration_count", "8",
                        "--min_probability", "0.7"] + (["--field", field] if field else []),
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{with_class} training views ({24 - with_class} crops without the field left out)" in r.stdout
    for name in ("province.weights.h5", "province-int8.tflite", "history.csv", "curves.png"):
        assert (out / name).is_file(), name
    model = ProvinceReader(out / "province-int8.tflite")
    spec = FIELDS[field or ("region" if charset == "kr" else "province")]
    assert model.min_probability == 0.7 and model.classes == spec.classes and model.field == spec
    # the gate: the shipped Hangul check's unless the command names one (an explicit threshold wins over 0.85)
    assert model.read_confidence_below == (0.97 if field == "hangul" else None)
    if field is None:
        assert model.shares == VIEW_SHARES[charset]
    assert model.suits(load_charset(charset)) and not model.suits(load_charset("cn" if charset == "kr" else "kr"))
    assert model.is_field(field or ("region" if charset == "kr" else "province"))
    probs = model.probabilities(np.stack([province_view(_one_line_plate(), 1)] * 3))
    assert probs.shape == (3, len(spec.classes)) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_training_refuses_a_field_of_another_charset(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "lprnet.train_province", "--charset", "cn", "--field", "digits",
                        "--data", "x.txt", "--val_data", "x.txt", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert r.returncode != 0 and "the digits check is not one of charset 'cn'" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()
    r = subprocess.run([sys.executable, "-m", "lprnet.train_province", "--charset", "kr", "--field", "hangul",
                        "--read_confidence_below", "1.5", "--data", "x.txt", "--val_data", "x.txt",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert r.returncode != 0 and "--read_confidence_below must lie in (0, 1], got 1.5" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped province model is missing")
def test_front_end_flag_reaches_the_reader() -> None:
    """``--lpr_province`` (core.app.ModelChoice.lpr_province): the shipped checks of the charset by default, in
    order, none with ``none``; a missing file is a one-line error (the kr default: ``test_shipped_region_check``)."""
    from core.app import ModelChoice, open_pipeline

    checks = open_pipeline(ModelChoice(lpr=True, charset="cn")).reader.province
    assert all(isinstance(c, ProvinceReader) for c in checks)
    assert [c.model_path for c in checks] == [str(SHIPPED), str(SHIPPED_LETTER)]
    assert open_pipeline(ModelChoice(lpr=True, charset="cn", lpr_province="none")).reader.province == ()
    assert open_pipeline(ModelChoice(lpr=True, charset="kr", lpr_province="none")).reader.province == ()
    with pytest.raises(AlprError, match="check model not found"):
        open_pipeline(ModelChoice(lpr=True, charset="cn", lpr_province="/nonexistent/p.tflite"))


@pytest.mark.skipif(not all(p.is_file() for p in (SHIPPED, SHIPPED_LETTER, SHIPPED_KR, SHIPPED_DIGITS, SHIPPED_HANGUL)),
                    reason="the shipped checks are missing")
def test_edge_bundle_carries_the_checks_with_their_readers(tmp_path: Path) -> None:
    from core.pipeline import DEFAULT_DETECTOR, DEFAULT_READER
    from tools.make_bundle import PROVINCE_NAMES, build_bundle

    det, kr, cn = DEFAULT_DETECTOR["tflite"], DEFAULT_READER["kr"], DEFAULT_READER["cn"]
    if not (det.is_file() and kr.is_file() and cn.is_file()):
        pytest.skip("the shipped detector and readers are not there")
    report = build_bundle(tmp_path / "b.tar.gz", det, kr, reader_cn=cn)
    # the Chinese reader goes with its province and letter checks, the Korean one with its region, digits and
    # Hangul checks, where the device looks for them by default
    assert PROVINCE_NAMES["cn"] == tuple(p.relative_to(REPO).as_posix() for p in DEFAULT_PROVINCE["cn"])
    for key, file in zip(("province_cn", "province_cn_2"), PROVINCE_NAMES["cn"]):
        assert report.models[key]["checks_reader"] == "cn" and report.models[key]["file"] == file
        assert file in report.files and file + ".json" in report.files
        assert report.models[key]["quantization"] == "int8"
    assert "lprnet.province" in report.modules  # found although core.pipeline imports it inside a function
    korean = build_bundle(tmp_path / "k.tar.gz", det, kr)
    assert "province_cn" not in korean.models  # no cn reader, no province check
    assert PROVINCE_NAMES["kr"] == tuple(p.relative_to(REPO).as_posix() for p in DEFAULT_PROVINCE["kr"])
    assert len(PROVINCE_NAMES["kr"]) == 3
    for key, file in zip(("province_kr", "province_kr_2", "province_kr_3"), PROVINCE_NAMES["kr"]):
        assert report.models[key]["checks_reader"] == "kr" and korean.models[key]["file"] == file
        assert file in korean.files and file + ".json" in korean.files
    # the manifest records each check's threshold and gate, as its .json sets them
    assert [(korean.models[k]["min_probability"], korean.models[k]["read_confidence_below"])
            for k in ("province_kr", "province_kr_2", "province_kr_3")] == [(0.8, None), (0.8, None), (0.85, 0.97)]
    # a check of the other charset's classes would fail every start of that charset on the device
    with pytest.raises(AlprError, match="outside charset 'kr'"):
        build_bundle(tmp_path / "y.tar.gz", det, kr, province_kr=f"{SHIPPED},{SHIPPED_DIGITS},{SHIPPED_HANGUL}")
    # the device looks for as many checks as the charset ships, each of its field, in order
    with pytest.raises(AlprError, match="--province_kr names 2 check"):
        build_bundle(tmp_path / "u.tar.gz", det, kr, province_kr=f"{SHIPPED_KR},{SHIPPED_DIGITS}")
    for none in ("none", ","):  # a bundle always carries the checks; the device turns them off
        with pytest.raises(AlprError, match="--province_kr names 0 check.*--lpr_province none"):
            build_bundle(tmp_path / "n.tar.gz", det, kr, province_kr=none)
    for swapped in (f"{SHIPPED_DIGITS},{SHIPPED_KR},{SHIPPED_HANGUL}", f"{SHIPPED_KR},{SHIPPED_KR},{SHIPPED_HANGUL}",
                    f"{SHIPPED_KR},{SHIPPED_HANGUL},{SHIPPED_DIGITS}"):
        with pytest.raises(AlprError, match="is not a (region|digits|hangul) check"):
            build_bundle(tmp_path / "t.tar.gz", det, kr, province_kr=swapped)
    with pytest.raises(AlprError, match=r"pass --province_kr\)"):
        build_bundle(tmp_path / "z.tar.gz", det, kr,
                     province_kr=[tmp_path / "missing.tflite", SHIPPED_DIGITS, SHIPPED_HANGUL])
    with pytest.raises(AlprError, match=r"pass --province_cn\)"):
        build_bundle(tmp_path / "x.tar.gz", det, kr, reader_cn=cn,
                     province_cn=[tmp_path / "missing.tflite", SHIPPED_LETTER])
    with pytest.raises(AlprError, match="--province_cn names 1 check"):
        build_bundle(tmp_path / "s.tar.gz", det, kr, reader_cn=cn, province_cn=SHIPPED)
    with pytest.raises(AlprError, match="is not a (province|letter) check"):
        build_bundle(tmp_path / "r.tar.gz", det, kr, reader_cn=cn, province_cn=f"{SHIPPED_LETTER},{SHIPPED}")
    with pytest.raises(AlprError, match=r"pass --reader_cn\)"):
        build_bundle(tmp_path / "w.tar.gz", det, kr, reader_cn=tmp_path / "missing.tflite")
    with pytest.raises(AlprError, match="--province_cn given without a cn reader"):
        build_bundle(tmp_path / "v.tar.gz", det, kr, province_cn=SHIPPED)


def test_read_crops_views_a_stitched_read_by_its_top_line() -> None:
    """A narrow crop read as a two-line stitch (the model reads a plate only from inputs whose right part has
    the bottom line's ink): its view is ``province_view(crop, 2)``, the top line, not the one-line view. With
    the retry pass winning (no first-pass input reads), it is the same two-line view."""
    cs = load_charset("cn")
    img = np.full((160, 220, 3), 225, np.uint8)
    _glyph(img, 60, 14, 60, 26, RED)
    _glyph(img, 130, 14, 60, 26, BLUE)
    for k in range(4):
        _glyph(img, 14 + 52 * k, 80, 146, 34, GREEN)
    good = _constant_logits("京A12345", cs)
    bad = np.full_like(good, -10.0)
    bad[:, cs.blank] = 10.0  # an empty read: weak, so narrow crops are retried with other cuts

    def stitched_only(first_pass_too: bool):
        calls = {"n": 0}

        def fn(x: np.ndarray) -> np.ndarray:
            calls["n"] += 1
            # a stitch has the bottom line (green) only right of its top line (TOP_WIDTH, 40 columns); a one-line
            # input has green in its left columns too (the bottom line spans the plate)
            green = (x[..., 1] - x[..., 2]) > 0.5
            is_stitch = (green[:, :, 40:].mean(axis=(1, 2)) > 0.02) & (green[:, :, :40].mean(axis=(1, 2)) < 0.002)
            ok = is_stitch & (first_pass_too or calls["n"] > 1)
            return np.where(ok[:, None, None], good[None], bad[None]).astype(np.float32)
        return fn

    for first_pass_too in (True, False):
        check = _Check()
        reads = read_crops([img], stitched_only(first_pass_too), cs, tta=False, retry_cuts=True, province=check)
        assert reads[0].text == "皖A12345"
        assert np.array_equal(check.calls[0][1][0], province_view(img, 2))
        assert not np.array_equal(check.calls[0][1][0], province_view(img, 1))


@pytest.mark.skipif(not SHIPPED_KR.is_file(), reason="the shipped region model is missing")
def test_shipped_region_check() -> None:
    """The Korean reads' default check is the shipped region model: its classes are the 17 regions, its views
    are cut with the Korean shares, it suits kr and not cn; on 150 rendered plates with a region (a seed no set
    of the model card uses) its top region is the renderer's in at least 0.90 of the views (0.960 on the
    validation views in float, model card; 3 standard errors at n = 150 are 0.048)."""
    from core.app import ModelChoice, open_pipeline
    from tools.synth.plates import render_plate

    region, digits, hangul = open_checks("kr")
    assert isinstance(region, ProvinceReader) and region.classes == KR_REGIONS
    assert region.is_field("region") and digits.is_field("digits") and not digits.is_field("region")
    assert hangul.is_field("hangul") and not hangul.is_field("digits")
    assert [c.is_field(f) for c, f in zip(open_checks("cn"), CHARSET_FIELDS["cn"])] == [True, True]
    assert digits.classes == DIGIT_PAIRS and digits.model_path == str(SHIPPED_DIGITS)
    assert region.shares == VIEW_SHARES["kr"] and region.suits(load_charset("kr"))
    assert not region.suits(load_charset("cn"))
    assert region.applies("서울12가3456") and not region.applies("12가3456") and not region.applies("")
    assert [c.model_path for c in open_pipeline(ModelChoice(lpr=True, charset="kr")).reader.province] == [
        str(SHIPPED_KR), str(SHIPPED_DIGITS), str(SHIPPED_HANGUL)]
    rng = np.random.default_rng(40_001)
    views, truth = [], []
    while len(views) < 150:
        crop, text, kind = render_plate(rng, "kr")
        if text[:2] in KR_REGIONS:
            views.append(province_view(crop, kind.lines, shares=region.shares))
            truth.append(KR_REGIONS.index(text[:2]))
    probs = region.probabilities(np.stack(views))
    assert probs.shape == (150, len(KR_REGIONS))
    assert float(np.mean(probs.argmax(axis=1) == np.array(truth))) >= 0.90


def test_read_crops_checks_only_reads_with_a_region() -> None:
    """Korean: a read without a region (a private plate) is not checked; one with a region is, on a view cut with
    the check's shares, and the whole two-character region is replaced."""
    cs = load_charset("kr")
    plate = _region_plate()
    texts = {0: "전남33아4505", 1: "33아4505"}
    def fn_for(text: str):
        logits = _constant_logits(text, cs)
        return lambda x: np.repeat(logits[None], len(x), axis=0)

    check = _Check("전북", KR_REGIONS, VIEW_SHARES["kr"])
    for k, text in texts.items():
        reads = read_crops([plate], fn_for(text), cs, tta=False, retry_cuts=False, province=check)
        assert reads[0].text == ("전북33아4505" if k == 0 else text)
    assert len(check.calls) == 1 and check.calls[0][0] == ["전남33아4505"]
    assert np.array_equal(check.calls[0][1][0], province_view(plate, 1, shares=VIEW_SHARES["kr"]))


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped province model is missing")
def test_metadata_lists_and_shares(tmp_path: Path) -> None:
    """A model's classes may be a list of tokens and its view shares are read from the .json; bad shares are a
    one-line error."""
    model = tmp_path / "r.tflite"
    shutil.copy(SHIPPED, model)  # 31 outputs
    tokens = [f"{a}{b}" for a, b in zip(CN_PROVINCES, CN_PROVINCES[1:] + CN_PROVINCES[:1])]
    metadata_path(model).write_text(json.dumps({"classes": tokens, "min_probability": 0.8, "shares": [0.2, 0.5]}),
                                    encoding="utf-8")
    reader = ProvinceReader(model)
    assert reader.classes == tuple(tokens) and reader.shares == (0.2, 0.5)
    metadata_path(model).write_text(json.dumps({"classes": tokens, "min_probability": 1, "shares": [1, 0.5]}),
                                    encoding="utf-8")
    assert ProvinceReader(model).shares == (1.0, 0.5)  # JSON integers are numbers too
    for bad in ([0.0, 0.5], [0.2], [0.2, 1.5], "11", [True, True], ["0.2", "0.5"], None, [10 ** 400, 0.5]):
        metadata_path(model).write_text(json.dumps({"classes": tokens, "min_probability": 0.8, "shares": bad}),
                                        encoding="utf-8")
        with pytest.raises(AlprError, match="bad province model metadata"):
            ProvinceReader(model)
    # multi-character classes without shares: refused, not cut with the Chinese shares
    metadata_path(model).write_text(json.dumps({"classes": tokens, "min_probability": 0.8}), encoding="utf-8")
    with pytest.raises(AlprError, match="must name its view's shares"):
        ProvinceReader(model)
    for bad_classes in ({"a": 1}, [1, 2], None):
        metadata_path(model).write_text(json.dumps({"classes": bad_classes, "min_probability": 0.8}), encoding="utf-8")
        with pytest.raises(AlprError, match="bad province model metadata"):
            ProvinceReader(model)
    for bad_threshold in (True, "0.8", 10 ** 400):
        metadata_path(model).write_text(json.dumps({"classes": tokens, "min_probability": bad_threshold,
                                                    "shares": [0.2, 0.5]}), encoding="utf-8")
        with pytest.raises(AlprError, match="bad province model metadata"):
            ProvinceReader(model)


def test_digits_field_follows_the_region() -> None:
    """The digits check's field: the two digits right after a Korean region; reads without a region, or without
    two digits after it, have none, and only those two digits are replaced."""
    spec = FIELDS["digits"]
    assert spec.classes == tuple(f"{i:02d}" for i in range(100)) and spec.after == KR_REGIONS and spec.lines == (2,)
    assert find_field("서울83배1246", spec.classes, spec.after) == (2, "83")
    assert find_field("83배1246", spec.classes, spec.after) is None  # no region
    assert find_field("서울배1246", spec.classes, spec.after) is None  # the digits were lost
    assert find_field("서울3배1246", spec.classes, spec.after) is None
    assert find_field("", spec.classes, spec.after) is None
    probs = np.zeros((4, 100), np.float32)
    probs[:, 3] = 0.9  # "03" at 0.9 for every read
    texts = ["경남83배1246", "83배1246", "경남03배1246", "서울배1246"]
    assert replace_provinces(texts, probs, spec.classes, 0.8, spec.after) == [
        "경남03배1246", "83배1246", "경남03배1246", "서울배1246"]
    probs[:, 3] = 0.7  # below the threshold: kept
    assert replace_provinces(texts[:1], probs[:1], spec.classes, 0.8, spec.after) == texts[:1]


def _light_plate(height: int, width: int, glyphs: list) -> np.ndarray:
    """A light plate ``height`` x ``width`` with stand-in glyphs, each (x, y0, y1, width, colour)."""
    img = np.full((height, width, 3), 225, np.uint8)
    for x, y0, y1, w, color in glyphs:
        _glyph(img, x, y0, y1, w, color)
    return img


def _two_line_region_plate() -> np.ndarray:
    """A light Korean two-line plate 160x220: top line (rows 14-60) a red region (x 40-100, two glyphs) and two
    magenta digits (x 112-160); bottom line (rows 80-146) four green glyphs."""
    top = [(40, 14, 60, 26, RED), (74, 14, 60, 26, RED), (112, 14, 60, 20, MAGENTA), (138, 14, 60, 20, MAGENTA)]
    return _light_plate(160, 220, top + [(14 + 52 * k, 80, 146, 34, GREEN) for k in range(4)])


def test_digits_view_is_the_right_of_the_top_line() -> None:
    """The top line's text box spans about x 38-160: the digits view starts at 0.45 of it (about x 93), so it holds
    the digits and at most the region's second glyph's right edge, never the bottom line; the region view
    (0.60 from the left, to about x 111) holds the region and not the digits."""
    img = _two_line_region_plate()
    assert 60 < line_split_row(img) <= 80
    spec = FIELDS["digits"]
    view = province_view(img, 2, shares=spec.shares, starts=spec.starts)
    assert view is not None and _has(view, MAGENTA) and not _has(view, GREEN)

    def cols(v: np.ndarray, color: tuple) -> np.ndarray:
        return np.nonzero(np.all(np.abs(v.astype(int) - color) < 70, axis=-1).any(axis=0))[0]

    # 0.45 of the box cuts the region's second glyph (x 74-100) at about x 93: a few columns of it at most,
    # and the digits (x 112-160) fill the right two thirds of the view; from 0 (the whole line) the region
    # would fill the left half, and the digits only the right 0.4
    assert cols(view, RED).size <= 8 and cols(view, MAGENTA).min() < PROVINCE_VIEW_WIDTH // 2
    whole = province_view(img, 2, shares=spec.shares)
    assert cols(whole, RED).size > 16 and cols(whole, MAGENTA).min() > PROVINCE_VIEW_WIDTH // 2
    region = province_view(img, 2, shares=VIEW_SHARES["kr"])
    assert _has(region, RED) and not _has(region, MAGENTA)


class _DigitsCheck(_Check):
    """``_Check`` for the digits after a region, on two-line reads only: sets them to ``new``."""

    def __init__(self, new: str = "03") -> None:
        super().__init__(new, DIGIT_PAIRS, FIELDS["digits"].shares)
        self.starts = FIELDS["digits"].starts

    def applies(self, text: str, lines=None, confidence=None) -> bool:
        return lines == 2 and find_field(text, DIGIT_PAIRS, KR_REGIONS) is not None

    def check(self, texts, views):
        self.calls.append((list(texts), np.asarray(views).copy()))
        return [t[:2] + self.new + t[4:] for t in texts]


def test_read_crops_runs_checks_in_order_and_digits_on_two_line_reads_only() -> None:
    """Korean: the region check and then the digits check. A two-line read has its region and then its digits
    replaced, the digits from the top line's right (``province_view`` with the digits' starts); a one-line read
    of a plate with a region is not given to the digits check."""
    cs = load_charset("kr")
    good = _constant_logits("전남83배1246", cs)
    bad = np.full_like(good, -10.0)
    bad[:, cs.blank] = 10.0

    def stitch_reads(x: np.ndarray) -> np.ndarray:  # only a two-line stitch (green right of column 40) reads
        green = (x[..., 1] - x[..., 2]) > 0.5
        is_stitch = (green[:, :, 40:].mean(axis=(1, 2)) > 0.02) & (green[:, :, :40].mean(axis=(1, 2)) < 0.002)
        return np.where(is_stitch[:, None, None], good[None], bad[None]).astype(np.float32)

    img = _two_line_region_plate()
    region, digits = _Check("전북", KR_REGIONS, VIEW_SHARES["kr"]), _DigitsCheck()
    reads = read_crops([img], stitch_reads, cs, tta=False, retry_cuts=False, province=[region, digits])
    assert reads[0].text == "전북03배1246"
    assert region.calls[0][0] == ["전남83배1246"] and digits.calls[0][0] == ["전북83배1246"]
    spec = FIELDS["digits"]
    assert np.array_equal(digits.calls[0][1][0], province_view(img, 2, shares=spec.shares, starts=spec.starts))
    # a one-line read: the region is checked, the digits are not
    plate = _region_plate()
    logits = _constant_logits("전남33아4505", cs)
    region, digits = _Check("전북", KR_REGIONS, VIEW_SHARES["kr"]), _DigitsCheck()
    reads = read_crops([plate], lambda x: np.repeat(logits[None], len(x), axis=0), cs, tta=False,
                       retry_cuts=False, province=(region, digits))
    assert reads[0].text == "전북33아4505" and digits.calls == []


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped province model is missing")
def test_metadata_of_a_field_after_tokens(tmp_path: Path) -> None:
    """``starts``, ``after`` and ``lines`` are read from the .json, with defaults for a model that names none;
    bad values are a one-line error."""
    model = tmp_path / "d.tflite"
    shutil.copy(SHIPPED, model)  # 31 outputs
    classes = [f"{i:02d}" for i in range(31)]
    good = {"classes": classes, "min_probability": 0.8, "shares": [1.0, 1.0], "starts": [0.0, 0.45],
            "after": list(KR_REGIONS), "lines": [2]}
    metadata_path(model).write_text(json.dumps(good), encoding="utf-8")
    reader = ProvinceReader(model)
    assert reader.starts == (0.0, 0.45) and reader.after == KR_REGIONS and reader.lines == (2,)
    assert reader.applies("서울12가3456", 2) and not reader.applies("서울12가3456", 1)
    assert not reader.applies("12가3456", 2) and reader.applies("서울12가3456")
    assert reader.suits(load_charset("kr")) and not reader.suits(load_charset("cn"))
    for key, bad in (("starts", [0.0, 1.0]), ("starts", [0.5, 0.45]), ("starts", [-0.1, 0.2]), ("starts", "0"),
                     ("lines", [3]), ("lines", []), ("lines", [True]), ("lines", 2), ("after", [1]),
                     ("after", [""]), ("after", "서울")):
        meta = dict(good, **{key: bad})
        if key == "starts" and bad == [0.5, 0.45]:
            meta["shares"] = [0.4, 1.0]  # the one-line view would start after its end
        metadata_path(model).write_text(json.dumps(meta), encoding="utf-8")
        with pytest.raises(AlprError, match="bad province model metadata"):
            ProvinceReader(model)


@pytest.mark.skipif(not SHIPPED_DIGITS.is_file(), reason="the shipped digits model is missing")
def test_shipped_digits_check() -> None:
    """The Korean reads' second default check is the shipped digits model: its .json names the digits field
    (``FIELDS["digits"]``); on 150 rendered two-line plates (a seed no set of the model card uses) its top class
    is the renderer's two digits in at least 0.86 of the views (0.931 on the validation views in float, model
    card; 3 standard errors at n = 150 are 0.062)."""
    from tools.synth.plates import render_plate

    digits = ProvinceReader(SHIPPED_DIGITS)
    assert digits.field == FIELDS["digits"] and digits.min_probability == 0.8
    rng = np.random.default_rng(41_001)
    views, truth = [], []
    for i in range(150):
        crop, text, kind = render_plate(rng, "kr", kind=("kr_yellow2", "kr_green2")[i % 2])
        assert kind.lines == 2 and text[:2] in KR_REGIONS
        views.append(province_view(crop, 2, shares=digits.shares, starts=digits.starts))
        truth.append(DIGIT_PAIRS.index(text[2:4]))
    probs = digits.probabilities(np.stack(views))
    assert probs.shape == (150, 100) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert float(np.mean(probs.argmax(axis=1) == np.array(truth))) >= 0.86


@pytest.mark.skipif(not all(p.is_file() for p in (SHIPPED_KR, SHIPPED_DIGITS, SHIPPED_HANGUL)),
                    reason="the shipped checks are missing")
def test_reader_tools_record_the_checks_in_order(tmp_path: Path) -> None:
    """``lprnet.evaluate --json`` and ``lprnet.benchmark`` take a comma-separated ``--province`` and record the
    checks as a list, in the order given (and the threshold and gate of each: the shipped region and digits checks
    0.8 and none, the Hangul check 0.85 and 0.97, as their .json files say)."""
    from core.pipeline import DEFAULT_READER
    from tools.synth.plates import render_plate

    reader = DEFAULT_READER["kr"]
    if not reader.is_file():
        pytest.skip("the shipped Korean reader is not there")
    rng = np.random.default_rng(41_002)
    crops = tmp_path / "crops"
    crops.mkdir()
    lines = []
    for i in range(4):
        crop, text, kind = render_plate(rng, "kr", kind="kr_yellow2")
        cv2.imwrite(str(crops / f"{i}.jpg"), crop)
        lines.append(f"{i}.jpg\t{text}\t{kind.name}\t0\t{kind.lines}\t0")
    (crops / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    both = f"{SHIPPED_KR},{SHIPPED_DIGITS},{SHIPPED_HANGUL}"
    out = tmp_path / "eval.json"
    r = subprocess.run([sys.executable, "-m", "lprnet.evaluate", "--weights", str(reader), "--charset", "kr",
                        "--images", str(crops / "labels.txt"), "--province", both, "--json", str(out)],
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["province"] == [str(SHIPPED_KR), str(SHIPPED_DIGITS), str(SHIPPED_HANGUL)] and result["count"] == 4
    assert result["province_min_probability"] == [0.8, 0.8, 0.85]
    assert result["province_read_confidence_below"] == [None, None, 0.97]
    r = subprocess.run([sys.executable, "-m", "lprnet.benchmark", "--model", str(reader), "--charset", "kr",
                        "--images", str(crops / "labels.txt"), "--runs", "2", "--province", both],
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    bench = json.loads(r.stdout[r.stdout.index("{"):])
    assert bench["province"] == [str(SHIPPED_KR), str(SHIPPED_DIGITS), str(SHIPPED_HANGUL)]
    assert bench["province_read_confidence_below"] == [None, None, 0.97]


def test_letter_field_follows_the_province() -> None:
    """The letter check's field: the letter right after a Chinese province; reads without a province, or with a
    digit after it, have none, and only that letter is replaced."""
    spec = FIELDS["letter"]
    assert spec.classes == tuple("ABCDEFGHJKLMNPQRSTUVWXYZ") and spec.after == tuple(CN_PROVINCES)
    assert spec.lines == (2,) and len(spec.after) == 31
    assert find_field("青N33684", spec.classes, spec.after) == (1, "N")
    assert find_field("N33684", spec.classes, spec.after) is None  # the province was lost
    assert find_field("青333684", spec.classes, spec.after) is None  # a digit where the letter should be
    assert find_field("", spec.classes, spec.after) is None
    probs = np.zeros((3, 24), np.float32)
    probs[:, spec.classes.index("W")] = 0.9
    texts = ["青N33684", "N33684", "沪W839W7"]
    assert replace_provinces(texts, probs, spec.classes, 0.8, spec.after) == ["青W33684", "N33684", "沪W839W7"]
    probs[:, spec.classes.index("W")] = 0.7  # below the threshold: kept
    assert replace_provinces(texts[:1], probs[:1], spec.classes, 0.8, spec.after) == texts[:1]


def _two_line_cn_plate() -> np.ndarray:
    """A light Chinese two-line plate 150x220 laid out as the renderer's (province 62 mm, a gap of 60, the letter
    56): top line (rows 14-50) a red province (x 40-77) and a magenta letter (x 113-147); bottom line (rows
    70-136) three green glyphs (fewer than a real plate's five, so that the stand-ins' top line keeps the share
    of the gradient energy ``line_split_row`` expects of it)."""
    top = [(40, 14, 50, 37, RED), (113, 14, 50, 34, MAGENTA)]
    return _light_plate(150, 220, top + [(30 + 60 * k, 70, 136, 34, GREEN) for k in range(3)])


def test_letter_view_is_the_right_of_the_top_line() -> None:
    """The top line's text box spans about x 37-150: the letter view starts at 0.5 of it (about x 94), so it holds
    the letter and none of the province or the bottom line; the province view (0.62 from the left, to about
    x 107) holds the province and not the letter."""
    img = _two_line_cn_plate()
    assert 50 < line_split_row(img) <= 70
    spec = FIELDS["letter"]
    view = province_view(img, 2, shares=spec.shares, starts=spec.starts)
    assert view is not None and _has(view, MAGENTA) and not _has(view, RED) and not _has(view, GREEN)
    whole = province_view(img, 2, shares=spec.shares)  # from 0: the province too
    assert _has(whole, RED) and _has(whole, MAGENTA)
    province = province_view(img, 2, shares=VIEW_SHARES["cn"])
    assert _has(province, RED) and not _has(province, MAGENTA)


@pytest.mark.skipif(not SHIPPED_LETTER.is_file(), reason="the shipped letter model is missing")
def test_shipped_letter_check() -> None:
    """The Chinese reads' second default check is the shipped letter model: its .json names the letter field
    (``FIELDS["letter"]``); on 150 rendered two-line plates (a seed no set of the model card uses) its top class is
    the renderer's letter in at least 0.88 of the views (0.940 of the 599 two-line views of three fresh renders,
    int8, model card; 3 standard errors at n = 150 are 0.058)."""
    from tools.synth.plates import render_plate

    letter = ProvinceReader(SHIPPED_LETTER)
    assert letter.field == FIELDS["letter"] and letter.min_probability == 0.8
    assert letter.suits(load_charset("cn")) and not letter.suits(load_charset("kr"))
    assert letter.applies("青N33684", 2) and not letter.applies("青N33684", 1) and not letter.applies("N33684", 2)
    rng = np.random.default_rng(42_001)
    views, truth = [], []
    for _ in range(150):
        crop, text, kind = render_plate(rng, "cn", kind="cn_yellow2")
        assert kind.lines == 2 and text[0] in CN_PROVINCES
        views.append(province_view(crop, 2, shares=letter.shares, starts=letter.starts))
        truth.append(CN_LETTERS.index(text[1]))
    probs = letter.probabilities(np.stack(views))
    assert probs.shape == (150, 24) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert float(np.mean(probs.argmax(axis=1) == np.array(truth))) >= 0.88


def test_hangul_field_follows_the_digits() -> None:
    """The hangul check's field: the letter after an optional region and two or three digits, on one-line reads;
    a read whose letter was lost, or with one digit before it, has none, and only the letter is replaced."""
    spec = FIELDS["hangul"]
    assert spec.classes == tuple(KR_HANGUL) and len(spec.classes) == 40 and spec.lines == (1,) and spec.after == ()
    cases = {"12가3456": (2, "가"), "123가4567": (3, "가"), "서울12가3456": (4, "가"), "가3456": None,
             "1가3456": None, "서울가3456": None, "": None, "1234567": None}
    for text, want in cases.items():
        assert find_field(text, spec.classes, spec.after, spec.after_pattern) == want, text
    probs = np.zeros((3, 40), np.float32)
    probs[:, spec.classes.index("마")] = 0.9
    texts = ["968가2188", "서울12가3456", "가3456"]
    assert replace_provinces(texts, probs, spec.classes, 0.8, after_pattern=spec.after_pattern) == [
        "968마2188", "서울12마3456", "가3456"]


def test_hangul_view_is_the_middle_of_a_one_line_plate() -> None:
    """The stand-in plate's text box spans about x 18-272: the hangul view runs from 0.22 to 0.58 of it (about x
    74-165), so it holds the third glyph (magenta, x 96-120) and neither the first (red) nor the last (green)."""
    spec = FIELDS["hangul"]
    view = province_view(_one_line_plate(), 1, shares=spec.shares, starts=spec.starts)
    assert view is not None and _has(view, MAGENTA) and not _has(view, RED) and not _has(view, GREEN)
    from_left = province_view(_one_line_plate(), 1, shares=spec.shares)  # starts ignored: the first glyph too
    assert _has(from_left, RED)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped province model is missing")
def test_metadata_after_pattern(tmp_path: Path) -> None:
    """``after_pattern`` is read from the .json; a pattern that is not a regular expression, not a string, or
    given together with ``after`` is a one-line error."""
    model = tmp_path / "h.tflite"
    shutil.copy(SHIPPED, model)  # 31 outputs
    good = {"classes": list(KR_HANGUL[:31]), "min_probability": 0.8, "shares": [0.58, 1.0], "starts": [0.22, 0.0],
            "after_pattern": "[0-9]{2,3}", "lines": [1]}
    metadata_path(model).write_text(json.dumps(good), encoding="utf-8")
    reader = ProvinceReader(model)
    assert reader.after_pattern == "[0-9]{2,3}" and reader.applies("12가3456", 1) and not reader.applies("가3456", 1)
    assert not reader.applies("12가3456", 2)
    for bad in ({"after_pattern": "[0-9"}, {"after_pattern": 3}, {"after_pattern": ""},
                {"after": ["서울"]}, {"after_pattern": "(" * 5000 + ")" * 5000}):
        metadata_path(model).write_text(json.dumps(dict(good, **bad)), encoding="utf-8")
        with pytest.raises(AlprError, match="bad province model metadata"):
            ProvinceReader(model)


@pytest.mark.skipif(not SHIPPED_HANGUL.is_file(), reason="the shipped hangul model is missing")
def test_shipped_hangul_check() -> None:
    """The Korean reads' third check is the hangul model: its .json names the field (``FIELDS["hangul"]``, its
    pattern included) and session 43's threshold 0.85 and gate 0.97 (runs/s43/RULE_gate.md); on 150 rendered
    one-line plates (a seed no set of the model card uses) its top class is the renderer's letter in at least 0.94 of
    the views (0.980 of the 4,463 one-line views of three fresh renders, int8, model card; 3 standard errors at
    n = 150 are 0.034)."""
    from tools.synth.plates import render_plate

    hangul = ProvinceReader(SHIPPED_HANGUL)
    assert hangul.field == FIELDS["hangul"] and hangul.min_probability == 0.85
    assert hangul.read_confidence_below == 0.97
    assert hangul.suits(load_charset("kr")) and not hangul.suits(load_charset("cn"))
    assert hangul.applies("서울12가3456", 1) and not hangul.applies("서울12가3456", 2)
    rng = np.random.default_rng(42_002)
    views, truth = [], []
    while len(views) < 150:
        crop, text, kind = render_plate(rng, "kr")
        if kind.lines != 1:
            continue
        start, letter = find_field(text, hangul.classes, after_pattern=hangul.after_pattern)
        views.append(province_view(crop, 1, shares=hangul.shares, starts=hangul.starts))
        truth.append(KR_HANGUL.index(letter))
    probs = hangul.probabilities(np.stack(views))
    assert probs.shape == (150, 40) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert float(np.mean(probs.argmax(axis=1) == np.array(truth))) >= 0.94


@pytest.mark.skipif(not SHIPPED_HANGUL.is_file(), reason="the shipped hangul model is missing")
def test_hangul_check_replaces_the_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ProvinceReader.check`` of the hangul model finds the letter after the digits (its ``after_pattern``) and
    replaces only it; a read without digits before a letter is left alone."""
    hangul = ProvinceReader(SHIPPED_HANGUL)
    probs = np.zeros((3, 40), np.float32)
    probs[:, KR_HANGUL.index("마")] = 0.95
    monkeypatch.setattr(hangul, "probabilities", lambda views: probs[:len(views)])
    views = np.zeros((3, PROVINCE_VIEW_HEIGHT, PROVINCE_VIEW_WIDTH, 3), np.uint8)
    assert hangul.check(["968가2188", "서울12가3456", "가3456"], views) == ["968마2188", "서울12마3456", "가3456"]


@pytest.mark.skipif(not SHIPPED_HANGUL.is_file(), reason="the shipped hangul model is missing")
def test_a_check_whose_pattern_differs_is_another_field(tmp_path: Path) -> None:
    """``is_field`` compares what the field follows too: the hangul model with another pattern is not a hangul
    check (a bundle or a front end would otherwise take it for one)."""
    model = tmp_path / "h.tflite"
    shutil.copy(SHIPPED_HANGUL, model)
    meta = json.loads(metadata_path(SHIPPED_HANGUL).read_text(encoding="utf-8"))
    metadata_path(model).write_text(json.dumps(dict(meta, after_pattern="[0-9]{2,3}")), encoding="utf-8")
    assert ProvinceReader(SHIPPED_HANGUL).is_field("hangul") and not ProvinceReader(model).is_field("hangul")


@pytest.mark.skipif(not SHIPPED_HANGUL.is_file(), reason="the shipped hangul model is missing")
def test_a_gated_check_leaves_sure_reads_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``read_confidence_below`` in a check's .json: ``applies`` refuses reads at least that sure, and
    ``read_crops`` neither cuts their view nor calls the model. A read from logits of +-10 is all but sure (each
    of its 18 frames' top class has probability 1 / (1 + 67 e^-20), so its confidence is above 0.99999): a gate
    of 0.97 leaves it alone, a gate of 1.0 does not."""
    meta = json.loads(metadata_path(SHIPPED_HANGUL).read_text(encoding="utf-8"))
    model = tmp_path / "h.tflite"
    shutil.copy(SHIPPED_HANGUL, model)
    cs = load_charset("kr")
    z = _constant_logits("12가3456", cs)

    def fn(x: np.ndarray) -> np.ndarray:
        return np.repeat(z[None], len(x), axis=0)

    plate = _one_line_plate(1)
    texts = {}
    for gate in (0.97, 1.0):
        metadata_path(model).write_text(json.dumps(dict(meta, read_confidence_below=gate)), encoding="utf-8")
        hangul = ProvinceReader(model)
        assert hangul.read_confidence_below == gate
        assert hangul.applies("12가3456", 1, gate - 0.01) and not hangul.applies("12가3456", 1, gate)
        assert hangul.applies("12가3456", 1) and not hangul.applies("12가3456", 2, 0.5)
        assert not hangul.applies("12가3456", None, gate)  # the gate holds whether or not lines are given
        calls, cuts = [], []

        def probs(views: np.ndarray, calls: list = calls) -> np.ndarray:
            calls.append(len(views))
            p = np.zeros((len(views), len(KR_HANGUL)), np.float32)
            p[:, KR_HANGUL.index("마")] = 0.95
            return p

        def view(*args, cuts: list = cuts, **kwargs) -> np.ndarray:
            cuts.append(1)
            return province_view(*args, **kwargs)

        monkeypatch.setattr(hangul, "probabilities", probs)
        monkeypatch.setattr(lprnet.reader, "province_view", view)
        (read,) = read_crops([plate], fn, cs, tta=False, retry_cuts=False, province=hangul)
        assert read.confidence > 0.999
        texts[gate] = (read.text, calls, len(cuts))
    assert texts == {0.97: ("12가3456", [], 0), 1.0: ("12마3456", [1], 1)}  # a sure read: no view cut, no model call
    assert ProvinceReader(SHIPPED).read_confidence_below is None  # a check naming no gate looks at every read


@pytest.mark.skipif(not SHIPPED_HANGUL.is_file(), reason="the shipped hangul model is missing")
def test_bad_gates_are_one_line_errors(tmp_path: Path) -> None:
    meta = json.loads(metadata_path(SHIPPED_HANGUL).read_text(encoding="utf-8"))
    model = tmp_path / "h.tflite"
    shutil.copy(SHIPPED_HANGUL, model)
    """A gate outside (0, 1], or not a number, is a one-line error naming the key; null, as no key, gates nothing."""
    for bad in (0, 0.0, -0.5, 1.01, "0.9", True, [0.9]):
        metadata_path(model).write_text(json.dumps(dict(meta, read_confidence_below=bad)), encoding="utf-8")
        with pytest.raises(AlprError, match="read_confidence_below") as exc:
            ProvinceReader(model)
        assert "\n" not in str(exc.value)
    metadata_path(model).write_text(json.dumps(dict(meta, read_confidence_below=None)), encoding="utf-8")
    assert ProvinceReader(model).read_confidence_below is None
