"""The province check of the Chinese reader and the region check of the Korean one (edge runtime, TF-free): a
small classifier of the province (or region) alone, on a view of the plate's left at about twice LPRNet's
resolution (``lprnet.preprocess.province_view``).

After resizing to LPRNet's 94x24 input a province glyph keeps about 10x18 pixels, and most of the Chinese
reader's errors are the province (model card, session 39); a Korean one-line commercial plate's region is
smaller still. Where the classifier's class differs from the token the read starts with with at least
``min_probability``, that token is replaced (``replace_provinces``); the rest of the read is kept as it is.
A read that starts with none of the classes (a Korean plate without a region) is left alone.

A model is a TFLite file (``lprnet.train_province`` writes it) with a JSON file beside it
(``<model>.json``): ``{"classes": "京沪..." or ["서울", ...], "min_probability": 0.8, "view": [48, 40],
"shares": [0.26, 0.62]}`` (``shares``: the view's one-line and top-line shares; a model of one-character
classes without them, as session 39's Chinese one, gets the Chinese shares, any other must name them).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from core.errors import AlprError
from core.tflite_runtime import load_interpreter
from lprnet.charset import Charset
from lprnet.ctc import softmax
from lprnet.preprocess import PROVINCE_VIEW_HEIGHT, PROVINCE_VIEW_WIDTH, VIEW_SHARES, normalize
from lprnet.reader import BatchGraph


def metadata_path(model_path: Union[str, Path]) -> Path:
    """Where a province model's classes and threshold are kept: the model's path + ``.json``."""
    return Path(str(model_path) + ".json")


def first_class(text: str, classes: Sequence[str]) -> Optional[str]:
    """The longest of ``classes`` that ``text`` starts with, or None."""
    found = [c for c in classes if c and text.startswith(c)]
    return max(found, key=len) if found else None


def replace_provinces(texts: Sequence[str], probs: np.ndarray, classes: Sequence[str], min_probability: float
                      ) -> List[str]:
    """Each text with the class it starts with (one of ``classes``: characters, or tokens such as Korean
    regions) replaced by the classifier's top class where that differs and has at least ``min_probability``;
    a text that starts with none of ``classes``, or an empty one, is left alone."""
    probs = np.asarray(probs, np.float32)
    if probs.shape != (len(texts), len(classes)):
        raise AlprError(f"province probabilities of shape {probs.shape} for {len(texts)} reads and "
                        f"{len(classes)} classes")
    out = []
    for text, p in zip(texts, probs):
        k = int(np.argmax(p))
        first = first_class(text, classes)
        if first is not None and classes[k] != first and float(p[k]) >= min_probability:
            text = classes[k] + text[len(first):]
        out.append(text)
    return out


def _parse_classes(value: Any) -> Tuple[str, ...]:
    """A string of one-character classes, or a list of class tokens."""
    if isinstance(value, str):
        return tuple(value)
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return tuple(value)
    raise ValueError("classes must be a string of characters or a list of strings")


def _number(value: Any, what: str) -> float:
    """A JSON number (not a boolean or a string) as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)  # OverflowError for a huge integer: caught with the other metadata errors


def _parse_shares(value: Any) -> Tuple[float, float]:
    """Two numbers in (0, 1]: the view's one-line and top-line shares."""
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError(f"shares must be a list of two numbers, got {value!r}")
    one, top = _number(value[0], "a share"), _number(value[1], "a share")
    if not (0.0 < one <= 1.0 and 0.0 < top <= 1.0):
        raise ValueError(f"shares must lie in (0, 1], got {[one, top]}")
    return one, top


class ProvinceReader:
    """A TFLite province classifier and its metadata: ``probabilities(views)`` and ``check(texts, views)``."""

    def __init__(self, model_path: Union[str, Path], num_threads: Optional[int] = None,
                 min_probability: Optional[float] = None) -> None:
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
        except FileNotFoundError:
            raise AlprError(f"province model {model_path} has no metadata file {meta_path.name} beside it") from None
        except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
            raise AlprError(f"bad province model metadata {meta_path}: {exc}") from None
        if not classes or len(set(classes)) != len(classes) or not all(classes):
            raise AlprError(f"bad province model metadata {meta_path}: classes must be distinct and non-empty")
        if not 0.0 <= threshold <= 1.0:
            raise AlprError(f"province min_probability must lie in [0, 1], got {threshold}")
        self.model_path = str(model_path)
        self.classes = classes
        self.shares = shares  # the view's one-line and top-line shares (province_view)
        self.min_probability = threshold
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

    def suits(self, charset: Charset) -> bool:
        """Whether every class is a token of ``charset`` (a Chinese model does not check Korean reads)."""
        return all(c in charset.tokens for c in self.classes)

    def applies(self, text: str) -> bool:
        """Whether ``text`` starts with one of the classes (the check leaves other reads alone)."""
        return first_class(text, self.classes) is not None

    def probabilities(self, views: np.ndarray) -> np.ndarray:
        """uint8 views [N, 40, 48, 3] (``province_view``) -> float32 class probabilities [N, classes]."""
        views = np.asarray(views)
        if len(views) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return softmax(self._graph(normalize(views)), axis=1).astype(np.float32)

    def check(self, texts: Sequence[str], views: np.ndarray) -> List[str]:
        """``replace_provinces`` with this model's probabilities for ``views`` and its threshold."""
        if not len(texts):
            return []
        return replace_provinces(texts, self.probabilities(views), self.classes, self.min_probability)
