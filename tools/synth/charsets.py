"""Plate alphabets and text formats used by the synthetic renderers.

Tokens are what one CTC class stands for: a Korean region name (``서울``) is ONE token made of two
Hangul letters; everything else is one character per token.

Text formats (``validate`` checks them; ``KIND_PATTERNS`` has one regex per plate kind):

* ``kr``: ``^(REGION)?[0-9]{2,3}HANGUL[0-9]{4}$`` e.g. ``12가3456``, ``123가4567``, ``서울12바3456``
  (two-line plates are written in reading order: top line, then bottom line);
* ``cn``: ``^PROVINCE[A-HJ-NP-Z][0-9A-HJ-NP-Z]{5,6}$`` e.g. ``京A12345``, ``沪AD12345`` (8: new energy).
"""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

from core.errors import AlprError

DIGITS = "0123456789"
# Latin letters used on Chinese plates: A-Z without I and O.
CN_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
CN_PROVINCES = "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"

KR_HANGUL = "가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주아바사자배하허호"
KR_PRIVATE_HANGUL = "가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주"
KR_COMMERCIAL_HANGUL = "바사아자배"
KR_RENTAL_HANGUL = "하허호"
KR_REGIONS: Tuple[str, ...] = (
    "서울", "부산", "대구", "인천", "광주", "대전", "울산", "세종", "경기",
    "강원", "충북", "충남", "전북", "전남", "경북", "경남", "제주",
)

CHARSETS = ("kr", "cn")


def tokens(charset: str) -> List[str]:
    """All label tokens of ``charset`` (no CTC blank), in a fixed order."""
    if charset == "kr":
        return list(DIGITS) + list(KR_HANGUL) + list(KR_REGIONS)
    if charset == "cn":
        return list(CN_PROVINCES) + list(DIGITS) + list(CN_LETTERS)
    raise AlprError(f"unknown charset {charset!r}; expected one of {', '.join(CHARSETS)}")


def tokenize(text: str, charset: str) -> List[str]:
    """Split plate text into tokens (Korean regions are one token); raise on a foreign character."""
    known = set(tokens(charset))
    out: List[str] = []
    i = 0
    while i < len(text):
        if text[i : i + 2] in known and len(text[i : i + 2]) == 2:
            out.append(text[i : i + 2])
            i += 2
        elif text[i] in known:
            out.append(text[i])
            i += 1
        else:
            raise AlprError(f"character {text[i]!r} of {text!r} is not in the {charset} charset")
    return out


_H = "[" + KR_HANGUL + "]"
_R = "(?:" + "|".join(KR_REGIONS) + ")"
_P = "[" + CN_PROVINCES + "]"
_L = "[A-HJ-NP-Z]"
_AN = "[0-9A-HJ-NP-Z]"

FORMATS: Dict[str, re.Pattern[str]] = {
    "kr": re.compile(f"^{_R}?[0-9]{{2,3}}{_H}[0-9]{{4}}$"),
    "cn": re.compile(f"^{_P}{_L}{_AN}{{5,6}}$"),
}

KIND_PATTERNS: Dict[str, re.Pattern[str]] = {
    "kr_white": re.compile(f"^[0-9]{{2,3}}[{KR_PRIVATE_HANGUL}{KR_RENTAL_HANGUL}][0-9]{{4}}$"),
    "kr_white_old": re.compile(f"^[0-9]{{2}}[{KR_PRIVATE_HANGUL}][0-9]{{4}}$"),
    "kr_ev": re.compile(f"^[0-9]{{2,3}}[{KR_PRIVATE_HANGUL}{KR_RENTAL_HANGUL}][0-9]{{4}}$"),
    "kr_yellow": re.compile(f"^{_R}[0-9]{{2}}[{KR_COMMERCIAL_HANGUL}][0-9]{{4}}$"),
    "kr_yellow2": re.compile(f"^{_R}[0-9]{{2}}[{KR_COMMERCIAL_HANGUL}][0-9]{{4}}$"),
    "kr_green2": re.compile(f"^{_R}[0-9]{{2}}[{KR_PRIVATE_HANGUL}][0-9]{{4}}$"),
    "cn_blue": re.compile(f"^{_P}{_L}{_AN}{{5}}$"),
    "cn_yellow": re.compile(f"^{_P}{_L}{_AN}{{5}}$"),
    "cn_yellow2": re.compile(f"^{_P}{_L}{_AN}{{5}}$"),
    "cn_green": re.compile(f"^{_P}{_L}(?:[DF]{_AN}[0-9]{{4}}|[0-9]{{5}}[DF])$"),
}


def validate(text: str, charset: str) -> bool:
    """True when ``text`` is made of ``charset`` tokens and matches the charset's plate format."""
    if charset not in FORMATS:
        raise AlprError(f"unknown charset {charset!r}; expected one of {', '.join(CHARSETS)}")
    try:
        tokenize(text, charset)
    except AlprError:
        return False
    return FORMATS[charset].match(text) is not None
