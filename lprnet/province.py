"""The checks of the plate reads (edge runtime, TF-free): the Chinese reader's province and top-line letter checks,
the Korean reader's region, top-line digits and Hangul letter checks. Each is a small classifier of one field (the
province, say) alone, on a view of the part of the plate that holds it at about twice LPRNet's resolution
(``lprnet.preprocess.province_view``).

After resizing to LPRNet's 94x24 input a province glyph keeps about 10x18 pixels, and most of the Chinese
reader's errors are the province (model card, session 39); a Korean one-line commercial plate's region is
smaller still. Where the classifier's class differs from the token the read starts with with at least
``min_probability``, that token is replaced (``replace_provinces``); the rest of the read is kept as it is.
A read that starts with none of the classes (a Korean plate without a region) is left alone.

A model is a TFLite file (``lprnet.train_province`` writes it) with a JSON file beside it
(``<model>.json``): ``{"classes": "京沪..." or ["서울", ...], "min_probability": 0.8, "view": [48, 40],
"shares": [0.26, 0.62]}`` (``shares``: the view's one-line and top-line shares; a model of one-character
classes without them, as session 39's Chinese one, gets the Chinese shares, any other must name them).

A check may also classify a field that follows another (``FIELDS["digits"]``: the two digits after the region on
the top line of a Korean two-line plate; ``FIELDS["letter"]``: the letter after the province on the top line of a
Chinese two-line plate; ``FIELDS["hangul"]``: the letter after the digits of a Korean one-line plate): its ``.json``
then names ``"after"`` (the tokens the field follows) or ``"after_pattern"`` (a regular expression matching the
start of the read that it follows), ``"starts"`` (where the view starts, as shares of the text box) and ``"lines"``
(the line counts of the reads it checks, ``[2]`` or ``[1]``). A reader may have several checks; they run in order
(``lprnet.reader.read_crops``).

A check's ``.json`` may also name ``"read_confidence_below"``: it then looks only at reads whose confidence
(``PlateRead.confidence``) is below that value, and costs nothing on the others (the Korean Hangul check: 0.97;
every read it put right in session 43's measurements was less sure than that, and most reads are surer).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from core.errors import AlprError
from core.tflite_runtime import load_interpreter
from lprnet.charset import CN_LETTERS, CN_PROVINCES, KR_HANGUL, KR_REGIONS, Charset
from lprnet.ctc import softmax
from lprnet.home import HomeRegion
from lprnet.preprocess import (
    DIGITS_START_TOP_LINE,
    HANGUL_VIEW_ONE_LINE,
    LETTER_START_TOP_LINE,
    PROVINCE_VIEW_HEIGHT,
    PROVINCE_VIEW_WIDTH,
    VIEW_SHARES,
    normalize,
)
from lprnet.reader import BatchGraph, in_batches


@dataclass(frozen=True)
class CheckField:
    """What a check classifies and where its view is cut (``lprnet.preprocess.province_view``)."""

    classes: Tuple[str, ...]
    shares: Tuple[float, float]  # where the view ends: of a one-line text box, of a two-line top line's
    starts: Tuple[float, float] = (0.0, 0.0)  # where it starts, likewise
    after: Tuple[str, ...] = ()  # the tokens the field follows; none: it starts the read
    lines: Tuple[int, ...] = (1, 2)  # the line counts of the reads it checks
    after_pattern: str = ""  # or a regular expression matching the start of the read that the field follows


DIGIT_PAIRS = tuple(f"{i:02d}" for i in range(100))
# the checks lprnet.train_province trains, by name, and the charset of each
FIELDS: Dict[str, CheckField] = {
    "province": CheckField(tuple(CN_PROVINCES), VIEW_SHARES["cn"]),
    "region": CheckField(KR_REGIONS, VIEW_SHARES["kr"]),
    "digits": CheckField(DIGIT_PAIRS, (1.0, 1.0), (0.0, DIGITS_START_TOP_LINE), after=KR_REGIONS, lines=(2,)),
    "letter": CheckField(tuple(CN_LETTERS), (1.0, 1.0), (0.0, LETTER_START_TOP_LINE), after=tuple(CN_PROVINCES),
                         lines=(2,)),
    # the Hangul letter of a Korean one-line plate, after an optional region and two or three digits
    "hangul": CheckField(tuple(KR_HANGUL), (HANGUL_VIEW_ONE_LINE[1], 1.0), (HANGUL_VIEW_ONE_LINE[0], 0.0),
                         lines=(1,), after_pattern="(?:{})?[0-9]{{2,3}}".format("|".join(KR_REGIONS))),
}
FIELD_CHARSET = {"province": "cn", "region": "kr", "digits": "kr", "letter": "cn", "hangul": "kr"}
# each charset's checks in the order a reader runs them (core.pipeline.DEFAULT_PROVINCE ships one model of each)
CHARSET_FIELDS = {"cn": ("province", "letter"), "kr": ("region", "digits", "hangul")}


def metadata_path(model_path: Union[str, Path]) -> Path:
    """Where a province model's classes and threshold are kept: the model's path + ``.json``."""
    return Path(str(model_path) + ".json")


def first_class(text: str, classes: Sequence[str]) -> Optional[str]:
    """The longest of ``classes`` that ``text`` starts with, or None."""
    found = [c for c in classes if c and text.startswith(c)]
    return max(found, key=len) if found else None


def find_field(text: str, classes: Sequence[str], after: Sequence[str] = (),
               after_pattern: str = "") -> Optional[Tuple[int, str]]:
    """(where it starts, which class) of the field in ``text``: the class ``text`` starts with, or with
    ``after``, the class that follows the ``after`` token it starts with, or with ``after_pattern``, the class
    that follows the start of ``text`` that regular expression matches (``re.match``); None when there is none."""
    start = 0
    if after_pattern:
        match = re.match(after_pattern, text)
        if match is None:
            return None
        start = match.end()
    elif after:
        prefix = first_class(text, after)
        if prefix is None:
            return None
        start = len(prefix)
    found = first_class(text[start:], classes)
    return None if found is None else (start, found)


def replace_provinces(texts: Sequence[str], probs: np.ndarray, classes: Sequence[str], min_probability: float,
                      after: Sequence[str] = (), after_pattern: str = "") -> List[str]:
    """Each text with the class it starts with (one of ``classes``: characters, or tokens such as Korean
    regions; with ``after`` or ``after_pattern``, the class that follows, ``find_field``) replaced by the
    classifier's top class where that differs and has at least ``min_probability``; a text without such a class, or an
    empty one, is left alone."""
    probs = np.asarray(probs, np.float32)
    if probs.shape != (len(texts), len(classes)):
        raise AlprError(f"province probabilities of shape {probs.shape} for {len(texts)} reads and "
                        f"{len(classes)} classes")
    out = []
    for text, p in zip(texts, probs):
        k = int(np.argmax(p))
        found = find_field(text, classes, after, after_pattern)
        if found is not None and classes[k] != found[1] and float(p[k]) >= min_probability:
            start, first = found
            text = text[:start] + classes[k] + text[start + len(first):]
        out.append(text)
    return out


def _parse_classes(value: Any) -> Tuple[str, ...]:
    """A string of one-character classes, or a list of class tokens."""
    if isinstance(value, str):
        return tuple(value)
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return tuple(value)
    raise ValueError("classes must be a string of characters or a list of strings")


def _parse_after(value: Any) -> Tuple[str, ...]:
    """A list of non-empty tokens that the field follows."""
    if isinstance(value, list) and all(isinstance(c, str) and c for c in value):
        return tuple(value)
    raise ValueError(f"after must be a list of non-empty strings, got {value!r}")


MAX_PATTERN_LENGTH = 1000


def _parse_pattern(value: Any) -> str:
    """A non-empty regular expression (``re`` syntax) matching the start of the read that the field follows. The
    .json is trusted as the model beside it is: a pattern that backtracks badly would slow every read."""
    if not (isinstance(value, str) and value):
        raise ValueError(f"after_pattern must be a non-empty string, got {value!r}")
    if len(value) > MAX_PATTERN_LENGTH:
        raise ValueError(f"after_pattern is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"after_pattern {value[:80]!r} is not a usable regular expression: {exc}") from None
    return value


def _number(value: Any, what: str) -> float:
    """A JSON number (not a boolean or a string) as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)  # OverflowError for a huge integer: caught with the other metadata errors


