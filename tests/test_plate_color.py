"""EV flag and plate colour: rendered plates under varied lighting, and the real crops in ../shared."""
from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

from core.plate_color import COLORS, classify_plate_color, classify_plate_colors, is_ev
from tests.paths import shared_path

# name -> (hue deg range, saturation range, value range, text dark?, expected colour)
KR_KINDS: Dict[str, Tuple[Tuple[float, float], Tuple[float, float], Tuple[float, float], bool, str]] = {
    "kr_ev_light_blue": ((195, 215), (0.45, 0.75), (0.75, 0.95), True, "blue"),
    "kr_white": ((0, 360), (0.0, 0.06), (0.78, 0.95), True, "white"),
    "kr_yellow": ((42, 55), (0.7, 0.95), (0.8, 0.95), True, "yellow"),
    "kr_old_green": ((120, 150), (0.5, 0.8), (0.35, 0.6), False, "green"),
    "kr_corporate_light_green": ((90, 140), (0.3, 0.5), (0.8, 0.92), True, "green"),
    "kr_diplomatic_navy": ((220, 235), (0.7, 0.9), (0.3, 0.5), False, "blue"),
    "cn_blue": ((215, 230), (0.7, 0.95), (0.6, 0.85), False, "blue"),
}


def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb((h % 360) / 360.0, s, v)
    return np.array([b, g, r], np.float32) * 255.0


def _render(rng: np.random.Generator, bg_top: np.ndarray, bg_bottom: np.ndarray, dark_text: bool,
            lighting: bool = True) -> np.ndarray:
    """A 220x48 plate with 7 characters, a frame, optional car body around, then lighting, noise, JPEG."""
    h, w = 48, 220
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    plate = np.broadcast_to(bg_top * (1 - ramp) + bg_bottom * ramp, (h, w, 3)).copy()
    text_level = rng.uniform(10, 50) if dark_text else rng.uniform(215, 250)
    text = (float(text_level),) * 3
    cv2.rectangle(plate, (1, 1), (w - 2, h - 2), text, 2)
    chars = "".join(rng.choice(list("0123456789"), 6))
    cv2.putText(plate, chars[:2], (14, 38), cv2.FONT_HERSHEY_SIMPLEX, 1.2, text, 3, cv2.LINE_AA)
    cv2.rectangle(plate, (70, 12), (92, 38), text, 3)  # a Hangul-like block
    cv2.putText(plate, chars[2:], (100, 38), cv2.FONT_HERSHEY_SIMPLEX, 1.2, text, 3, cv2.LINE_AA)
    if rng.random() < 0.5:  # a loose detector box: car body around the plate
        mx, my = int(rng.integers(2, 16)), int(rng.integers(2, 10))
        body = rng.uniform(10, 200) * np.ones(3, np.float32) * rng.uniform(0.8, 1.2, 3)
        canvas = np.empty((h + 2 * my, w + 2 * mx, 3), np.float32)
        canvas[:] = body
        canvas[my:my + h, mx:mx + w] = plate
        plate = canvas
    img = plate / 255.0
    if lighting:
        img = img * rng.uniform(0.5, 1.3)  # exposure
        img = np.clip(img, 0, 1) ** rng.uniform(0.7, 1.4)  # gamma / tone curve
        gains = np.array([rng.uniform(0.88, 1.12), 1.0, rng.uniform(0.88, 1.12)], np.float32)  # B, G, R
        img = img * gains  # colour cast (white balance error)
    img = np.clip(img * 255.0 + rng.normal(0, rng.uniform(1, 8), img.shape), 0, 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.1, 1.0))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 95))])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def _render_kind(rng: np.random.Generator, kind: str, lighting: bool = True) -> np.ndarray:
    (h0, h1), (s0, s1), (v0, v1), dark, _ = KR_KINDS[kind]
    bg = _hsv_to_bgr(rng.uniform(h0, h1), rng.uniform(s0, s1), rng.uniform(v0, v1))
    return _render(rng, bg, bg, dark, lighting)


