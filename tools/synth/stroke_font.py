"""A stroke-drawn plate font for the Latin letters and digits of Chinese plates.

The characters on Chinese plates are not a desktop typeface: each sits in a 45 x 90 mm box with strokes of
even width, the ``1`` is a plain vertical bar, the ``3`` has a flat top, ``0`` is a tall stadium and ``M``
has straight sides (I and O are not used, so that they cannot be confused with 1 and 0). A reader trained
only on desktop fonts (DejaVu, WenQuanYi) reads real ``1`` as nothing, ``T`` or ``J`` and real ``3`` as
``5`` (measured on ../shared/data/cn_plates_dev). Each glyph here is a list of strokes (polylines) in a unit
box, x to the right and y down, drawn with round caps at a chosen stroke width.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

Point = Tuple[float, float]
Stroke = List[Point]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 14) -> Stroke:
    """Points of an elliptical arc; angles in degrees, 0 = right, 90 = down (image coordinates)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(a0, a1, n)]


def _stadium(y0: float, y1: float, ry: float = 0.5) -> Stroke:
    """A closed tall rounded shape between y0 and y1 (the 0, O-like outline): half-ellipse ends ``ry``
    tall, joined by straight sides when they do not meet (an oval for ry = 0.5 on the unit box)."""
    return _arc(0.5, y0 + ry, 0.5, ry, 180, 360) + _arc(0.5, y1 - ry, 0.5, ry, 0, 180) + [(0.0, y0 + ry)]


def _bowl_right(x0: float, y0: float, y1: float, x1: float = 1.0) -> Stroke:
    """From (x0, y0) right, around a half-ellipse, back left to (x0, y1) (the bowls of B, D, P, R)."""
    ry = (y1 - y0) / 2
    rx = min(ry, x1 - x0)
    xc = x1 - rx
    return [(x0, y0), (xc, y0)] + _arc(xc, y0 + ry, rx, ry, -90, 90) + [(x0, y1)]


# Builders of the glyphs whose shape varies between plate-font versions (``variant_strokes``); ``GLYPHS``
# holds each at its usual shape.
def _m(vertex: float) -> List[Stroke]:
    return [[(0.0, 1.0), (0.0, 0.0), (0.5, vertex), (1.0, 0.0), (1.0, 1.0)]]


def _w(foot: float, vertex: float) -> List[Stroke]:
    return [[(0.0, 0.0), (foot, 1.0), (0.5, vertex), (1.0 - foot, 1.0), (1.0, 0.0)]]


def _g(start: float, spur_top: float, bar: float, square: bool) -> List[Stroke]:
    """G: the arc from ``start`` degrees round the left, a square or round lower-right corner, the spur
    up to ``spur_top`` and the bar in to ``bar``."""
    upper = _arc(0.5, 0.5, 0.5, 0.5, start, -180, 18)
    if square:
        return [upper + _arc(0.5, 0.5, 0.5, 0.5, 180, 90, 10) + [(0.7, 1.0), (1.0, 1.0), (1.0, spur_top),
                                                                  (bar, spur_top)]]
    return [upper + _arc(0.5, 0.5, 0.5, 0.5, 180, 0, 18) + [(1.0, spur_top), (bar, spur_top)]]


def _q(ry: float, tail: Point) -> List[Stroke]:
    return [_stadium(0.0, 1.0, ry), [tail, (1.0, 1.0)]]


def _d(flat: float) -> List[Stroke]:
    """D with a flat top and bottom ``flat`` long before the bowl."""
    return [[(0.0, 0.0), (0.0, 1.0)], [(0.0, 0.0), (flat, 0.0)] + _arc(flat, 0.5, 1.0 - flat, 0.5, -90, 90)
            + [(0.0, 1.0)]]


