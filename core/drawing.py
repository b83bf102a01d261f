"""Annotated frames: boxes, class names, plate text (Hangul / Chinese through PIL), FPS overlay.

``cv2.putText`` only has ASCII glyphs. Text that is pure ASCII is drawn with OpenCV; other text is drawn
from a small mask rendered by PIL with a CJK-capable TrueType font (found by ``find_cjk_font``: the
``ALPR_FONT`` environment variable, then common Noto CJK / WenQuanYi / Nanum / Un font paths). Masks are
cached, so a plate seen on every frame is rendered once. Without PIL or such a font, non-ASCII characters
are drawn as ``?`` (``ascii_fallback``). PIL is optional: the edge runtime does not need it.
"""
from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

from core.results import FrameResult
from core.types import Box

Color = Tuple[int, int, int]  # BGR

CLASS_COLORS: Dict[str, Color] = {
    "car": (255, 160, 0),
    "truck": (255, 100, 0),
    "bus": (200, 80, 0),
    "motorcycle": (255, 200, 100),
    "license_plate": (0, 220, 0),
    "disabled_sticker": (0, 200, 255),
}
EV_COLOR: Color = (255, 255, 0)  # cyan-ish box for EV plates
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/truetype/nanum/NanumBarunGothic.ttf",
    "/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf",
    "/System/Library/Fonts/AppleSDGothicNeo.ttc",
    "C:/Windows/Fonts/malgun.ttf",
)


def class_color(name: str) -> Color:
    """A fixed colour per class name (a stable hash colour for classes not in ``CLASS_COLORS``)."""
    if name in CLASS_COLORS:
        return CLASS_COLORS[name]
    h = zlib.crc32(name.encode("utf-8"))
    return (64 + h % 192, 64 + (h >> 8) % 192, 64 + (h >> 16) % 192)


def ascii_fallback(text: str) -> str:
    """``text`` with every non-ASCII character replaced by ``?``."""
    return "".join(ch if ord(ch) < 128 else "?" for ch in text)


def find_cjk_font(candidates: Sequence[str] = FONT_CANDIDATES) -> str | None:
    """Path of a TrueType font with Hangul and CJK glyphs, or None."""
    env = os.environ.get("ALPR_FONT")
    for path in ([env] if env else []) + list(candidates):
        if path and Path(path).is_file():
            return path
    return None


