"""Find fonts that have the glyphs a plate needs (Hangul, Chinese, digits, Latin).

Nothing is fetched at run time. Fonts are looked up, in this order, in the folders named by the
``ALPR_FONT_DIRS`` environment variable (``os.pathsep``-separated), in ``data/fonts/`` of the
repository, and in the usual system font folders. On Debian/Ubuntu the renderer needs:

    apt-get install -y fonts-nanum fonts-wqy-microhei

(``fonts-wqy-zenhei``, ``fonts-noto-cjk`` and ``fonts-unfonts-core`` add variety; the shipped Chinese
reader was trained with the first two, so ``tools/setup.sh`` installs them and ``tools.train_reader``
requires them; ``fonts-dejavu-core`` adds Latin digit faces.) A font is used only
when it really draws every character it is asked for (checked against its "missing glyph" box), so a
partial CJK font never produces tofu under a correct label.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.errors import AlprError
from tools.synth.charsets import CN_LETTERS, CN_PROVINCES, DIGITS, KR_HANGUL

REPO = Path(__file__).resolve().parents[2]

APT_PACKAGES = {"kr": "fonts-nanum", "cn": "fonts-wqy-microhei"}

# File names by preference; the first ones look most like plate lettering (bold, plain sans).
_KR_NAMES = (
    "NanumGothicBold.ttf", "NanumGothicExtraBold.ttf", "NanumBarunGothicBold.ttf", "NanumSquareB.ttf",
    "NanumSquareEB.ttf", "NanumSquareRoundB.ttf", "NanumGothic.ttf", "NanumBarunGothic.ttf",
    "UnDotumBold.ttf", "UnGraphicBold.ttf", "NotoSansCJK-Bold.ttc", "NotoSansCJKkr-Bold.otf",
    "NotoSansKR-Bold.otf", "wqy-microhei.ttc", "wqy-zenhei.ttc",
)
_CN_NAMES = (
    "wqy-microhei.ttc", "wqy-zenhei.ttc", "NotoSansCJK-Bold.ttc", "NotoSansCJK-Regular.ttc",
    "NotoSansCJKsc-Bold.otf", "NotoSansSC-Bold.otf", "NotoSansSC-Regular.otf", "DroidSansFallbackFull.ttf",
    "SourceHanSansSC-Bold.otf", "simhei.ttf", "msyh.ttc",
)
# Extra faces used for digits and Latin letters only.
_LATIN_NAMES = ("DejaVuSans-Bold.ttf", "DejaVuSansCondensed-Bold.ttf", "LiberationSans-Bold.ttf")

_SYSTEM_DIRS = (
    "/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts",
    "/Library/Fonts", "/System/Library/Fonts", "C:/Windows/Fonts",
)


@dataclass(frozen=True)
class FontSpec:
    """One usable font face: file and face index inside a collection (.ttc)."""

    path: str
    index: int = 0


def font_dirs() -> List[Path]:
    """Folders searched for fonts, in priority order (only those that exist)."""
    dirs: List[Path] = []
    env = os.environ.get("ALPR_FONT_DIRS", "")
    for part in env.split(os.pathsep):
        if part:
            dirs.append(Path(part).expanduser())
    dirs.append(REPO / "data" / "fonts")
    dirs.extend(Path(d).expanduser() for d in _SYSTEM_DIRS)
    return [d for d in dirs if d.is_dir()]


@lru_cache(maxsize=1)
def _font_files() -> Dict[str, str]:
    """Lower-case file name -> first path found (search order decides ties)."""
    found: Dict[str, str] = {}
    for d in font_dirs():
        for root, _dirs, files in os.walk(d):
            for name in sorted(files):
                if name.lower().endswith((".ttf", ".ttc", ".otf")):
                    found.setdefault(name.lower(), os.path.join(root, name))
    return found


def _glyph_signature(font: ImageFont.FreeTypeFont, ch: str) -> bytes | None:
    box = font.getbbox(ch)
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= 0 or h <= 0:
        return None
    img = Image.new("L", (w + 2, h + 2))
    ImageDraw.Draw(img).text((1 - box[0], 1 - box[1]), ch, font=font, fill=255)
    return np.asarray(img).tobytes() + bytes([w, h])


def covers(spec: FontSpec, chars: Iterable[str]) -> bool:
    """True when the face draws every char as a real glyph (not empty, not the missing-glyph box)."""
    try:
        font = ImageFont.truetype(spec.path, 32, index=spec.index)
    except OSError:
        return False
    missing = {_glyph_signature(font, c) for c in ("\ue000", "\U000f0000")}
    for ch in chars:
        sig = _glyph_signature(font, ch)
        if sig is None or sig in missing:
            return False
    return True


# Pan-CJK collections (Noto Sans CJK, Source Han Sans) hold one face per locale; the same code point is
# drawn in that locale's form, so Chinese plates take the Simplified Chinese face and Korean ones the Korean.
_LOCALE_TAG = {"cn": "SC", "kr": "KR"}


def face_index(path: str, charset: str | None) -> int:
    """Index of the face of a font collection whose family names ``charset``'s locale (e.g. 'Noto Sans
    CJK SC' for cn), skipping monospaced faces; 0 for single fonts and collections without one."""
    tag = _LOCALE_TAG.get(charset or "")
    if tag is None or not path.lower().endswith(".ttc"):
        return 0
    for i in range(32):
        try:
            family = ImageFont.truetype(path, 12, index=i).getname()[0] or ""
        except OSError:
            break
        words = family.split()
        if tag in words and "Mono" not in words:
            return i
    return 0


