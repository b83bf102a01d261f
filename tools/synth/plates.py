"""Synthetic licence-plate crops for training and checking the LPRNet reader.

Library::

    rng = np.random.default_rng(7)
    image, text, kind = render_plate(rng, charset="kr")          # BGR uint8, '123가4567', PlateKind
    image, text, kind = render_plate(rng, "cn", kind="cn_green")  # any kind of KINDS

Everything random comes from ``rng``, so one seed gives the same crops on every run (with the same
fonts installed). Kinds (``KINDS``): Korean ``kr_white`` (``12가3456`` / ``123가4567``), ``kr_ev``
(light blue, ``ev`` flag), ``kr_yellow`` and ``kr_yellow2`` (commercial, region, one / two lines),
``kr_green2`` (old green two-line); Chinese ``cn_blue`` (7), ``cn_green`` (new energy, 8),
``cn_yellow`` and ``cn_yellow2`` (two lines). Two-line plates are labelled in reading order (top
line, then bottom line). Text formats: see ``tools.synth.charsets``.

Command line (one crop per file, name = plate text, ``_N`` suffix for the N-th duplicate)::

    python -m tools.synth.plates --charset kr --count 100000 --out runs/kr_crops --seed 1 [--size 94x24]

writes ``OUT/<text>.jpg`` and ``OUT/labels.txt`` with one line per crop:
``filename<TAB>text<TAB>kind<TAB>ev<TAB>lines<TAB>char_px`` (``ev`` is 1 for electric / new-energy
plates: Korean light-blue and Chinese green; ``lines`` is 1 or 2; ``char_px`` is the height in pixels
of the plate's smallest character at the lowest resolution the crop went through, see
``render_plate``; ``lprnet.evaluate`` scores crops below and above its ``MIN_CHAR_PX`` apart). Crops keep the
size they were rendered at (``--size original``, the default), which training needs to stitch two-line
plates the way the runtime does; ``--size 94x24`` writes the reader's input size instead (two-line plates squashed into
it, which the runtime never stitches), ``--keep_original`` then writes both (originals in
``OUT/original/``). The output folder is built beside OUT and renamed into place at the end, so an
interrupted run leaves nothing half-written.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.errors import AlprError
from lprnet.preprocess import fit_size
from tools.synth import charsets as cs
from tools.synth.fonts import FontSpec, find_digit_fonts, find_fonts
from tools.synth.stroke_font import has_glyph, stroke_glyph
from tools.synth.yolo_io import building_folder


@dataclass(frozen=True)
class PlateKind:
    """A plate design: charset, physical size in mm, line count, colours (RGB) and the EV flag."""

    name: str
    charset: str
    size_mm: Tuple[int, int]  # width, height
    lines: int
    ev: bool
    background: Tuple[int, int, int]
    ink: Tuple[int, int, int]

    def __str__(self) -> str:
        return self.name


KINDS: Dict[str, PlateKind] = {
    k.name: k
    for k in (
        PlateKind("kr_white", "kr", (520, 110), 1, False, (245, 245, 242), (20, 20, 22)),
        # the older, shorter private plate (335x155, one line), still common on the road
        PlateKind("kr_white_old", "kr", (335, 155), 1, False, (240, 240, 236), (20, 20, 22)),
        PlateKind("kr_ev", "kr", (520, 110), 1, True, (140, 200, 235), (15, 20, 30)),
        PlateKind("kr_yellow", "kr", (520, 110), 1, False, (240, 190, 25), (20, 20, 20)),
        PlateKind("kr_yellow2", "kr", (335, 170), 2, False, (240, 190, 25), (20, 20, 20)),
        PlateKind("kr_green2", "kr", (335, 170), 2, False, (25, 105, 65), (240, 242, 238)),
        PlateKind("cn_blue", "cn", (440, 140), 1, False, (15, 65, 185), (245, 245, 245)),
        PlateKind("cn_green", "cn", (480, 140), 1, True, (90, 200, 120), (15, 15, 15)),
        PlateKind("cn_yellow", "cn", (440, 140), 1, False, (245, 185, 15), (15, 15, 15)),
        PlateKind("cn_yellow2", "cn", (440, 220), 2, False, (245, 185, 15), (15, 15, 15)),
    )
}
CN_STROKE_FONT = 0.6  # share of Chinese plates drawn with the stroke-built plate font
KIND_WEIGHTS = {
    "kr": {"kr_white": 0.3, "kr_white_old": 0.1, "kr_ev": 0.2, "kr_yellow": 0.14, "kr_yellow2": 0.13,
           "kr_green2": 0.13},
    "cn": {"cn_blue": 0.5, "cn_green": 0.25, "cn_yellow": 0.15, "cn_yellow2": 0.1},
}


def _pick_kind(rng: np.random.Generator, charset: str, kind: str | None) -> PlateKind:
    if charset not in KIND_WEIGHTS:
        raise AlprError(f"unknown charset {charset!r}; expected kr or cn")
    if kind is None:
        names = list(KIND_WEIGHTS[charset])
        p = np.array([KIND_WEIGHTS[charset][n] for n in names])
        return KINDS[names[int(rng.choice(len(names), p=p / p.sum()))]]
    pk = KINDS.get(str(kind))
    if pk is None or pk.charset != charset:
        valid = ", ".join(n for n in KINDS if KINDS[n].charset == charset)
        raise AlprError(f"unknown plate kind {kind!r} for charset {charset}; expected one of {valid}")
    return pk


def _choice(rng: np.random.Generator, seq: Sequence[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(_choice(rng, cs.DIGITS) for _ in range(n))


def _cn_alnum(rng: np.random.Generator, n: int, p_letter: float = 0.25) -> str:
    return "".join(_choice(rng, cs.CN_LETTERS if rng.random() < p_letter else cs.DIGITS) for _ in range(n))


def random_text(rng: np.random.Generator, kind: PlateKind) -> str:
    """A random, valid plate text for ``kind`` (matches ``charsets.KIND_PATTERNS[kind.name]``)."""
    n = kind.name
    if n == "kr_white_old":
        return _digits(rng, 2) + _choice(rng, cs.KR_PRIVATE_HANGUL) + _digits(rng, 4)
    if n in ("kr_white", "kr_ev"):
        han = cs.KR_RENTAL_HANGUL if rng.random() < 0.1 else cs.KR_PRIVATE_HANGUL
        return _digits(rng, 2 if rng.random() < 0.45 else 3) + _choice(rng, han) + _digits(rng, 4)
    if n in ("kr_yellow", "kr_yellow2"):
        han = _choice(rng, cs.KR_COMMERCIAL_HANGUL)
        return _choice(rng, cs.KR_REGIONS) + _digits(rng, 2) + han + _digits(rng, 4)
    if n == "kr_green2":
        han = _choice(rng, cs.KR_PRIVATE_HANGUL)
        return _choice(rng, cs.KR_REGIONS) + _digits(rng, 2) + han + _digits(rng, 4)
    head = _choice(rng, cs.CN_PROVINCES) + _choice(rng, cs.CN_LETTERS)
    if n == "cn_green":
        if rng.random() < 0.8:
            return head + _choice(rng, "DF") + _cn_alnum(rng, 1, 0.3) + _digits(rng, 4)
        return head + _digits(rng, 5) + _choice(rng, "DF")
    return head + _cn_alnum(rng, 5)


# ----------------------------------------------------------------------------------------- layout

Slot = Tuple[str, float, float, float, float]  # glyph, x, y, w, h in mm


def _row(glyphs: Sequence[str], widths: Sequence[float], heights: Sequence[float], gap: float,
         x0: float, x1: float, yc: float) -> List[Slot]:
    """Glyph slots on one line, centred between x0 and x1, vertically centred on yc."""
    total = sum(widths) + gap * (len(widths) - 1)
    x = x0 + (x1 - x0 - total) / 2
    out: List[Slot] = []
    for g, w, h in zip(glyphs, widths, heights):
        if g != " ":  # a space only takes room
            out.append((g, x, yc - h / 2, w, h))
        x += w + gap
    return out


def _split_kr(text: str) -> Tuple[str, str, str, str]:
    region = text[:2] if text[:2] in cs.KR_REGIONS else ""
    rest = text[len(region):]
    i = next(k for k, c in enumerate(rest) if c in cs.KR_HANGUL)
    return region, rest[:i], rest[i], rest[i + 1:]


def _layout(rng: np.random.Generator, kind: PlateKind, text: str) -> Tuple[List[Slot], dict]:
    """Glyph slots (mm) and decorations for ``text`` on ``kind``."""
    W, H = kind.size_mm
    j = lambda s: 1.0 + rng.uniform(-s, s)  # noqa: E731
    deco: dict = {}
    if kind.charset == "kr":
        region, d1, han, d2 = _split_kr(text)
        if kind.lines == 1:
            short = H > 120  # the old 335x155 plate: bigger glyphs, no strip
            strip = not short and (kind.ev or (len(d1) == 3 and rng.random() < 0.6))
            deco["strip"] = strip
            x0 = 46.0 if strip else 18.0
            x1 = W - 14.0
            h = (0.66 * H if short else 80.0) * j(0.05)
            space = rng.uniform(0.0, 0.55)  # real plates often leave a gap after the Hangul
            glyphs = list(d1) + [han, " "] + list(d2)
            if region:
                rw = 68.0
                if rng.random() < 0.5:  # region letters stacked vertically
                    slots = [(region[0], x0, 12.0, 40.0, 41.0), (region[1], x0, 57.0, 40.0, 41.0)]
                    rw = 40.0
                else:
                    slots = _row(list(region), [31.0, 31.0], [46.0, 46.0], 4.0, x0, x0 + rw, H / 2)
                x0 += rw + 6.0
            else:
                slots = []
            n_d = len(d1) + len(d2)
            ratio_h = 1.22
            gap_r = 0.12
            dw = min((x1 - x0) / (n_d + ratio_h + space + gap_r * (len(glyphs) - 2)), 0.72 * h)
            widths = [dw] * len(d1) + [dw * ratio_h, dw * space - dw * gap_r] + [dw] * len(d2)
            heights = [h] * len(d1) + [h * 0.92, h] + [h] * len(d2)
            slots += _row(glyphs, widths, heights, dw * gap_r, x0, x1, H / 2 + rng.uniform(-2, 2))
            return slots, deco
        # two lines: region + class digits on top, hangul + serial below
        top = list(region) + list(d1)
        th = 46.0 * j(0.05)
        slots = _row(top, [40.0] * len(region) + [33.0] * len(d1), [th] * len(top), 5.0, 0, W, 38.0)
        bh = 92.0 * j(0.04)
        slots += _row([han] + list(d2), [64.0, 56.0, 56.0, 56.0, 56.0], [bh * 0.8] + [bh] * 4, 6.0, 0, W,
                      116.0 + rng.uniform(-2, 2))
        return slots, deco
    # Chinese
    if kind.lines == 2:
        slots = _row(list(text[:2]), [62.0, 56.0], [58.0, 58.0], 60.0, 0, W, 48.0)
        slots += _row(list(text[2:]), [66.0] * 5, [112.0] * 5, 16.0, 0, W, 152.0)
        return slots, deco
    n_tail = len(text) - 2
    cw = 45.0 if n_tail == 5 else 43.0
    h = 90.0 * j(0.03)
    slots = _row(list(text[:2]), [cw, cw], [h, h], 12.0, 15.5, 15.5 + 2 * cw + 12.0, H / 2)
    tail_x0 = 15.5 + 2 * cw + 12.0 + 22.0
    gap = 12.0 if n_tail == 5 else 9.0
    slots += _row(list(text[2:]), [cw] * n_tail, [h] * n_tail, gap, tail_x0, W - 15.5, H / 2)
    deco["dot"] = (15.5 + 2 * cw + 12.0 + 11.0, H / 2)
    return slots, deco


# ----------------------------------------------------------------------------------------- glyphs

_GLYPHS: Dict[Tuple[str, int, str], np.ndarray] = {}
_FONTS: Dict[Tuple[str, int], ImageFont.FreeTypeFont] = {}


def _glyph(spec: FontSpec, ch: str) -> np.ndarray:
    """Tight uint8 mask of ``ch`` drawn at 64 px (cached per process)."""
    key = (spec.path, spec.index, ch)
    m = _GLYPHS.get(key)
    if m is None:
        font = _FONTS.get((spec.path, spec.index))
        if font is None:
            font = _FONTS[(spec.path, spec.index)] = ImageFont.truetype(spec.path, 64, index=spec.index)
        box = font.getbbox(ch)
        img = Image.new("L", (box[2] - box[0] + 4, box[3] - box[1] + 4))
        ImageDraw.Draw(img).text((2 - box[0], 2 - box[1]), ch, font=font, fill=255)
        a = np.asarray(img)
        ys, xs = np.nonzero(a)
        m = a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy() if len(ys) else a
        _GLYPHS[key] = m
    return m


def _blend(canvas: np.ndarray, alpha: np.ndarray, color: Sequence[float], x: int, y: int) -> None:
    """canvas[y:, x:] = mix(canvas, color, alpha) in place, clipped to the canvas."""
    h, w = alpha.shape
    H, W = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x1 <= x0 or y1 <= y0:
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None].astype(np.float32) * (1.0 / 255.0)
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (region * (1.0 - a) + np.asarray(color, np.float32) * a).astype(np.uint8)


def _jitter_color(rng: np.random.Generator, rgb: Sequence[int], amount: float) -> Tuple[float, float, float]:
    b, g, r = rgb[2], rgb[1], rgb[0]
    f = rng.uniform(1 - amount, 1 + amount * 0.5)
    return tuple(float(np.clip(c * f + rng.uniform(-amount, amount) * 60, 0, 255)) for c in (b, g, r))


# ----------------------------------------------------------------------------------------- drawing


def draw_plate(rng: np.random.Generator, kind: PlateKind, text: str, px_per_mm: float = 0.6,
               decorate: bool = True, font_variants: bool = False,
               info: Optional[dict] = None) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """Draw a clean, front-on plate (BGR uint8) and return it with the plate's box (x1, y1, x2, y2)
    inside the image; the image may be larger than the plate when a frame is drawn around it.
    ``font_variants``: plates in the stroke-built font take one of its glyph variants
    (``tools.synth.stroke_font.variant_strokes``); False draws from ``rng`` exactly as before.
    ``info`` (a dict) receives ``glyph_px``: the height in pixels of the plate's smallest character
    (a Korean region syllable, a two-line plate's top line); it draws nothing from ``rng``."""
    if not cs.KIND_PATTERNS[kind.name].match(text):
        raise AlprError(f"plate text {text!r} does not fit the {kind.name} format")
    W, H = kind.size_mm
    s = px_per_mm
    pw, ph = int(round(W * s)), int(round(H * s))
    bg = _jitter_color(rng, kind.background, 0.1)
    if kind.name == "cn_blue":  # from navy to the light cyan-blue of sun-bleached plates
        g = float(np.clip(bg[1] + rng.uniform(-25, 80), 0, 255))
        bg = (bg[0], g, float(np.clip(bg[2] + rng.uniform(-10, 40), 0, 255)))
    ink = _jitter_color(rng, kind.ink, 0.05)
    canvas = np.empty((ph, pw, 3), np.uint8)
    canvas[:] = np.array(bg, np.float32).astype(np.uint8)
    if kind.name == "cn_green":  # new-energy plates fade from white-green at the top to green
        t = np.linspace(0.0, 1.0, ph, dtype=np.float32)[:, None, None] ** 1.4
        top = np.array((235, 248, 235), np.float32)
        canvas[:] = (top * (1 - t) + np.array(bg, np.float32) * t).astype(np.uint8)
    elif kind.name == "kr_ev":
        t = np.linspace(0.0, 1.0, pw, dtype=np.float32)[None, :, None]
        lighter = np.minimum(np.array(bg, np.float32) * 1.12, 255)
        canvas[:] = (lighter * (1 - t) + np.array(bg, np.float32) * t).astype(np.uint8)
    slots, deco = _layout(rng, kind, text)
    # decorations under the text
    if deco.get("strip"):
        sw = int(40 * s)
        col = (200, 110, 40) if kind.ev else (190, 120, 60)
        cv2.rectangle(canvas, (0, 0), (sw, ph), col, -1)
        r = max(2, int(9 * s))
        c = (sw // 2, ph // 2 - r // 2)
        cv2.ellipse(canvas, c, (r, r), 0, 180, 360, (50, 40, 200), -1)
        cv2.ellipse(canvas, c, (r, r), 0, 0, 180, (160, 60, 20), -1)
    if "dot" in deco:
        cx, cy = deco["dot"]
        cv2.circle(canvas, (int(cx * s), int(cy * s)), max(1, int(4 * s)), ink, -1, cv2.LINE_AA)
    fonts = find_fonts(kind.charset)
    font = fonts[int(rng.integers(len(fonts)))]
    dfonts = find_digit_fonts(kind.charset)
    dfont = dfonts[int(rng.integers(len(dfonts)))] if rng.random() < 0.5 else font
    condense = rng.uniform(0.75, 1.0)
    weight = int(rng.choice([-1, 0, 0, 1, 1]))
    emboss = rng.random() < 0.5
    # Chinese plates: most draw their letters and digits in the stroke-built plate font (tools.synth.stroke_font)
    stroke = float(rng.uniform(0.15, 0.26)) if kind.charset == "cn" and rng.random() < CN_STROKE_FONT else 0.0
    shape = tuple(rng.uniform(0.0, 1.0, 3)) if stroke and font_variants else ()
    if info is not None:
        info["glyph_px"] = min(h for _g, _x, _y, _w, h in slots) * s
    for g, x, y, w, h in slots:
        latin = g in cs.DIGITS or g in cs.CN_LETTERS
        if stroke and latin and has_glyph(g):
            m = stroke_glyph(g, stroke, shape)
            ratio = 1.0  # the plate font already has the plate's 1:2 box
        else:
            m = _glyph(dfont if latin else font, g)
            ratio = condense if latin else 1.0
        gh = max(2, int(round(h * s)))
        aspect = m.shape[1] / m.shape[0]
        gw = max(1, min(int(round(w * s)), int(round(gh * aspect * ratio))))
        if g in cs.KR_HANGUL or g in cs.CN_PROVINCES:
            gw = int(round(w * s))  # wide glyphs fill their slot
        a = cv2.resize(m, (gw, gh), interpolation=cv2.INTER_AREA)
        if weight and gh > 20:
            k = np.ones((2, 2), np.uint8) if gh < 50 else np.ones((3, 3), np.uint8)
            a = cv2.dilate(a, k) if weight > 0 else cv2.erode(a, k)
        px = int(round(x * s + (w * s - gw) / 2))
        py = int(round(y * s))
        if emboss:
            shade = tuple(c * 0.55 for c in bg)
            _blend(canvas, (a * 0.6).astype(np.uint8), shade, px + 1, py + 1)
        _blend(canvas, a, ink, px, py)
    if decorate:
        # rim around the plate (embossed edge)
        rimmed = ("cn_blue", "kr_yellow", "kr_yellow2", "cn_yellow", "cn_yellow2")
        if kind.name in rimmed or rng.random() < 0.3:
            t = max(1, int(round(rng.uniform(1.5, 4.0) * s)))
            o = int(round(5 * s)) if kind.name == "cn_blue" else t
            cv2.rectangle(canvas, (o, o), (pw - 1 - o, ph - 1 - o), ink, t, cv2.LINE_AA)
        _bolts(rng, canvas, slots, s, ends=kind.charset == "kr" and kind.lines == 1)
        _dirt(rng, canvas)
    box = (0, 0, pw, ph)
    if decorate and rng.random() < 0.5:
        canvas, box = _frame(rng, canvas)
    return canvas, box


def _bolts(rng: np.random.Generator, canvas: np.ndarray, slots: List[Slot], s: float, ends: bool) -> None:
    if rng.random() < 0.35:
        return
    ph, pw = canvas.shape[:2]
    top = min(y for _g, _x, y, _w, _h in slots) * s
    left = min(x for _g, x, _y, _w, _h in slots) * s
    right = pw - max(x + w for _g, x, _y, w, _h in slots) * s
    if ends and rng.random() < 0.7 and min(left, right) >= 6:
        # Korean one-line plates: bolts at both ends, half-way up
        r = max(2, int(min(left, right) * 0.3))
        yb = ph // 2
        xs = (int(left / 2), int(pw - right / 2))
    else:
        r = int(min(top * 0.45, ph * 0.06))
        if r < 2:
            return
        yb = int(top / 2)
        xs = (int(pw * 0.22), int(pw * 0.78)) if rng.random() < 0.7 else (int(pw * 0.06), int(pw * 0.94))
    metal = float(rng.uniform(110, 210))
    for x in xs:
        cv2.circle(canvas, (x, yb), r, (metal, metal, metal), -1, cv2.LINE_AA)
        cv2.circle(canvas, (x - r // 3, yb - r // 3), max(1, r // 3), (245, 245, 245), -1, cv2.LINE_AA)
        cv2.circle(canvas, (x, yb), r, (60, 60, 60), 1, cv2.LINE_AA)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.random((max(2, h // cell), max(2, w // cell))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _dirt(rng: np.random.Generator, canvas: np.ndarray) -> None:
    if rng.random() < 0.45:
        return
    h, w = canvas.shape[:2]
    noise = _smooth_noise(rng, h, w, int(rng.integers(6, 20)))
    field = np.clip((noise - rng.uniform(0.45, 0.75)) * 2.5, 0, 1)
    strength = rng.uniform(0.15, 0.55)
    dirt = np.array((rng.uniform(30, 70), rng.uniform(50, 90), rng.uniform(70, 110)), np.float32)
    a = (field * strength)[..., None]
    speck = (rng.random((h, w)) < rng.uniform(0.0, 0.02)).astype(np.float32)[..., None] * 0.6
    a = np.clip(a + speck, 0, 1)
    canvas[:] = (canvas.astype(np.float32) * (1 - a) + dirt * a).astype(np.uint8)


def _frame(rng: np.random.Generator, plate: np.ndarray) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    ph, pw = plate.shape[:2]
    t = max(2, int(ph * rng.uniform(0.05, 0.14)))
    tb = t + (int(ph * rng.uniform(0.0, 0.25)) if rng.random() < 0.4 else 0)
    v = float(rng.choice([25.0, 40.0, 150.0, 190.0]))
    out = np.empty((ph + t + tb, pw + 2 * t, 3), np.uint8)
    grad = np.linspace(1.15, 0.8, out.shape[0], dtype=np.float32)[:, None, None]
    out[:] = np.clip(v * grad * np.ones((1, out.shape[1], 3), np.float32), 0, 255).astype(np.uint8)
    out[t : t + ph, t : t + pw] = plate
    return out, (t, t, t + pw, t + ph)


# ----------------------------------------------------------------------------------------- degradation


def _motion_kernel(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(3, 8))
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    k = cv2.warpAffine(k, rot, (n, n))
    return k / max(k.sum(), 1e-6)


HEAVY_EFFECTS = ("shadow", "glare", "low_light", "blur", "low_res")


def photometric(rng: np.random.Generator, img: np.ndarray, strength: float = 1.0,
                max_heavy: int = 2, lines: int = 1, info: Optional[dict] = None) -> np.ndarray:
    """Shadows, glare, light level, noise, blur, resolution loss and JPEG on a BGR uint8 image.

    At most ``max_heavy`` of the heavy effects (``HEAVY_EFFECTS``) hit one image, so that a crop
    stays readable: its label must remain the truth, not a guess. ``info`` (a dict) receives
    ``resolution``: the factor by which the resolution loss shrank the image before scaling it back
    (1.0 without it)."""
    h, w = img.shape[:2]
    probs = {"shadow": 0.3, "glare": 0.15, "low_light": 0.15, "blur": 0.35, "low_res": 0.35}
    draws = rng.random(len(HEAVY_EFFECTS))
    chosen = [e for e, r in zip(HEAVY_EFFECTS, draws) if r < probs[e] * strength]
    if len(chosen) > max_heavy:
        keep = rng.choice(len(chosen), max_heavy, replace=False)
        chosen = [chosen[i] for i in sorted(keep)]
    f = img.astype(np.float32)
    if "shadow" in chosen or "glare" in chosen:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if "shadow" in chosen:  # a soft shadow edge across the plate
        ang = rng.uniform(0, 2 * math.pi)
        d = (xx - rng.uniform(0, w)) * math.cos(ang) + (yy - rng.uniform(0, h)) * math.sin(ang)
        m = np.clip(d / max(2.0, 0.04 * w) + 0.5, 0, 1)
        f *= (1 - m * rng.uniform(0.25, 0.55))[..., None]
    if "glare" in chosen:  # specular glare
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        sx, sy = rng.uniform(0.08, 0.35) * w, rng.uniform(0.2, 0.8) * h
        g = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
        f += (g * rng.uniform(50, 130))[..., None]
    if "low_light" in chosen:  # dark, noisy, tinted
        f = f * rng.uniform(0.3, 0.55) + rng.normal(0, rng.uniform(2, 6), f.shape).astype(np.float32)
        f *= np.array((rng.uniform(1.0, 1.2), 1.0, rng.uniform(0.85, 1.0)), np.float32)
    else:
        f = f * rng.uniform(0.7, 1.2) + rng.uniform(-20, 20)
        f = (f - 128) * rng.uniform(0.8, 1.15) + 128
        f *= rng.uniform(0.9, 1.1, 3).astype(np.float32)
        f += rng.normal(0, rng.uniform(0, 4), f.shape).astype(np.float32)
    out = np.clip(f, 0, 255).astype(np.uint8)
    if "blur" in chosen:
        if rng.random() < 0.5:
            out = cv2.filter2D(out, -1, _motion_kernel(rng))
        else:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.2))
    if info is not None:
        info["resolution"] = 1.0
    if "low_res" in chosen:  # far away: lose resolution
        th = int(rng.integers(16, 30)) * lines
        if th < h:
            if info is not None:
                info["resolution"] = th / h
            tw = max(8, int(w * th / h))
            small = cv2.resize(out, (tw, th), interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.6:
        q = int(rng.integers(30, 92))
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return out


def night_cast(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """A BGR uint8 image as a camera sees it at night under one coloured light (sodium, LED, infrared with a
    colour sensor): a grey level that takes little of the blue channel, so that blue paint goes dark while white
    and yellow stay bright, tinted with the light's colour (red through yellow to green, pale to strong) and
    dimmed; a little of the day colour may stay. Real Chinese night crops look like this: a black plate with
    green, yellow or orange characters."""
    wb = rng.uniform(0.0, 0.25)
    wg = rng.uniform(0.2, 0.8) * (1.0 - wb)
    weights = np.array((wb, wg, 1.0 - wb - wg), np.float32)  # B, G, R
    day = img.astype(np.float32)
    grey = day @ weights
    hue = rng.uniform(0.0, 150.0)  # degrees: red, orange, yellow, green
    sat = rng.uniform(0.2, 0.9)
    light = cv2.cvtColor(np.array([[[hue / 2.0, sat * 255.0, 255.0]]], np.uint8), cv2.COLOR_HSV2BGR)
    light = light.reshape(3).astype(np.float32) / 255.0
    out = grey[..., None] * light * rng.uniform(0.45, 1.0)
    keep = rng.uniform(0.0, 0.3)
    out = (1.0 - keep) * out + keep * day * rng.uniform(0.3, 0.7)
    return np.clip(out, 0, 255).astype(np.uint8)


def _occlude(rng: np.random.Generator, img: np.ndarray, plate_quad: np.ndarray) -> None:
    """Small occluders that leave every character readable: a bar over the bottom edge, a thin wire,
    or a blob on a corner."""
    h, w = img.shape[:2]
    col = tuple(float(c) for c in rng.uniform(0, 255, 3))
    kind = int(rng.integers(3))
    ys = plate_quad[:, 1]
    if kind == 0:
        ph = ys.max() - ys.min()
        top = int(ys.max() - ph * rng.uniform(0.0, 0.12))
        img[max(top, 0):, :] = np.array(col, np.uint8)
    elif kind == 1:
        p1 = (int(rng.uniform(0, w)), 0)
        p2 = (int(rng.uniform(0, w)), h - 1)
        cv2.line(img, p1, p2, col, int(rng.integers(1, 3)), cv2.LINE_AA)
    else:
        corner = plate_quad[int(rng.integers(4))]
        r = int(max(2, 0.06 * min(h * 2, w)))
        cv2.circle(img, (int(corner[0]), int(corner[1])), r, col, -1, cv2.LINE_AA)


_BODY_PAINTS = ((235, 235, 235), (190, 190, 195), (120, 120, 125), (35, 35, 38), (40, 40, 150), (110, 60, 20))


def render_plate(rng: np.random.Generator, charset: str = "kr", kind: str | None = None,
                 text: str | None = None, shear: float = 0.0, font_variants: bool = False, clip: float = 0.0,
                 info: Optional[dict] = None, night: float = 0.0) -> Tuple[np.ndarray, str, PlateKind]:
    """One realistic plate crop (BGR uint8, loosely cropped as a detector would), its exact text and kind.

    ``kind`` is a name from ``KINDS`` (random by ``KIND_WEIGHTS`` when None); ``text`` is random when
    None, else checked against the kind's format. ``shear`` > 0 adds the oblique views of a camera
    beside and above the road (as in CCPD): characters leaning by up to ``shear`` (dx/dy), the plate's
    top and bottom edges sloping by up to ``shear / 2`` and in-plane rotation up to 12 degrees instead of 6,
    each on most but not all crops. 0 keeps the random stream, and so every seed's crops, as before;
    so does ``font_variants`` False (True: see ``draw_plate``). ``clip`` > 0 makes half of the crops cut
    into the plate by up to ``clip`` of its width and height on each side, as the tight real Chinese crops
    do (their rim gone, the province character cut at the left edge); 0 keeps the stream too. ``night`` > 0
    is the share of crops seen under a coloured night light (``night_cast``); 0 keeps the stream too.

    ``info`` (a dict) receives ``char_px``: the height in pixels of the plate's smallest character at
    the lowest resolution the crop passes through (drawn size, times the perspective's scale, times
    any resolution loss; approximate: the corners' random offsets, up to about 15 %, are left out), the
    figure ANPR camera requirements state a minimum for (``lprnet.evaluate.MIN_CHAR_PX``).
    Filling it draws nothing from ``rng``: the crops stay the same."""
    pk = _pick_kind(rng, charset, kind)
    if text is None:
        text = random_text(rng, pk)
    drawn: dict = {}
    plate, (bx1, by1, bx2, by2) = draw_plate(rng, pk, text, px_per_mm=float(rng.uniform(0.45, 0.7)),
                                             font_variants=font_variants, info=drawn)
    ph, pw = plate.shape[:2]
    # put the plate on a piece of car body so that perspective and loose crops show some context
    mx, my = int(pw * 0.45), int(ph * 1.0)
    if rng.random() < 0.7:  # usual car paints: white, silver, grey, black, dark red/blue
        body = np.array(_BODY_PAINTS[int(rng.integers(len(_BODY_PAINTS)))], np.float32) * rng.uniform(0.8, 1.1)
    else:
        body = np.array(rng.uniform(0, 255, 3), np.float32)
    patch = np.empty((ph + 2 * my, pw + 2 * mx, 3), np.uint8)
    shade = _smooth_noise(rng, patch.shape[0], patch.shape[1], 24)[..., None] * 50 - 25
    patch[:] = np.clip(body + shade, 0, 255).astype(np.uint8)
    patch[my : my + ph, mx : mx + pw] = plate
    src = np.float32([[mx + bx1, my + by1], [mx + bx2, my + by1], [mx + bx2, my + by2], [mx + bx1, my + by2]])
    bw, bh = bx2 - bx1, by2 - by1
    scale = rng.uniform(0.55, 1.0)
    ang = math.radians(rng.uniform(-6, 6))
    base = np.float32([[-bw / 2, -bh / 2], [bw / 2, -bh / 2], [bw / 2, bh / 2], [-bw / 2, bh / 2]]) * scale
    if shear > 0:
        lean, slope, wide = rng.uniform(-1, 1, 3) * (shear, shear / 2, 6.0) * (rng.random(3) < (0.7, 0.7, 0.5))
        ang += math.radians(float(wide))
        # row vectors: x' = x + lean * y, y' = y + slope * x
        base = base @ np.float32([[1.0, slope], [lean, 1.0]])
    c, s_ = math.cos(ang), math.sin(ang)
    dst = base @ np.float32([[c, s_], [-s_, c]])
    dst += rng.uniform(-1, 1, (4, 2)).astype(np.float32) * np.float32([0.02 * bw, 0.09 * bh]) * scale
    x_lo, y_lo = dst.min(0)
    x_hi, y_hi = dst.max(0)
    qw, qh = x_hi - x_lo, y_hi - y_lo
    if clip > 0 and rng.random() < 0.5:  # inside the plate's edges
        pad = rng.uniform(-clip, 0.01, 4) * np.float32([qw, qh, qw, qh])
    elif rng.random() < 0.7:  # tight, as a good detector box
        pad = rng.uniform(-0.03, 0.1, 4) * np.float32([qw, qh, qw, qh])
    else:  # loose, with some of the car around the plate
        pad = rng.uniform((0.03, 0.1, 0.03, 0.1), (0.3, 0.8, 0.3, 0.8)) * np.float32([qw, qh, qw, qh])
    dst -= np.float32([x_lo - pad[0], y_lo - pad[1]])
    ow = max(8, int(round(qw + pad[0] + pad[2])))
    oh = max(4, int(round(qh + pad[1] + pad[3])))
    m = cv2.getPerspectiveTransform(src, dst)
    crop = cv2.warpPerspective(patch, m, (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.12:
        _occlude(rng, crop, dst)
    if night > 0 and rng.random() < night:
        crop = night_cast(rng, crop)
    shot: dict = {}
    out = photometric(rng, crop, lines=pk.lines, info=shot)
    if info is not None:
        info["char_px"] = drawn["glyph_px"] * scale * shot["resolution"]
    return out, text, pk


# ----------------------------------------------------------------------------------------- CLI helpers


def parse_size(value: str) -> Tuple[int, int] | None:
    """'94x24' -> (94, 24); 'original' -> None."""
    if value.strip().lower() in ("original", "orig", "0"):
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise AlprError(f"--size must be WIDTHxHEIGHT (e.g. 94x24) or 'original', got {value!r}") from None
    if w <= 0 or h <= 0:
        raise AlprError(f"--size must be positive, got {value!r}")
    return w, h


_Job = Tuple[str, Optional[str], int, int, Optional[Tuple[int, int]], str, bool, float, bool, float, float]


def _encode(img: np.ndarray, ext: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == "jpg" else []
    ok, enc = cv2.imencode("." + ext, img, params)
    if not ok:
        raise AlprError(f"could not encode a {ext} image")
    return enc.tobytes()


def _render_job(args: _Job) -> Tuple[str, str, int, int, float, bytes, Optional[bytes]]:
    charset, kind, seed, index, size, ext, keep_original, shear, variants, clip, night = args
    rng = np.random.default_rng([seed, index])
    info: dict = {}
    img, text, pk = render_plate(rng, charset, kind, shear=shear, font_variants=variants, clip=clip, info=info,
                                 night=night)
    original = _encode(img, ext) if keep_original and size is not None else None
    char_px = float(info["char_px"])
    if size is not None:
        char_px *= min(1.0, size[1] / img.shape[0])  # the written crop's resolution, if lower
        img = fit_size(img, size[0], size[1])
    return text, pk.name, int(pk.ev), pk.lines, char_px, _encode(img, ext), original


def unique_name(text: str, seen: Dict[str, int]) -> str:
    """``text`` the first time, then ``text_1``, ``text_2``, ..."""
    n = seen.get(text, 0)
    seen[text] = n + 1
    return text if n == 0 else f"{text}_{n}"


def write_crops(out: str, charset: str, count: int, seed: int, size: Tuple[int, int] | None = (94, 24),
                kind: str | None = None, workers: int = 0, ext: str = "jpg", progress: bool = True,
                keep_original: bool = False, shear: float = 0.0, font_variants: bool = False,
                clip: float = 0.0, night: float = 0.0) -> Path:
    """Render ``count`` crops into folder ``out`` (must not exist or be empty); returns the folder.

    With ``keep_original`` the same crops at their rendered size go to ``out/original/`` too;
    ``shear``, ``font_variants``, ``clip`` and ``night`` as in ``render_plate``."""
    from multiprocessing import get_context

    from tqdm import tqdm

    if count <= 0:
        raise AlprError("--count must be positive")
    if ext not in ("jpg", "png"):
        raise AlprError(f"--ext must be jpg or png, got {ext!r}")
    if not 0.0 <= shear <= 0.6:
        raise AlprError(f"--shear must be between 0 and 0.6, got {shear}")
    if not 0.0 <= clip <= 0.1:  # beyond 0.1 whole edge characters leave the crop while the label keeps them
        raise AlprError(f"--clip must be between 0 and 0.1, got {clip}")
    if not 0.0 <= night <= 1.0:
        raise AlprError(f"--night must be between 0 and 1, got {night}")
    find_fonts(charset)  # fail early with the install hint
    if kind is not None:
        _pick_kind(np.random.default_rng(0), charset, kind)
    with building_folder(out) as tmp:
        jobs = ((charset, kind, seed, i, size, ext, keep_original, shear, font_variants, clip, night)
                for i in range(count))
        if keep_original and size is not None:
            (tmp / "original").mkdir()
        workers = workers or (os.cpu_count() or 1)
        seen: Dict[str, int] = {}
        lines: List[str] = []
        bar = tqdm(total=count, desc=f"{charset} plates", unit="crop", disable=not progress)
        if workers > 1:
            pool = get_context("fork" if sys.platform.startswith("linux") else "spawn").Pool(workers)
            results = pool.imap(_render_job, jobs, chunksize=64)
        else:
            pool = None
            results = map(_render_job, jobs)
        try:
            for text, kname, ev, nlines, char_px, data, original in results:
                name = unique_name(text, seen) + "." + ext
                with open(tmp / name, "wb") as fh:
                    fh.write(data)
                if original is not None:
                    (tmp / "original" / name).write_bytes(original)
                lines.append(f"{name}\t{text}\t{kname}\t{ev}\t{nlines}\t{char_px:.2f}\n")
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
        with open(tmp / "labels.txt", "w", encoding="utf-8") as fh:
            fh.writelines(lines)
    return Path(out)


def read_labels(path: str) -> List[Tuple[str, str, str, int, int]]:
    """Rows of a crops ``labels.txt``: (filename, text, kind, ev, lines); missing columns get defaults."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                continue
            kind = parts[2] if len(parts) > 2 else ""
            ev = int(parts[3]) if len(parts) > 3 else 0
            nl = int(parts[4]) if len(parts) > 4 else 1
            rows.append((parts[0], parts[1], kind, ev, nl))
    return rows


def main(argv: Sequence[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise AlprError(f"unexpected arguments: {' '.join(argv[1:])}")
    out = write_crops(f.out, f.charset, f.count, f.seed, parse_size(f.size), f.kind, f.workers, f.ext,
                      keep_original=f.keep_original, shear=f.shear, font_variants=f.font_variants, clip=f.clip,
                      night=f.night)
    print(f"wrote {f.count} {f.charset} crops and labels.txt to {out}")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_enum("charset", "kr", ["kr", "cn"], "plate alphabet")
    flags.DEFINE_integer("count", 1000, "number of crops")
    flags.DEFINE_string("out", None, "output folder (new or empty)")
    flags.DEFINE_integer("seed", 0, "random seed; the same seed gives the same crops")
    flags.DEFINE_string("size", "original", "crop size WIDTHxHEIGHT (e.g. 94x24), or 'original' (the "
                       "rendered size; training stitches two-line plates from it as the runtime does)")
    flags.DEFINE_string("kind", None, "only this plate kind (e.g. kr_ev, cn_green); default: a mix")
    flags.DEFINE_integer("workers", 0, "processes (0: one per CPU core)")
    flags.DEFINE_enum("ext", "jpg", ["jpg", "png"], "image format")
    flags.DEFINE_boolean("keep_original", False, "also write each crop at its rendered size to OUT/original/")
    flags.DEFINE_float("shear", 0.0, "oblique views: characters lean by up to this (dx/dy), edges slope by "
                       "half of it, rotation up to 12 degrees; 0 (default) renders as before, 0.35 is CCPD-like")
    flags.DEFINE_boolean("font_variants", False, "Chinese plates in the stroke-built plate font take one of its "
                         "glyph variants (M's vertex, G's spur, oval or stadium 0, ...); off renders as before")
    flags.DEFINE_float("clip", 0.0, "half of the crops cut into the plate by up to this fraction of its size on "
                       "each side, at most 0.1 (its rim and part of the edge characters, like tight real crops); "
                       "0 (default) renders as before, 0.08 cuts about a third of a Chinese province character")
    flags.DEFINE_float("night", 0.0, "share of the crops seen under a coloured night light (blue paint dark, "
                       "white and yellow tinted red to green, like real night crops); 0 (default) renders as before")
    flags.mark_flag_as_required("out")


if __name__ == "__main__":
    from absl import app

    from core.cli import guarded

    _define_flags()
    app.run(guarded(main))
