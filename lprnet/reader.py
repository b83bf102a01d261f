"""The plate reader of the edge runtime: one TFLite LPRNet, loaded once, reading a batch per call.

TF-free: numpy, OpenCV and a TFLite interpreter (core.tflite_runtime). Usage::

    reader = PlateReader("reader.tflite", load_charset("kr"))
    reads = reader.read([crop1, crop2])   # BGR crops of any size -> [PlateRead, PlateRead]
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Sequence, Union

import numpy as np

from core.errors import AlprError
from core.tflite_runtime import load_interpreter
from lprnet.charset import Charset, load_charset
from lprnet.ctc import decode
from lprnet.preprocess import INPUT_HEIGHT, INPUT_WIDTH, preprocess_batch


@dataclass(frozen=True)
class PlateRead:
    """One plate: decoded text, CTC confidence in [0, 1], and whether the text fits the plate format."""

    text: str
    confidence: float
    valid: bool


EMPTY_READ = PlateRead("", 0.0, False)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    if not scale:
        raise AlprError(f"quantized input tensor of type {np.dtype(dtype).name} has no scale")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if x.dtype in (np.float32, np.float16, np.float64):
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    if not scale:
        raise AlprError(f"quantized output tensor of type {x.dtype.name} has no scale")
    return (x.astype(np.float32) - zero) * scale


class PlateReader:
    """LPRNet TFLite reader. ``charset``: a Charset or a name/path for ``load_charset``."""

    def __init__(
        self,
        model_path: Union[str, Path],
        charset: Union[Charset, str],
        num_threads: int | None = None,
        decoder: str = "greedy",
        beam_width: int = 8,
    ) -> None:
        self.charset = charset if isinstance(charset, Charset) else load_charset(charset)
        self.decoder = decoder
        self.beam_width = beam_width
        self._interp: Any = load_interpreter(model_path, num_threads)
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise AlprError(f"{model_path}: expected one input and one output, got {len(inputs)}/{len(outputs)}")
        self._in = inputs[0]
        self._out = outputs[0]
        shape = tuple(int(s) for s in self._in["shape"])
        if len(shape) != 4 or shape[1:] != (INPUT_HEIGHT, INPUT_WIDTH, 3):
            raise AlprError(f"{model_path}: input shape {shape} is not [N, {INPUT_HEIGHT}, {INPUT_WIDTH}, 3]")
        out_shape = tuple(int(s) for s in self._out["shape"])
        if len(out_shape) != 3 or out_shape[2] != self.charset.num_classes:
            raise AlprError(
                f"{model_path}: output shape {out_shape} does not match charset "
                f"{self.charset.name!r} ({self.charset.num_classes} classes)"
            )
        self._batch = shape[0]

    @property
    def input_dtype(self) -> Any:
        return self._in["dtype"]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Pre-processed float32 [N,24,94,3] -> float32 logits [N,18,classes], one interpreter call."""
        n = int(batch.shape[0])
        if n != self._batch:
            self._interp.resize_tensor_input(self._in["index"], [n, INPUT_HEIGHT, INPUT_WIDTH, 3])
            self._interp.allocate_tensors()
            self._batch = n
            self._out = self._interp.get_output_details()[0]
        self._interp.set_tensor(self._in["index"], _quantize(batch, self._in))
        self._interp.invoke()
        return _dequantize(self._interp.get_tensor(self._out["index"]), self._out)

    def read(self, crops: Sequence[np.ndarray]) -> List[PlateRead]:
        """BGR crops (any size) -> one PlateRead each, in order; all in one batch.

        An empty crop (zero width or height, e.g. a box clipped away at the image edge) gives
        ``PlateRead("", 0.0, False)`` instead of failing the whole batch.
        """
        if len(crops) == 0:
            return []
        usable = [i for i, c in enumerate(crops) if np.asarray(c).size > 0]
        out = [EMPTY_READ] * len(crops)
        if not usable:
            return out
        scores = self.logits(preprocess_batch([crops[i] for i in usable]))
        results = decode(scores, self.decoder, blank=self.charset.blank, beam_width=self.beam_width,
                         is_probs=False)
        for i, res in zip(usable, results):
            text = self.charset.decode(res.ids)
            out[i] = PlateRead(text, res.confidence, self.charset.is_valid_format(text))
        return out