class TextRenderer:
    """Draws text on BGR images; non-ASCII through PIL when available (see the module docstring)."""

    def __init__(self, font_path: str | None = None, cache_size: int = 256) -> None:
        # None: look for a CJK font; "": use none (ASCII fallback only)
        self.font_path = find_cjk_font() if font_path is None else (font_path or None)
        self._fonts: Dict[int, object] = {}
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        try:
            from PIL import ImageFont  # noqa: F401
            self._pil = True
        except ImportError:
            self._pil = False

    @property
    def unicode_ok(self) -> bool:
        """True when non-ASCII text is drawn as itself."""
        return self._pil and self.font_path is not None

    def _font(self, px: int):
        font = self._fonts.get(px)
        if font is None:
            from PIL import ImageFont
            font = ImageFont.truetype(self.font_path, px)
            self._fonts[px] = font
        return font

    def _mask(self, text: str, px: int) -> np.ndarray:
        key = (text, px)
        mask = self._cache.get(key)
        if mask is not None:
            self._cache.move_to_end(key)
            return mask
        from PIL import Image, ImageDraw
        font = self._font(px)
        x0, y0, x1, y1 = font.getbbox(text)
        w, h = max(1, x1 - min(0, x0)), max(1, y1 - min(0, y0))
        canvas = Image.new("L", (w + 2, h + 2), 0)
        ImageDraw.Draw(canvas).text((1 - min(0, x0), 1 - min(0, y0)), text, font=font, fill=255)
        mask = np.asarray(canvas, dtype=np.uint8)
        self._cache[key] = mask
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return mask

    def size(self, text: str, height_px: int) -> Tuple[int, int]:
        """(width, height) the text takes when drawn ``height_px`` high."""
        if text.isascii() or not self.unicode_ok:
            scale = height_px / 22.0
            thick = max(1, int(round(scale * 1.5)))
            (w, h), base = cv2.getTextSize(ascii_fallback(text), cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            return w, h + base
        mask = self._mask(text, height_px)
        return mask.shape[1], mask.shape[0]

    def draw(self, image: np.ndarray, text: str, org: Tuple[int, int], color: Color, height_px: int = 18,
             background: Color | None = None, pad: int = 2) -> Tuple[int, int, int, int]:
        """Draw ``text`` with its top-left corner at ``org`` (kept inside the image); returns its box."""
        w, h = self.size(text, height_px)
        H, W = image.shape[:2]
        x = int(min(max(org[0], 0), max(0, W - w - 2 * pad)))
        y = int(min(max(org[1], 0), max(0, H - h - 2 * pad)))
        if background is not None:
            cv2.rectangle(image, (x, y), (min(W - 1, x + w + 2 * pad), min(H - 1, y + h + 2 * pad)),
                          background, -1)
        if text.isascii() or not self.unicode_ok:
            scale = height_px / 22.0
            thick = max(1, int(round(scale * 1.5)))
            (_, th), _ = cv2.getTextSize(ascii_fallback(text), cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            cv2.putText(image, ascii_fallback(text), (x + pad, y + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale,
                        color, thick, cv2.LINE_AA)
        else:
            mask = self._mask(text, height_px)
            mh = min(mask.shape[0], H - y - pad)
            mw = min(mask.shape[1], W - x - pad)
            if mh > 0 and mw > 0:
                region = image[y + pad:y + pad + mh, x + pad:x + pad + mw]
                alpha = mask[:mh, :mw, None].astype(np.float32) / 255.0
                region[:] = (region * (1 - alpha) + np.array(color, np.float32) * alpha).astype(image.dtype)
        return x, y, x + w + 2 * pad, y + h + 2 * pad


_DEFAULT: TextRenderer | None = None


def default_renderer() -> TextRenderer:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TextRenderer()
    return _DEFAULT


def _text_color(bg: Color) -> Color:
    luma = 0.114 * bg[0] + 0.587 * bg[1] + 0.299 * bg[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_box(image: np.ndarray, box: Box, color: Color, label: str | None = None, thickness: int = 2,
             renderer: TextRenderer | None = None, text_px: int = 16) -> None:
    """A rectangle and, when given, a filled label above it (below it at the top edge)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness)
    if label:
        r = renderer or default_renderer()
        _, h = r.size(label, text_px)
        y = y1 - h - 4 if y1 - h - 4 >= 0 else y2 + 1
        r.draw(image, label, (x1, y), _text_color(color), text_px, background=color)


def draw_fps(image: np.ndarray, fps: float, renderer: TextRenderer | None = None) -> None:
    """``FPS: 23.4`` in the top-left corner."""
    r = renderer or default_renderer()
    r.draw(image, f"FPS: {fps:.1f}", (5, 5), (0, 255, 0), 20, background=(0, 0, 0))


def draw_frame(image: np.ndarray, frame: FrameResult, fps: float | None = None, show_scores: bool = True,
               track_ids: Sequence[int | None] | None = None,
               renderer: TextRenderer | None = None) -> np.ndarray:
    """Draw every detection of ``frame`` on ``image`` (in place; returned for chaining).

    Vehicles get their class (and track id when ``track_ids``, one per vehicle, is given); plates their
    read text and confidence (an ``EV`` tag and a distinct colour for EV plates); stickers and other
    classes their class name.
    """
    r = renderer or default_renderer()

    def label(name: str, score: float) -> str:
        return f"{name} {score:.2f}" if show_scores else name

    for i, det in enumerate(frame.vehicles):
        text = label(det.class_name, det.score)
        if track_ids is not None and i < len(track_ids) and track_ids[i] is not None:
            text = f"#{track_ids[i]} {text}"
        draw_box(image, det.box, class_color(det.class_name), text, renderer=r)
    for plate in frame.plates:
        det = plate.detection
        color = EV_COLOR if plate.ev else class_color(det.class_name)
        if plate.read:
            text = plate.text or "?"
            if show_scores and plate.confidence is not None:
                text += f" {plate.confidence:.2f}"
            if plate.ev:
                text += " EV"
        else:
            text = label(det.class_name, det.score)
        draw_box(image, det.box, color, text, renderer=r, text_px=20 if plate.read else 16)
    for sticker in frame.stickers:
        det = sticker.detection
        draw_box(image, det.box, class_color(det.class_name), label(det.class_name, det.score), renderer=r)
    for det in frame.others:
        draw_box(image, det.box, class_color(det.class_name), label(det.class_name, det.score), renderer=r)
    if fps is not None:
        draw_fps(image, fps, r)
    return image