def _render_cn_new_energy(rng: np.random.Generator) -> np.ndarray:
    """Chinese new-energy plate: green at the top fading to pale green-white at the bottom, black text."""
    hue = rng.uniform(110, 145)
    top = _hsv_to_bgr(hue, rng.uniform(0.55, 0.8), rng.uniform(0.7, 0.9))
    bottom = _hsv_to_bgr(hue, rng.uniform(0.25, 0.4), rng.uniform(0.85, 0.95))
    return _render(rng, top, bottom, True)


def _precision_recall(pred: List[bool], truth: List[bool]) -> Tuple[float, float]:
    p, t = np.array(pred), np.array(truth)
    tp = int((p & t).sum())
    return tp / max(1, int(p.sum())), tp / max(1, int(t.sum()))


def test_clean_colours_and_polarity() -> None:
    rng = np.random.default_rng(0)
    for kind, (_, _, _, dark, colour) in KR_KINDS.items():
        for _ in range(5):
            res = classify_plate_color(_render_kind(rng, kind, lighting=False), "kr")
            assert res.color == colour, (kind, res)
            if colour != "white":  # the polarity of an achromatic plate is only a majority guess
                assert res.dark_text == dark, (kind, res)
            assert res.ev == (kind == "kr_ev_light_blue"), (kind, res)
            assert res.color in COLORS


def test_ev_precision_recall_korea_varied_lighting() -> None:
    """Acceptance: precision and recall >= 0.98 on rendered KR EV vs all other plate kinds."""
    rng = np.random.default_rng(1)
    pred: List[bool] = []
    truth: List[bool] = []
    per_kind: Dict[str, float] = {}
    for kind in KR_KINDS:
        n = 300 if kind == "kr_ev_light_blue" else 100
        flags = [is_ev(_render_kind(rng, kind), "kr") for _ in range(n)]
        per_kind[kind] = float(np.mean(flags))
        pred += flags
        truth += [kind == "kr_ev_light_blue"] * n
    precision, recall = _precision_recall(pred, truth)
    print(f"KR EV precision {precision:.4f} recall {recall:.4f} EV-rate per kind {per_kind}")
    assert precision >= 0.98 and recall >= 0.98, per_kind


def test_ev_precision_recall_china_new_energy() -> None:
    rng = np.random.default_rng(2)
    crops = [_render_cn_new_energy(rng) for _ in range(200)]
    truth = [True] * 200
    for kind in ("cn_blue", "kr_white", "kr_yellow", "kr_old_green"):
        crops += [_render_kind(rng, kind) for _ in range(50)]
        truth += [False] * 50
    pred = [r.ev for r in classify_plate_colors(crops, "cn")]
    precision, recall = _precision_recall(pred, truth)
    print(f"CN new-energy precision {precision:.4f} recall {recall:.4f}")
    assert precision >= 0.98 and recall >= 0.98


def test_same_plate_region_rules() -> None:
    rng = np.random.default_rng(3)
    ev_kr = _render_kind(rng, "kr_ev_light_blue", lighting=False)
    green_cn = _render_cn_new_energy(rng)
    assert is_ev(ev_kr, "kr") and not is_ev(ev_kr, "cn")
    assert is_ev(green_cn, "cn") and not is_ev(green_cn, "kr")
    with pytest.raises(ValueError):
        classify_plate_color(ev_kr, "us")


def test_degenerate_inputs() -> None:
    assert classify_plate_color(np.zeros((0, 0, 3), np.uint8)).color == "other"
    assert classify_plate_color(np.zeros((20, 80, 3), np.uint8)).color == "other"  # black: too dark
    flat = np.full((20, 80, 3), (230, 230, 230), np.uint8)
    res = classify_plate_color(flat)
    assert res.color == "white" and not res.ev
    assert classify_plate_colors([None])[0].color == "other"


def _read(path: Path) -> np.ndarray:
    return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)


def test_real_korean_crops_are_not_ev() -> None:
    """kwon-evan/LPRNet crops (Apache-2.0): 13 white plates and one yellow (Incheon commercial), none EV."""
    folder = shared_path("data", "kr_plates_dev")
    results = {p.name: classify_plate_color(_read(p), "kr") for p in sorted(folder.glob("*.jpg"))}
    assert len(results) == 14
    assert not any(r.ev for r in results.values())
    assert results["인천86바3430.jpg"].color == "yellow"
    whites = sum(r.color == "white" for name, r in results.items() if not name.startswith("인천"))
    assert whites >= 12, {k: v.color for k, v in results.items()}