GLYPHS: Dict[str, List[Stroke]] = {
    "0": [_stadium(0.0, 1.0)],
    "1": [[(0.5, 0.0), (0.5, 1.0)]],
    "2": [_arc(0.5, 0.27, 0.5, 0.27, 180, 360) + [(1.0, 0.3), (0.0, 1.0), (1.0, 1.0)]],
    "3": [[(0.0, 0.0), (1.0, 0.0), (0.42, 0.4)] + _arc(0.47, 0.69, 0.53, 0.31, -90, 150)],
    "4": [[(0.72, 1.0), (0.72, 0.0), (0.0, 0.7), (1.0, 0.7)]],
    "5": [[(0.95, 0.0), (0.08, 0.0), (0.05, 0.45)] + _arc(0.48, 0.69, 0.52, 0.31, -120, 150)],
    "6": [_arc(0.5, 0.3, 0.5, 0.3, -40, -180) + [(0.0, 0.7)] + _arc(0.5, 0.7, 0.5, 0.3, 180, 540, 24)],
    "7": [[(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)]],
    "8": [_arc(0.5, 0.24, 0.42, 0.24, 0, 360, 20), _arc(0.5, 0.72, 0.5, 0.28, 0, 360, 20)],
    "9": [_arc(0.5, 0.7, 0.5, 0.3, 140, 0) + [(1.0, 0.3)] + _arc(0.5, 0.3, 0.5, 0.3, 0, 360, 24)],
    "A": [[(0.0, 1.0), (0.5, 0.0), (1.0, 1.0)], [(0.2, 0.65), (0.8, 0.65)]],
    "B": [[(0.0, 0.0), (0.0, 1.0)], _bowl_right(0.0, 0.0, 0.48, 0.92), _bowl_right(0.0, 0.48, 1.0)],
    "C": [_arc(0.5, 0.5, 0.5, 0.5, -40, -90) + [(0.5, 0.0)] + _arc(0.5, 0.5, 0.5, 0.5, -90, -180)
          + [(0.0, 0.5)] + _arc(0.5, 0.5, 0.5, 0.5, 180, 40)],
    "D": _d(0.45),
    "E": [[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)], [(0.0, 0.48), (0.85, 0.48)]],
    "F": [[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0)], [(0.0, 0.48), (0.85, 0.48)]],
    "G": _g(-35, 0.55, 0.55, square=True),
    "H": [[(0.0, 0.0), (0.0, 1.0)], [(1.0, 0.0), (1.0, 1.0)], [(0.0, 0.48), (1.0, 0.48)]],
    "J": [[(1.0, 0.0), (1.0, 0.7)] + _arc(0.5, 0.7, 0.5, 0.3, 0, 170)],
    "K": [[(0.0, 0.0), (0.0, 1.0)], [(1.0, 0.0), (0.0, 0.62)], [(0.32, 0.42), (1.0, 1.0)]],
    "L": [[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]],
    "M": _m(0.62),
    "N": [[(0.0, 1.0), (0.0, 0.0), (1.0, 1.0), (1.0, 0.0)]],
    "P": [[(0.0, 1.0), (0.0, 0.0)], _bowl_right(0.0, 0.0, 0.52)],
    "Q": _q(0.5, (0.6, 0.75)),
    "R": [[(0.0, 1.0), (0.0, 0.0)], _bowl_right(0.0, 0.0, 0.52), [(0.45, 0.52), (1.0, 1.0)]],
    "S": [_arc(0.5, 0.26, 0.5, 0.26, -20, -270, 16) + _arc(0.5, 0.74, 0.5, 0.26, -90, 160, 18)],
    "T": [[(0.0, 0.0), (1.0, 0.0)], [(0.5, 0.0), (0.5, 1.0)]],
    "U": [[(0.0, 0.0), (0.0, 0.7)] + _arc(0.5, 0.7, 0.5, 0.3, 180, 0) + [(1.0, 0.0)]],
    "V": [[(0.0, 0.0), (0.5, 1.0), (1.0, 0.0)]],
    "W": _w(0.22, 0.3),
    "X": [[(0.0, 0.0), (1.0, 1.0)], [(1.0, 0.0), (0.0, 1.0)]],
    "Y": [[(0.0, 0.0), (0.5, 0.5), (1.0, 0.0)], [(0.5, 0.5), (0.5, 1.0)]],
    "Z": [[(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]],
}

