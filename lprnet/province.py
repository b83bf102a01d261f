"""The province check of the Chinese reader (edge runtime, TF-free): a small classifier of the province
alone, on a view of the plate's left at about twice LPRNet's resolution (``lprnet.preprocess.province_view``).

After resizing to LPRNet's 94x24 input a province glyph keeps about 10x18 pixels, and most of the Chinese
reader's errors are the province (model card, session 39). Where the classifier's province differs from
the read's first character with at least ``min_probability``, the read's province is replaced
(``replace_provinces``); the rest of the read is kept as it is.

A model is a TFLite file (``lprnet.train_province`` writes it) with a JSON file beside it
(``<model>.json``): ``{"classes": "京沪...", "min_probability": 0.8, "view": [48, 40]}``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

import numpy as np

from core.errors import AlprError
from core.tflite_runtime import load_interpreter
from lprnet.charset import Charset
from lprnet.ctc import softmax
from lprnet.preprocess import PROVINCE_VIEW_HEIGHT, PROVINCE_VIEW_WIDTH, normalize
from lprnet.reader import BatchGraph


def metadata_path(model_path: Union[str, Path]) -> Path:
    """Where a province model's classes and threshold are kept: the model's path + ``.json``."""
    return Path(str(model_path) + ".json")


def replace_provinces(texts: Sequence[str], probs: np.ndarray, classes: str, min_probability: float
                      ) -> List[str]:
    """Each text with its first character replaced by the classifier's top class where that differs, has at
    least ``min_probability``, and the first character is itself one of ``classes`` (a read that starts
    elsewhere, or an empty one, is left alone)."""
    probs = np.asarray(probs, np.float32)
    if probs.shape != (len(texts), len(classes)):
        raise AlprError(f"province probabilities of shape {probs.shape} for {len(texts)} reads and "
                        f"{len(classes)} classes")
    out = []
    for text, p in zip(texts, probs):
        k = int(np.argmax(p))
        if text and text[0] in classes and classes[k] != text[0] and float(p[k]) >= min_probability:
            text = classes[k] + text[1:]
        out.append(text)
    return out


class ProvinceReader:
    """A TFLite province classifier and its metadata: ``probabilities(views)`` and ``check(texts, views)``."""

    def __init__(self, model_path: Union[str, Path], num_threads: Optional[int] = None,
                 min_probability: Optional[float] = None) -> None:
        self._interp: Any = load_interpreter(model_path, num_threads)
        meta_path = metadata_path(model_path)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            classes = str(meta["classes"])
            threshold = float(meta["min_probability"]) if min_probability is None else float(min_probability)
        except FileNotFoundError:
            raise AlprError(f"province model {model_path} has no metadata file {meta_path.name} beside it") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AlprError(f"bad province model metadata {meta_path}: {exc}") from None
        if not classes or len(set(classes)) != len(classes):
            raise AlprError(f"bad province model metadata {meta_path}: classes must be distinct characters")
        if not 0.0 <= threshold <= 1.0:
            raise AlprError(f"province min_probability must lie in [0, 1], got {threshold}")
        self.classes = classes
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
