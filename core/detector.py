"""The detector of the edge runtime: one interface over a TFLite model and a TF SavedModel.

``Detector.open(path)`` picks the backend from the path (a ``.tflite`` file or a SavedModel folder)
and reads the ModelInfo sidecar (class names, input size, anchors, default score threshold). The
TFLite backend needs only numpy, OpenCV and a TFLite interpreter; TensorFlow is imported inside the
SavedModel backend alone, when such a model is opened.

``detect(bgr)``: letterbox once (``core.yolo``), run the model, decode the yolo heads in numpy
(raw models) or take the decoded boxes/scores, filter by score, per-class NMS, and map the boxes
back to the original image's pixels. Quantized (int8/uint8) inputs and outputs are handled with the
tensors' scale and zero point; the stage timings of the last call are in ``last_timings``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.errors import AlprError
from core.model_info import OUTPUT_DECODED, OUTPUT_RAW, ModelInfo, load_model_info, read_class_names, sidecar_for
from core.types import Detection
from core.yolo import Letterbox, decode_heads, filter_and_nms, letterbox_image, undo_letterbox

DEFAULT_SCORE_THRESHOLD = 0.25


@dataclass(frozen=True)
class StageTimings:
    """Milliseconds spent in each stage of one ``detect`` call."""

    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float  # decode + score filter + NMS + undo letterbox

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


@dataclass(frozen=True)
class _Quant:
    scale: float
    zero_point: int
    dtype: Any

    @property
    def is_quantized(self) -> bool:
        return np.dtype(self.dtype) in (np.dtype(np.int8), np.dtype(np.uint8))


def _quant_of(detail: Dict[str, Any]) -> _Quant:
    scale, zp = detail.get("quantization", (0.0, 0))
    return _Quant(float(scale), int(zp), np.dtype(detail["dtype"]))


# ----------------------------------------------------------------------------- backends
class TFLiteBackend:
    """A TFLite interpreter with the model's tensors resolved once."""

    kind = "tflite"

    def __init__(self, path: Path, info: ModelInfo, num_threads: Optional[int] = None):
        from core.tflite_runtime import load_interpreter

        self.interpreter = load_interpreter(path, num_threads)
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise AlprError(f"{path}: expected one input tensor, the model has {len(inputs)}")
        self._in = self.input_detail = inputs[0]
        self.input_quant = _quant_of(self._in)
        w, h = info.input_size
        shape = tuple(int(s) for s in self._in["shape"])
        if shape != (1, h, w, 3):
            raise AlprError(f"{path}: input shape {list(shape)} does not match the metadata's 1x{h}x{w}x3")
        self.outputs = _name_outputs(self.interpreter, info, path)  # name -> detail
        self.output_quant = {k: _quant_of(d) for k, d in self.outputs.items()}

    def input_from_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 [H,W,3] -> the model's input tensor [1,H,W,3] (float in [0,1] or quantized)."""
        q = self.input_quant
        if not q.is_quantized:
            x = np.empty((1,) + rgb.shape, np.float32)
            np.multiply(rgb, np.float32(1.0 / 255.0), out=x[0], casting="unsafe")
            return x.astype(q.dtype, copy=False)
        # Calibrated on [0,1] images the input is almost always scale 1/255 with zero point 0 (uint8)
        # or -128 (int8): then the pixels are the quantized values and no arithmetic is needed.
        if abs(q.scale * 255.0 - 1.0) < 1e-4:
            if q.dtype == np.uint8 and q.zero_point == 0:
                return rgb[None]
            if q.dtype == np.int8 and q.zero_point == -128:
                return np.bitwise_xor(rgb, np.uint8(0x80)).view(np.int8)[None]
        return self.quantize_input(rgb.astype(np.float32) * np.float32(1.0 / 255.0))[None]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        q = self.input_quant
        if not q.is_quantized:
            return x.astype(q.dtype, copy=False)
        info = np.iinfo(q.dtype)
        return np.clip(np.round(x / q.scale + q.zero_point), info.min, info.max).astype(q.dtype)

    def run(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """Invoke on a prepared input tensor; outputs dequantized to float32, batch dim kept."""
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        out = {}
        for name, d in self.outputs.items():
            t = self.interpreter.get_tensor(d["index"])
            q = self.output_quant[name]
            if q.is_quantized:
                t = (t.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)
            out[name] = t
        return out


def _name_outputs(interp: Any, info: ModelInfo, path: Path) -> Dict[str, Dict[str, Any]]:
    """Map output names (``head_i`` or ``boxes``/``scores``) to tensor details, checking their shapes."""
    details = interp.get_output_details()
    by_index = {d["index"]: d for d in details}
    named: Dict[str, Dict[str, Any]] = {}
    try:
        runner = interp.get_signature_runner()
        for name, d in runner.get_output_details().items():
            if d["index"] in by_index:
                named[name] = by_index[d["index"]]
    except (ValueError, KeyError, AttributeError, RuntimeError):
        named = {}
    expected = _expected_shapes(info)
    if set(named) != set(expected):  # no usable signature: match by shape
        named = {}
        free = list(details)
        for name, shape in expected.items():
            hit = next((d for d in free if _shape_matches(d["shape"], shape)), None)
            if hit is None:
                break
            named[name] = hit
            free.remove(hit)
    if set(named) != set(expected):
        got = ", ".join(str([int(s) for s in d["shape"]]) for d in details)
        raise AlprError(f"{path}: outputs {got} do not match the metadata ({_expected_text(info)}); "
                        f"the class file or the sidecar does not belong to this model")
    for name, shape in expected.items():
        if not _shape_matches(named[name]["shape"], shape):
            got = [int(s) for s in named[name]["shape"]]
            raise AlprError(f"{path}: output {name} has shape {got}, which does not match the metadata "
                            f"({_expected_text(info)}); "
                            f"the class file or the sidecar does not belong to this model")
    return {k: named[k] for k in expected}


def _expected_shapes(info: ModelInfo) -> Dict[str, Tuple[Optional[int], ...]]:
    c = info.num_classes
    if info.output == OUTPUT_RAW:
        return {f"head_{i}": (1, h.grid[0], h.grid[1], len(h.anchors) * (5 + c)) for i, h in enumerate(info.heads)}
    n = info.num_candidates
    return {"boxes": (1, n, 4), "scores": (1, n, c)}


def _expected_text(info: ModelInfo) -> str:
    shapes = _expected_shapes(info)
    return f"{info.num_classes} classes: " + ", ".join(f"{k} {list(v)}" for k, v in shapes.items())


def _shape_matches(shape: Sequence[int], expected: Sequence[Optional[int]]) -> bool:
    shape = [int(s) for s in shape]
    return len(shape) == len(expected) and all(e is None or s == e or (i == 0 and s in (-1, 1))
                                               for i, (s, e) in enumerate(zip(shape, expected)))


class SavedModelBackend:
    """A SavedModel's ``serving_default``; TensorFlow is imported here and nowhere else in core/."""

    kind = "saved_model"

    def __init__(self, path: Path, info: ModelInfo, num_threads: Optional[int] = None):
        try:
            import tensorflow as tf
        except ImportError:
            raise AlprError(f"{path} is a SavedModel, which needs TensorFlow: install it or use a .tflite model "
                            f"(convert_tflite.py)") from None
        if num_threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(num_threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                pass  # TF already initialised its thread pools in this process
        self._tf = tf
        try:
            self._fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        except (OSError, ValueError, KeyError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AlprError(f"cannot load SavedModel {path}: {msg}") from None
        self.input_quant = _Quant(0.0, 0, np.dtype(np.float32))
        got = {k: tuple(v.shape.as_list()) for k, v in self._fn.structured_outputs.items()}
        expected = _expected_shapes(info)
        if set(got) != set(expected) or not all(_shape_matches([-1 if s is None else s for s in got[k]],
                                                               expected[k]) for k in expected):
            raise AlprError(f"{path}: outputs {got} do not match the metadata ({_expected_text(info)})")

    def input_from_rgb(self, rgb: np.ndarray) -> np.ndarray:
        return (rgb.astype(np.float32) * np.float32(1.0 / 255.0))[None]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32, copy=False)

    def run(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._fn(images=self._tf.constant(x)).items()}


# ----------------------------------------------------------------------------- detector
class Detector:
    """Darknet-style YOLO detector over a TFLite or SavedModel backend."""

    # (box, class) pairs above the score threshold kept for NMS, the best first; bounds the NMS time of
    # a badly trained or random-weight model whose every anchor scores high.
    max_candidates = 3000

    def __init__(self, backend: Any, info: ModelInfo, path: Optional[Path] = None):
        self.backend = backend
        self.info = info
        self.path = path
        self.last_timings: Optional[StageTimings] = None

    @classmethod
    def open(cls, path: str | Path, num_threads: Optional[int] = None,
             class_names: Optional[Sequence[str] | str | Path] = None) -> Detector:
        """Open a ``.tflite`` file or a SavedModel folder with its sidecar metadata.

        ``class_names`` (a sequence or a names file) replaces the stored names; its length must
        match the model's outputs.
        """
        path = Path(path)
        if not path.exists():
            raise AlprError(f"model not found: {path}")
        if path.is_file():
            try:
                with open(path, "rb") as f:
                    head = f.read(8)
            except OSError as exc:
                raise AlprError(f"cannot read model {path}: {exc.strerror or exc}") from None
            if len(head) < 8 or head[4:8] != b"TFL3":  # the FlatBuffer identifier of a TFLite model
                raise AlprError(f"not a TFLite model (no TFL3 identifier): {path}; a SavedModel is a folder")
        info = load_model_info(path)
        if info is None:
            raise AlprError(f"{path} has no metadata file {sidecar_for(path).name} beside it: convert it with "
                            f"save_model.py / convert_tflite.py, which write it")
        if class_names is not None:
            names = read_class_names(class_names) if isinstance(class_names, (str, Path)) else tuple(class_names)
            info = info.with_class_names(names)
        if info.output not in (OUTPUT_RAW, OUTPUT_DECODED):
            raise AlprError(f"{path}: unknown output kind {info.output!r} in its metadata")
        if path.is_dir():
            if not (path / "saved_model.pb").is_file():
                raise AlprError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
            backend: Any = SavedModelBackend(path, info, num_threads)
        else:
            backend = TFLiteBackend(path, info, num_threads)
        return cls(backend, info, path)

    @property
    def class_names(self) -> Tuple[str, ...]:
        return self.info.class_names

    @property
    def input_size(self) -> Tuple[int, int]:
        return tuple(self.info.input_size)

    @property
    def default_score_threshold(self) -> float:
        return float(self.info.source.get("score_threshold", DEFAULT_SCORE_THRESHOLD))

    @property
    def quantization(self) -> str:
        return str(self.info.source.get("quantization", {}).get("quantize_mode", "float32"))

    # -- stages, public so tests and benchmarks can run them apart
    def preprocess(self, bgr: np.ndarray) -> Tuple[np.ndarray, Letterbox]:
        _check_image(bgr)
        w, h = self.info.input_size
        rgb, lb = letterbox_image(bgr, w, h, self.info.letterbox)
        return self.backend.input_from_rgb(rgb), lb

    def infer(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        return self.backend.run(x)

    def run_float(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """Outputs (dequantized) for a float [1,H,W,3] input in [0,1], quantizing it if the model wants."""
        return self.backend.run(self.backend.quantize_input(np.asarray(x, np.float32)))

    def candidates(self, outputs: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """Boxes [N,4] (x1,y1,x2,y2 fractions of the input) and scores [N,C] of every candidate."""
        w, h = self.info.input_size
        if self.info.output == OUTPUT_RAW:
            raws = [outputs[f"head_{i}"][0] for i in range(len(self.info.heads))]
            return decode_heads(raws, self.info.heads, self.info.num_classes, w, h)
        return outputs["boxes"][0], outputs["scores"][0]

    def candidates_above(self, outputs: Dict[str, np.ndarray], score_threshold: float
                         ) -> Tuple[np.ndarray, np.ndarray]:
        """Like ``candidates`` but only those that can reach ``score_threshold``, at most
        ``max_candidates`` (box, class) pairs, the best kept: what NMS needs, decoded cheaply.

        score = objectness x class probability <= objectness, so a raw head is decoded only at the
        cells and anchors whose objectness reaches the threshold (the class sigmoids, 80 per anchor
        for COCO, are the bulk of the work otherwise).
        """
        if self.info.output == OUTPUT_RAW:
            w, h = self.info.input_size
            raws = [outputs[f"head_{i}"][0] for i in range(len(self.info.heads))]
            boxes, scores = decode_heads(raws, self.info.heads, self.info.num_classes, w, h,
                                         min_objectness=score_threshold)
        else:
            boxes, scores = outputs["boxes"][0], outputs["scores"][0]
            keep = scores.max(axis=1) >= score_threshold
            boxes, scores = boxes[keep], scores[keep]
        return _cap_pairs(boxes, scores, score_threshold, self.max_candidates)

    def postprocess(self, outputs: Dict[str, np.ndarray], lb: Letterbox, score_threshold: float,
                    iou_threshold: float) -> List[Detection]:
        w, h = self.info.input_size
        boxes, scores = self.candidates_above(outputs, score_threshold)
        boxes, scores, classes = filter_and_nms(boxes, scores, score_threshold, iou_threshold)
        boxes = undo_letterbox(boxes, lb, w, h)
        names = self.info.class_names
        return [Detection(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), score=float(s),
                          class_id=int(c), class_name=names[int(c)])
                for b, s, c in zip(boxes, scores, classes)]

    def detect(self, bgr: np.ndarray, score_threshold: Optional[float] = None,
               iou_threshold: float = 0.45) -> List[Detection]:
        """Detections in ``bgr``'s pixels, best first; ``score_threshold`` defaults to the model's."""
        thr = self.default_score_threshold if score_threshold is None else float(score_threshold)
        if not 0.0 <= thr <= 1.0 or not 0.0 <= iou_threshold <= 1.0:
            raise AlprError(f"score and IoU thresholds must lie in [0, 1] (got {thr}, {iou_threshold})")
        t0 = time.perf_counter()
        x, lb = self.preprocess(bgr)
        t1 = time.perf_counter()
        outputs = self.infer(x)
        t2 = time.perf_counter()
        dets = self.postprocess(outputs, lb, thr, iou_threshold)
        t3 = time.perf_counter()
        self.last_timings = StageTimings((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
        return dets

    def detect_file(self, path: str | Path, score_threshold: Optional[float] = None,
                    iou_threshold: float = 0.45) -> List[Detection]:
        from core.images import read_image

        return self.detect(read_image(path), score_threshold, iou_threshold)


def _cap_pairs(boxes: np.ndarray, scores: np.ndarray, thr: float, cap: int) -> Tuple[np.ndarray, np.ndarray]:
    """Keep the ``cap`` best (box, class) pairs scoring >= ``thr``; the others' scores become -1."""
    idx, cls = np.nonzero(scores >= thr)
    if idx.size <= cap:
        return boxes, scores
    s = scores[idx, cls]
    top = np.argpartition(-s, cap - 1)[:cap]
    rows, inv = np.unique(idx[top], return_inverse=True)
    sub = np.full((rows.size, scores.shape[1]), -1.0, scores.dtype)
    sub[inv, cls[top]] = s[top]
    return boxes[rows], sub


def _check_image(bgr: Any) -> None:
    if bgr is None:
        raise AlprError("no image (None): it could not be decoded")
    if not isinstance(bgr, np.ndarray) or bgr.size == 0 or bgr.ndim not in (2, 3) or \
            (bgr.ndim == 3 and bgr.shape[2] not in (3, 4)):
        shape = getattr(bgr, "shape", None)
        raise AlprError(f"not an image: expected a BGR array [H, W, 3], got {type(bgr).__name__} {shape}")
    if bgr.dtype != np.uint8:
        raise AlprError(f"expected a uint8 image, got {bgr.dtype}")