def _parse_shares(value: Any, what: str = "shares", low_open: bool = True) -> Tuple[float, float]:
    """Two numbers in (0, 1] (``low_open`` False: [0, 1)): the view's one-line and top-line shares or starts."""
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError(f"{what} must be a list of two numbers, got {value!r}")
    one, top = _number(value[0], what), _number(value[1], what)
    ok = (lambda v: 0.0 < v <= 1.0) if low_open else (lambda v: 0.0 <= v < 1.0)
    if not (ok(one) and ok(top)):
        raise ValueError(f"{what} must lie in {'(0, 1]' if low_open else '[0, 1)'}, got {[one, top]}")
    return one, top


def check_record(checks: Sequence[ProvinceReader]) -> Dict[str, List[Any]]:
    """What the reader tools' JSON records of the checks a read used, in order: each one's model, threshold, gate
    and the home token(s) it leaned to (comma-separated; None: no home, or none among its classes)."""
    return {"province": [c.model_path for c in checks],
            "province_min_probability": [c.min_probability for c in checks],
            "province_read_confidence_below": [c.read_confidence_below for c in checks],
            "province_home": [(",".join(c.home.present(c.classes)) or None) if c.home is not None else None
                              for c in checks]}


def parse_gate(value: Any) -> float:
    """A number in (0, 1]: the check looks only at reads less sure than it (1.0 still skips a read exactly 1.0 sure;
    no key, or null, gates nothing)."""
    gate = _number(value, "read_confidence_below")
    if not 0.0 < gate <= 1.0:
        raise ValueError(f"read_confidence_below must lie in (0, 1], got {gate}")
    return gate


