"""Plate alphabets (edge runtime, TF-free): data/charsets/<name>.txt -> a frozen ``Charset``.

A charset file holds one token per line (``#`` starts a comment line); the last token is the CTC
blank. A token may be several characters (the Korean region names such as ``서울``): ``encode``
matches greedily the longest token first, so ``서울12가3456`` is 8 ids, not 9.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Pattern, Sequence, Tuple, Union

from core.errors import AlprError

NUM_CLASSES = 68
CHARSETS_DIR = Path(__file__).resolve().parents[1] / "data" / "charsets"

_CN_PROVINCES = "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
CN_PROVINCES = _CN_PROVINCES  # the first character of every Chinese plate (lprnet.province classifies it)
_CN_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
CN_LETTERS = _CN_LETTERS  # the issuing-office letter after the province (lprnet.province's letter check)
# Province, issuing-office letter, then 5 letters/digits (ordinary plates, 7 in all) or a new-energy
# tail (8 in all): D/F, a letter or digit, 4 digits (small cars) or 5 digits, D/F (large vehicles).
_CN_FORMAT = re.compile(
    f"^[{_CN_PROVINCES}][{_CN_LETTERS}]"
    f"(?:[{_CN_LETTERS}0-9]{{5}}|[DF][{_CN_LETTERS}0-9][0-9]{{4}}|[0-9]{{5}}[DF])$"
)
_KR_REGIONS = ("서울", "부산", "대구", "인천", "광주", "대전", "울산", "세종", "경기", "강원",
               "충북", "충남", "전북", "전남", "경북", "경남", "제주")
KR_REGIONS = _KR_REGIONS  # the prefix of Korean commercial plates (lprnet.province classifies it)
_KR_HANGUL = "가나다라마거너더러머버서어저고노도로모보소오조구누두루무부수우주아바사자배하허호"
KR_HANGUL = _KR_HANGUL  # the letter of a Korean plate, after its digits (lprnet.province's hangul check)
# 12가3456, 123가4567, and commercial plates with a region prefix: 서울12가3456.
_KR_FORMAT = re.compile(
    "^(?:{r})?[0-9]{{2,3}}[{h}][0-9]{{4}}$".format(r="|".join(_KR_REGIONS), h=_KR_HANGUL)
)
_FORMATS: Dict[str, Pattern[str]] = {"cn": _CN_FORMAT, "kr": _KR_FORMAT}


@dataclass(frozen=True)
class Charset:
    """An ordered alphabet for an 18-step x 68-class CTC reader; the blank is the last token."""

    name: str
    tokens: Tuple[str, ...]
    _index: Dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _max_len: int = field(default=1, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.tokens) != NUM_CLASSES:
            raise AlprError(f"charset {self.name!r} has {len(self.tokens)} entries, expected {NUM_CLASSES}")
        if len(set(self.tokens)) != len(self.tokens):
            dup = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise AlprError(f"charset {self.name!r} has duplicate tokens: {' '.join(dup)}")
        if any(not t or t.strip() != t for t in self.tokens):
            raise AlprError(f"charset {self.name!r} has an empty or space-padded token")
        index = {t: i for i, t in enumerate(self.tokens[:-1])}
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_max_len", max(len(t) for t in self.tokens[:-1]))

    @property
    def blank(self) -> int:
        """Index of the CTC blank (always the last, 67)."""
        return len(self.tokens) - 1

    @property
    def num_classes(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> List[int]:
        """Text -> token ids, longest token first; AlprError on a character outside the charset."""
        ids: List[int] = []
        pos = 0
        while pos < len(text):
            for length in range(min(self._max_len, len(text) - pos), 0, -1):
                idx = self._index.get(text[pos:pos + length])
                if idx is not None:
                    ids.append(idx)
                    pos += length
                    break
            else:
                raise AlprError(
                    f"character {text[pos]!r} of {text!r} is not in charset {self.name!r}"
                )
        return ids

    def can_encode(self, text: str) -> bool:
        try:
            self.encode(text)
        except AlprError:
            return False
        return bool(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text; blanks are skipped (no CTC collapsing here, see lprnet.ctc)."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.blank:
                continue
            if not 0 <= i < self.blank:
                raise AlprError(f"token id {i} out of range for charset {self.name!r}")
            out.append(self.tokens[i])
        return "".join(out)

    def is_valid_format(self, text: str) -> bool:
        """Whether ``text`` looks like a plate of this charset's country; never rewrites it."""
        pattern = _FORMATS.get(self.name)
        if pattern is None:
            return self.can_encode(text)
        return bool(pattern.match(text))


def _parse(text: str) -> List[str]:
    tokens = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens.append(line)
    return tokens


_CACHE: Dict[str, Charset] = {}


def load_charset(name_or_path: Union[str, Path], name: str | None = None) -> Charset:
    """Load ``cn`` / ``kr`` (from data/charsets) or a charset file path; cached per resolved path."""
    spec = str(name_or_path)
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = CHARSETS_DIR / f"{spec}.txt"
    key = str(path.resolve())
    if key in _CACHE:
        return _CACHE[key]
    if not path.is_file():
        known = ", ".join(available_charsets()) or "none"
        raise AlprError(f"unknown charset {spec!r} (no file {path}; known: {known})")
    try:
        tokens = _parse(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise AlprError(f"charset file {path} is not UTF-8 text") from None
    charset = Charset(name=name or path.stem, tokens=tuple(tokens))
    _CACHE[key] = charset
    return charset


def available_charsets() -> Sequence[str]:
    return sorted(p.stem for p in CHARSETS_DIR.glob("*.txt"))