def _candidates(names: Sequence[str], charset: str | None = None) -> List[FontSpec]:
    files = _font_files()
    out: List[FontSpec] = []
    for name in names:
        path = files.get(name.lower())
        if path is not None:
            out.append(FontSpec(path, face_index(path, charset)))
    # Fonts shipped in data/fonts or named by ALPR_FONT_DIRS are candidates too, whatever their name.
    env_dirs = [Path(p) for p in os.environ.get("ALPR_FONT_DIRS", "").split(os.pathsep) if p]
    extra_dirs = [REPO / "data" / "fonts"] + env_dirs
    for d in extra_dirs:
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.suffix.lower() in (".ttf", ".ttc", ".otf") and all(s.path != str(p) for s in out):
                    out.append(FontSpec(str(p), face_index(str(p), charset)))
    return out


_NEEDS = {"kr": KR_HANGUL + DIGITS, "cn": CN_PROVINCES + DIGITS + CN_LETTERS}


@lru_cache(maxsize=None)
def find_fonts(charset: str) -> Tuple[FontSpec, ...]:
    """Faces that draw every glyph of ``charset``; raise AlprError naming the apt package if none."""
    if charset not in _NEEDS:
        raise AlprError(f"unknown charset {charset!r}")
    names = _KR_NAMES if charset == "kr" else _CN_NAMES
    specs = tuple(s for s in _candidates(names, charset) if covers(s, _NEEDS[charset]))
    if not specs:
        where = ", ".join(str(d) for d in font_dirs()) or "no font folder"
        raise AlprError(
            f"no font with {charset} plate glyphs found in {where}; install one: "
            f"apt-get install -y {APT_PACKAGES[charset]} (or put a .ttf in data/fonts/ or ALPR_FONT_DIRS)"
        )
    return specs


@lru_cache(maxsize=None)
def find_digit_fonts(charset: str) -> Tuple[FontSpec, ...]:
    """Faces for digits and Latin letters: the charset's fonts plus plain Latin sans faces."""
    latin = tuple(s for s in _candidates(_LATIN_NAMES) if covers(s, DIGITS + CN_LETTERS))
    return find_fonts(charset) + tuple(s for s in latin if s not in find_fonts(charset))