def test_real_chinese_crops_are_blue_with_white_text() -> None:
    """sirius-ai/LPRNet_Pytorch crops (CCPD-derived, Apache-2.0): ordinary blue plates, white characters."""
    folder = shared_path("data", "cn_plates_dev")
    results = [classify_plate_color(_read(p), "cn") for p in sorted(folder.glob("*.jpg"))]
    assert len(results) > 400
    blue_light_text = np.mean([r.color == "blue" and not r.dark_text for r in results])
    print(f"CN dev crops: blue with light text {blue_light_text:.3f}")
    assert blue_light_text >= 0.9
    assert not any(r.ev for r in results)
    # read as Korean plates, blue plates with white characters are not the Korean EV plate
    kr_rate = np.mean([r.color == "blue" and r.dark_text for r in results])
    assert kr_rate <= 0.02


@pytest.mark.parametrize("region, min_precision, min_recall", [("kr", 0.93, 0.93), ("cn", 0.97, 0.94)])
def test_ev_on_training_renderer_crops(region: str, min_precision: float, min_recall: float) -> None:
    """The product's own plate renderer (tools.synth.plates) with its full photometric range, a seed not used
    to choose the thresholds (7100/7200 were). On 2000 crops per region the rule measures kr 0.98/0.98 and
    cn 1.00/0.98; the floors sit about three standard errors below for 800 crops (~160-200 EV plates)."""
    from tools.ev_benchmark import render_set, score

    result = score(region, render_set(region, 800, 7300))
    print(f"{region}: precision {result['precision']:.4f} recall {result['recall']:.4f} {result['errors_by_kind']}")
    assert result["ev_plates"] >= 100
    assert result["precision"] >= min_precision and result["recall"] >= min_recall, result["errors_by_kind"]


def _two_tone_plate(background_bgr: Tuple[int, int, int], ink_bgr: Tuple[int, int, int],
                    ink_share: float) -> np.ndarray:
    """A 200x50 plate of flat ``background_bgr`` with seven vertical strokes of ``ink_bgr`` covering
    ``ink_share`` of each text row (a bold or blurred font), with a plain margin above and below."""
    h, w = 50, 200
    img = np.empty((h, w, 3), np.uint8)
    img[:] = background_bgr
    pitch = w / 7.0
    for i in range(7):
        x0 = int(round(i * pitch + pitch * (1 - ink_share) / 2))
        x1 = int(round(x0 + pitch * ink_share))
        img[8:42, x0:x1] = ink_bgr
    return img


def test_polarity_from_chroma_ratio_when_the_gap_is_small() -> None:
    """The more colourful part is the background also when the two parts' chroma differ by less than
    CHROMA_GAP (0.06) but by a factor of at least CHROMA_RATIO (dim plates, ink mixed with the background by
    blur): the majority rule alone gets both plates below wrong (hand-computed chroma, max - min channel)."""
    # An old dark-green plate with white characters tinted blue by a cast, characters the majority:
    # background chroma (80 - 30) / 255 = 0.196, characters (120 - 78) / 255 = 0.165 (ratio 1.19, gap 0.031).
    # Read with the characters as background it would be a light-blue plate with dark text: a false EV.
    green = classify_plate_color(_two_tone_plate((40, 80, 30), (120, 100, 78), ink_share=0.6), "kr")
    assert not green.dark_text and green.color == "green" and not green.ev, green
    # A dim light-blue EV plate whose dark ink blur made bluish, ink the majority of the text rows:
    # background chroma (140 - 80) / 255 = 0.235, ink (90 - 45) / 255 = 0.176 (ratio 1.33, gap 0.059).
    ev = classify_plate_color(_two_tone_plate((140, 118, 80), (90, 70, 45), ink_share=0.6), "kr")
    assert ev.dark_text and ev.color == "blue" and ev.ev, ev