# Glyphs whose shape differs between the plate-font versions and makers seen on real plates (the depth of
# M's middle vertex, G's spur and bar, a stadium or an oval 0, ...). A reader that saw one shape only
# misread real M as H and G as 6 (a third of them on ../shared/data/cn_plates_dev), although it read the
# rendered ones; ``variant_strokes`` draws the shapes between.
VARIABLE = "MWGQ0D"


def variant_strokes(ch: str, shape: Sequence[float]) -> List[Stroke]:
    """The strokes of ``ch`` for a plate-font variant ``shape`` (three numbers in [0, 1]); the glyph of
    ``GLYPHS`` for characters outside ``VARIABLE`` or an empty ``shape``."""
    if not shape or ch not in VARIABLE:
        return GLYPHS[ch]
    u0, u1, u2 = shape
    if ch == "M":
        return _m(0.42 + 0.4 * u0)
    if ch == "W":
        return _w(0.12 + 0.14 * u1, 0.15 + 0.45 * u0)
    if ch == "G":
        return _g(-35 - 15 * u2, 0.42 + 0.2 * u1, 0.4 + 0.35 * u2, square=u0 < 0.5)
    if ch in "0Q":
        # an oval, or straight sides between half-round ends (a true stadium; its ends are half as tall as
        # wide, 0.25 of the 1:2 box, and up to 0.4 of it when flattened)
        ry = 0.5 if u1 < 0.4 else 0.25 + 0.15 * u2
        return [_stadium(0.0, 1.0, ry)] if ch == "0" else _q(ry, (0.45 + 0.2 * u2, 0.6 + 0.15 * u0))
    return _d(0.25 + 0.3 * u2)


_CACHE: Dict[Tuple[str, int, Tuple[int, ...]], np.ndarray] = {}
HEIGHT = 64  # px of the returned mask, like the TrueType glyphs of tools.synth.plates


def has_glyph(ch: str) -> bool:
    return ch in GLYPHS


def stroke_glyph(ch: str, stroke: float = 0.2, shape: Sequence[float] = ()) -> np.ndarray:
    """Tight uint8 mask (255 = ink) of ``ch``, ``HEIGHT`` px tall; ``stroke`` is the stroke width as a
    fraction of the 45 mm glyph width (real plates: about 0.2), quantized to hundredths. The box is 1:2 like
    the plate's. ``shape``: a font variant for ``variant_strokes`` (quantized to tenths, so that the cache
    stays small)."""
    q = tuple(int(round(float(u) * 10)) for u in shape) if ch in VARIABLE else ()
    key = (ch, int(round(stroke * 100)), q)
    stroke = key[1] / 100  # draw what the key says, so that the mask never depends on the cache's history
    mask = _CACHE.get(key)
    if mask is not None:
        return mask
    if ch not in GLYPHS:
        raise KeyError(f"no stroke glyph for {ch!r}")
    ss = 4  # supersampling
    h = HEIGHT * ss
    w = h // 2
    t = max(1.0, stroke * w)
    pad = t / 2 + 1
    canvas = np.zeros((h + 2 * int(math.ceil(pad)), w + 2 * int(math.ceil(pad))), np.uint8)
    off = math.ceil(pad)
    for line in variant_strokes(ch, [u / 10 for u in q]):
        pts = np.array([[off + x * (w - 1), off + y * (h - 1)] for x, y in line], np.float32)
        cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, 255, int(round(t)), cv2.LINE_AA, 4)
    small = cv2.resize(canvas, (canvas.shape[1] // ss, canvas.shape[0] // ss), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small > 8)
    mask = small[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].copy()
    _CACHE[key] = mask
    return mask


def glyph_sheet(chars: Sequence[str], stroke: float = 0.2) -> np.ndarray:
    """All ``chars`` side by side (for a look: ``cv2.imwrite('sheet.png', glyph_sheet(GLYPHS))``)."""
    masks = [stroke_glyph(c, stroke) for c in chars]
    h = max(m.shape[0] for m in masks)
    cells = [np.pad(m, ((0, h - m.shape[0]), (6, 6))) for m in masks]
    return 255 - np.concatenate(cells, axis=1)