def _parse_lines(value: Any) -> Tuple[int, ...]:
    """A non-empty list of line counts, each 1 or 2."""
    if not (isinstance(value, list) and value and all(v in (1, 2) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"lines must be a non-empty list of 1 and 2, got {value!r}")
    return tuple(sorted(set(int(v) for v in value)))


class ProvinceReader:
    """A TFLite province classifier and its metadata: ``probabilities(views)`` and ``check(texts, views)``.
    ``home``: a ``lprnet.home.HomeRegion`` its check leans to when its classes hold the home token."""

    def __init__(self, model_path: Union[str, Path], num_threads: Optional[int] = None,
                 min_probability: Optional[float] = None, home: Optional[HomeRegion] = None) -> None:
        self._interp: Any = load_interpreter(model_path, num_threads)
        meta_path = metadata_path(model_path)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            classes = _parse_classes(meta["classes"])
            if "shares" in meta:
                shares = _parse_shares(meta["shares"])
            elif all(len(c) == 1 for c in classes):
                shares = VIEW_SHARES["cn"]  # session 39's province model names none: the Chinese shares
            else:
                raise ValueError("a model of multi-character classes must name its view's shares")
            threshold = _number(meta["min_probability"], "min_probability") if min_probability is None \
                else float(min_probability)
            starts = _parse_shares(meta["starts"], "starts", low_open=False) if "starts" in meta else (0.0, 0.0)
            if any(a >= b for a, b in zip(starts, shares)):
                raise ValueError(f"each start must lie before its share, got starts {list(starts)}, "
                                 f"shares {list(shares)}")
            after = _parse_after(meta["after"]) if "after" in meta else ()
            after_pattern = _parse_pattern(meta["after_pattern"]) if "after_pattern" in meta else ""
            if after and after_pattern:
                raise ValueError("after and after_pattern exclude each other")
            lines = _parse_lines(meta["lines"]) if "lines" in meta else (1, 2)
            gate = None if meta.get("read_confidence_below") is None else parse_gate(meta["read_confidence_below"])
        except FileNotFoundError:
            raise AlprError(f"province model {model_path} has no metadata file {meta_path.name} beside it") from None
        except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
            raise AlprError(f"bad province model metadata {meta_path}: {exc}") from None
        if not classes or len(set(classes)) != len(classes) or not all(classes):
            raise AlprError(f"bad province model metadata {meta_path}: classes must be distinct and non-empty")
        if not 0.0 <= threshold <= 1.0:
            raise AlprError(f"province min_probability must lie in [0, 1], got {threshold}")
        self.model_path = str(model_path)
        self.field = CheckField(classes, shares, starts, after, lines, after_pattern)
        self.min_probability = threshold
        self.read_confidence_below = gate  # None: every read
        self.home = home
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise AlprError(f"{model_path}: expected one input and one output, got {len(inputs)}/{len(outputs)}")
        self._in, self._out = inputs[0], outputs[0]
        shape = tuple(int(s) for s in self._in["shape"])
        if len(shape) != 4 or shape[1:] != (PROVINCE_VIEW_HEIGHT, PROVINCE_VIEW_WIDTH, 3):
            raise AlprError(f"{model_path}: input shape {shape} is not "
                            f"[N, {PROVINCE_VIEW_HEIGHT}, {PROVINCE_VIEW_WIDTH}, 3]")
        out_shape = tuple(int(s) for s in self._out["shape"])
        if len(out_shape) != 2 or out_shape[1] != len(classes):
            raise AlprError(f"{model_path}: output shape {out_shape} does not match its {len(classes)} classes")
        self._graph = BatchGraph(self._interp, self._in, self._out)

    # the field's parts, as read_crops and the front ends use them
    classes = property(lambda self: self.field.classes)
    shares = property(lambda self: self.field.shares)  # the view's one-line and top-line shares (province_view)
    starts = property(lambda self: self.field.starts)  # and where it starts
    after = property(lambda self: self.field.after)
    after_pattern = property(lambda self: self.field.after_pattern)
    lines = property(lambda self: self.field.lines)

    def is_field(self, name: str) -> bool:
        """Whether this model checks ``FIELDS[name]``: the same classes, what it follows and line counts."""
        spec = FIELDS[name]
        return (self.classes, self.after, self.after_pattern, self.lines) == (
            spec.classes, spec.after, spec.after_pattern, spec.lines)

    def suits(self, charset: Charset) -> bool:
        """Whether ``charset`` spells every class and ``after`` token (a Chinese model does not check Korean
        reads)."""
        return all(charset.can_encode(c) for c in self.classes + self.after)

    def applies(self, text: str, lines: Optional[int] = None, confidence: Optional[float] = None) -> bool:
        """Whether ``text`` has the field (it starts with one of the classes, or with ``after``, one follows
        the token it starts with) and, given ``lines``, the read came from an input of a line count the check
        takes and, given ``confidence``, the read is less sure than ``read_confidence_below``: the check leaves
        other reads alone."""
        if lines is not None and lines not in self.lines:
            return False
        if confidence is not None and self.read_confidence_below is not None \
                and confidence >= self.read_confidence_below:
            return False
        return find_field(text, self.classes, self.after, self.after_pattern) is not None

    def probabilities(self, views: np.ndarray) -> np.ndarray:
        """uint8 views [N, 40, 48, 3] (``province_view``) -> float32 class probabilities [N, classes]."""
        views = np.asarray(views)
        if len(views) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return softmax(in_batches(self._graph, normalize(views)), axis=1).astype(np.float32)

    def check(self, texts: Sequence[str], views: np.ndarray) -> List[str]:
        """``replace_provinces`` with this model's probabilities for ``views`` and its threshold; with a ``home``
        among its classes, the probabilities leaned to it first (``HomeRegion.lean_probs``), as the reader's frames
        are, so a replacement by another class that falls under the threshold once leaned is held back too
        (session 44: 7 more of 2,000 home plates read than with a lean that only adds replacements by the home)."""
        if not len(texts):
            return []
        probs = self.probabilities(views)
        if self.home is not None:
            probs = self.home.lean_probs(probs, self.classes)
        return replace_provinces(texts, probs, self.classes, self.min_probability, self.after, self.after_pattern)
