"""The plate reader of the edge runtime: one TFLite LPRNet, loaded once, reading a batch per call.

A model is either one graph (image -> logits) or, for int8 readers with a spatial transformer, two
signatures in one file (lprnet.export): ``locate`` (image -> theta minus the identity), then the
warp here in numpy (lprnet.preprocess.affine_warp, the STN sampler's geometry), then ``read``
(warped image -> logits).

TF-free: numpy, OpenCV and a TFLite interpreter (core.tflite_runtime). Usage::

    reader = PlateReader("reader.tflite", load_charset("kr"))
    reads = reader.read([crop1, crop2])   # BGR crops of any size -> [PlateRead, PlateRead]
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from core.errors import AlprError
from core.tflite_runtime import load_interpreter
from lprnet.charset import Charset, load_charset
from lprnet.ctc import DECODERS, decode
from lprnet.home import HomeRegion
from lprnet.preprocess import (
    IDENTITY_THETA,
    INPUT_HEIGHT,
    INPUT_WIDTH,
    PROVINCE_MIN_ROWS,
    TTA_ZOOMS,
    affine_warp,
    candidate_inputs,
    may_be_two_lines,
    normalize,
    province_view,
    shifted_stitches,
    stitch_sources,
    straightens,
    zoom,
)

# Two-stage STN readers (written by lprnet.export): signature names, their input and output names.
LOCATE_SIGNATURE = "locate"
READ_SIGNATURE = "read"
IMAGE_INPUT = "image"
THETA_OUTPUT = "theta_offset"  # locate's output: the STN's affine minus the identity
LOGITS_OUTPUT = "logits"
# A read that does not fit the plate format or is less confident than this is weak: worth another try
# (other line cuts here, a taller crop in core.plate_reading)
WEAK_CONFIDENCE = 0.5


@dataclass(frozen=True)
class PlateRead:
    """One plate: decoded text, CTC confidence in [0, 1], and whether the text fits the plate format."""

    text: str
    confidence: float
    valid: bool


EMPTY_READ = PlateRead("", 0.0, False)


def is_weak(read: Optional[PlateRead]) -> bool:
    return read is None or not read.valid or read.confidence < WEAK_CONFIDENCE


def better_read(a: PlateRead, b: Optional[PlateRead]) -> bool:
    """A format-valid read beats an invalid one; then the more confident read wins."""
    return b is None or (a.valid, a.confidence) > (b.valid, b.confidence)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis (float32), computed stably."""
    z = np.asarray(logits, np.float32)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def zoomed_logits(x: np.ndarray, logits_fn: Callable[[np.ndarray], np.ndarray], zooms: Sequence[float],
                  batch_size: int = 0) -> np.ndarray:
    """``x`` read as it is and zoomed by each of ``zooms`` (lprnet.preprocess.zoom): the frame-by-frame
    mean of the passes' log-probabilities [N,18,classes] (the plain logits when ``zooms`` is empty).
    All passes go to ``logits_fn`` in batches of ``batch_size`` (0: one call)."""
    passes = np.concatenate([x] + [zoom(x, s) for s in zooms]) if zooms else x
    step = batch_size if batch_size > 0 else max(1, len(passes))
    logits = np.concatenate([logits_fn(passes[i : i + step]) for i in range(0, len(passes), step)])
    if not zooms:
        return logits
    return log_softmax(logits).reshape(len(zooms) + 1, len(x), *logits.shape[1:]).mean(axis=0)


def read_crops(
    crops: Sequence[np.ndarray],
    logits_fn: Callable[[np.ndarray], np.ndarray],
    charset: Charset,
    decoder: str = DECODERS[0],
    beam_width: int = 8,
    batch_size: int = 0,
    tta: bool = True,
    retry_cuts: bool = True,
    province: Optional[Any] = None,
    home: Optional[HomeRegion] = None,
) -> List[PlateRead]:
    """BGR crops (any size) -> one PlateRead each, with any model behind ``logits_fn``
    (float32 [N,24,94,3] -> logits [N,18,classes]).

    Narrow crops are read as one-line and as stitched two-line plates (lprnet.preprocess) and the
    better read is kept. ``tta``: each input is also read zoomed in and out (``TTA_ZOOMS``, three model
    passes instead of one) and the passes' log-probabilities are averaged. ``retry_cuts``: a narrow crop
    whose read is weak (``is_weak``) is read again as two-line plates cut a little higher and lower
    (``lprnet.preprocess.shifted_stitches``), and the better read is kept. Two-line stitches are
    straightened first for the charsets that ``lprnet.preprocess.straightens``. Empty crops give ``EMPTY_READ``.
    ``batch_size`` 0: one call for everything. ``province``: a ``lprnet.province.ProvinceReader`` (or anything with
    its ``check``, ``applies(text, lines, confidence)``, ``shares`` and ``starts``), or a sequence of them run in
    order, that may replace a field of the read (the province (cn) or region (kr) it starts with, the letter after a
    Chinese two-line plate's province, the two digits after a Korean two-line plate's region, the Hangul letter
    after a Korean one-line plate's digits), from a view of the crop (its stitch source) by the line count of the
    input the read came from: one line, or two for a stitch, whose top line is cut at the usual cut even when the
    read came from a retried cut (``province_view``). ``home``: a ``lprnet.home.HomeRegion`` the reads lean to
    (``lean_logits``, after the passes are averaged, before decoding); the checks lean by their own ``home``.
    """
    out: List[Optional[PlateRead]] = [None] * len(crops)
    out_lines = [1] * len(crops)  # the line count of the input each crop's read came from
    usable = [i for i, c in enumerate(crops) if np.asarray(c).size > 0]

    def read_inputs(pick: Sequence[int], inputs: Callable[[Sequence[int]], Tuple[np.ndarray, ...]]) -> None:
        if not pick:
            return
        images, owners, lines = inputs(pick)
        if not len(images):
            return
        logits = zoomed_logits(normalize(images), logits_fn, TTA_ZOOMS if tta else (), batch_size)
        if home is not None:
            logits = home.lean_logits(logits, charset)
        results = decode(logits, decoder, blank=charset.blank, beam_width=beam_width, is_probs=False,
                         accept=lambda ids: charset.is_valid_format(charset.decode(ids)))
        for owner, n_lines, res in zip(owners, lines, results):
            text = charset.decode(res.ids)
            read = PlateRead(text, res.confidence, charset.is_valid_format(text))
            if better_read(read, out[pick[owner]]):
                out[pick[owner]] = read
                out_lines[pick[owner]] = int(n_lines)

    if usable:
        sources = dict(zip(usable, stitch_sources([crops[i] for i in usable], straightens(charset.name))))
        read_inputs(usable, lambda pick: candidate_inputs([crops[i] for i in pick], [sources[i] for i in pick]))
        if retry_cuts:
            read_inputs([i for i in usable if may_be_two_lines(crops[i]) and is_weak(out[i])],
                        lambda pick: _two_line_rows(*shifted_stitches([sources[i] for i in pick])))
        for check in as_checks(province):  # in order: the Korean digits check finds its digits after the region
            _check_provinces(out, out_lines, crops, sources, check, charset)
    return [r if r is not None else EMPTY_READ for r in out]


def as_checks(province: Any) -> Tuple[Any, ...]:
    """``read_crops``' ``province`` as a tuple of checks: None none, one check (it has ``check``) itself."""
    if province is None:
        return ()
    if hasattr(province, "check"):
        return (province,)
    return tuple(province)


def _two_line_rows(images: np.ndarray, owners: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``shifted_stitches``' rows with their line count, as ``candidate_inputs`` gives it: all two-line stitches."""
    return images, owners, np.full(len(images), 2, np.int64)


def _check_provinces(out: List[Optional[PlateRead]], out_lines: Sequence[int], crops: Sequence[np.ndarray],
                     sources: Dict[int, np.ndarray], province: Any, charset: Charset) -> None:
    """One of ``read_crops``' checks (province, letter, region, digits, hangul), in place: the field of each read by
    ``province.check``, for the reads that have it and came from an input of a line count it checks
    (``province.applies``; a check may also leave sure reads alone), of crops whose view has more rows to show than
    LPRNet's input (``PROVINCE_MIN_ROWS``), cut with ``province.shares`` and ``province.starts``."""
    pick, views = [], []
    for i, r in enumerate(out):
        if r is None or not province.applies(r.text, out_lines[i], r.confidence):  # an empty read has no field
            continue
        view = province_view(sources[i] if out_lines[i] == 2 else crops[i], out_lines[i], PROVINCE_MIN_ROWS,
                             province.shares, province.starts)
        if view is not None:
            pick.append(i)
            views.append(view)
    if not pick:
        return
    for i, text in zip(pick, province.check([out[i].text for i in pick], np.stack(views))):
        read = out[i]
        if text != read.text:
            out[i] = PlateRead(text, read.confidence, charset.is_valid_format(text))


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


# The most inputs one interpreter call takes (PlateReader.logits, ProvinceReader.probabilities): LiteRT crashed the
# process (a segmentation fault) in the int8 readers' ``read`` signature on one call of about 9,500 inputs or more
# (session 44: PlateReader.read on 2,000 crops with the test-time zoom made one call of 11,358; 1,600 crops, 9,042
# inputs, still read). Reads do not depend on the batch, and a frame's plates are far fewer.
MAX_BATCH = 256


def in_batches(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, size: int = MAX_BATCH) -> np.ndarray:
    """``fn`` over ``x`` in consecutive slices of at most ``size`` along the first axis, outputs concatenated in
    order (one call when ``x`` is no longer)."""
    if len(x) <= size:
        return fn(x)
    return np.concatenate([fn(x[i : i + size]) for i in range(0, len(x), size)])


class BatchGraph:
    """A one-input, one-output TFLite graph called on float32 batches of any size: the input is resized when
    the batch size changes, quantized on the way in, and the output dequantized on the way out."""

    def __init__(self, interp: Any, in_detail: dict, out_detail: dict) -> None:
        self._interp, self._in, self._out = interp, in_detail, out_detail
        self._batch = int(in_detail["shape"][0])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        n = int(batch.shape[0])
        if n != self._batch:
            self._interp.resize_tensor_input(self._in["index"], [n, *(int(s) for s in self._in["shape"][1:])])
            self._interp.allocate_tensors()
            self._batch = n
            self._out = self._interp.get_output_details()[0]
        self._interp.set_tensor(self._in["index"], _quantize(batch, self._in))
        self._interp.invoke()
        return _dequantize(self._interp.get_tensor(self._out["index"]), self._out)


def _signature_list(interp: Any) -> Dict[str, Any]:
    """The model's signatures (name -> {'inputs': [...], 'outputs': [...]}); {} where the interpreter
    has no signature API (old tflite_runtime)."""
    get = getattr(interp, "get_signature_list", None)
    if get is None:
        return {}
    try:
        return dict(get())
    except (ValueError, RuntimeError):
        return {}


def _check_image_input(model_path: Union[str, Path], detail: dict) -> Tuple[int, ...]:
    shape = tuple(int(s) for s in detail["shape"])
    if len(shape) != 4 or shape[1:] != (INPUT_HEIGHT, INPUT_WIDTH, 3):
        raise AlprError(f"{model_path}: input shape {shape} is not [N, {INPUT_HEIGHT}, {INPUT_WIDTH}, 3]")
    return shape


class PlateReader:
    """LPRNet TFLite reader. ``charset``: a Charset or a name/path for ``load_charset``. ``tta`` and
    ``retry_cuts``: see ``read_crops``; ``core.pipeline.Pipeline.open`` sets ``retry_cuts`` with the
    pipeline's taller-crop retry (``PipelineOptions.retry_weak_reads``), a reader built by hand does not.
    ``province``: ``lprnet.province.ProvinceReader`` checks of each read's province, letter, region, digits or
    Hangul letter, one or a sequence run in order (``read_crops``); kept as a tuple. ``home``: a
    ``lprnet.home.HomeRegion`` the reads lean to (give the checks the same one: ``core.pipeline.open_plate_reader``
    does)."""

    def __init__(
        self,
        model_path: Union[str, Path],
        charset: Union[Charset, str],
        num_threads: int | None = None,
        decoder: str = DECODERS[0],
        beam_width: int = 8,
        tta: bool = True,
        retry_cuts: bool = True,
        province: Optional[Any] = None,
        home: Optional[HomeRegion] = None,
    ) -> None:
        self.charset = charset if isinstance(charset, Charset) else load_charset(charset)
        self.province = as_checks(province)
        if home is not None:
            home.check_charset(self.charset)
        self.home = home
        self.decoder = decoder
        self.beam_width = beam_width
        self.tta = tta
        self.retry_cuts = retry_cuts
        self._interp: Any = load_interpreter(model_path, num_threads)
        self._stages: Optional[Tuple[Any, Any]] = None
        signatures = _signature_list(self._interp)
        if LOCATE_SIGNATURE in signatures and READ_SIGNATURE in signatures:
            self._init_two_stage(model_path, signatures)
            return
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise AlprError(f"{model_path}: expected one input and one output, got {len(inputs)}/{len(outputs)}")
        self._in = inputs[0]
        self._out = outputs[0]
        _check_image_input(model_path, self._in)
        self._check_logits(model_path, self._out)
        self._graph = BatchGraph(self._interp, self._in, self._out)

    def _check_logits(self, model_path: Union[str, Path], detail: dict) -> None:
        out_shape = tuple(int(s) for s in detail["shape"])
        if len(out_shape) != 3 or out_shape[2] != self.charset.num_classes:
            raise AlprError(
                f"{model_path}: output shape {out_shape} does not match charset "
                f"{self.charset.name!r} ({self.charset.num_classes} classes)"
            )

    def _init_two_stage(self, model_path: Union[str, Path], signatures: Dict[str, Any]) -> None:
        """``locate`` (image -> theta_offset [N,6]) and ``read`` (image -> logits)."""
        locate_io, read_io = signatures[LOCATE_SIGNATURE], signatures[READ_SIGNATURE]
        if list(locate_io.get("inputs", [])) != [IMAGE_INPUT] or list(locate_io.get("outputs", [])) != [THETA_OUTPUT] \
                or list(read_io.get("inputs", [])) != [IMAGE_INPUT] or len(read_io.get("outputs", [])) != 1:
            raise AlprError(f"{model_path}: signatures 'locate'/'read' do not have the inputs and outputs of a "
                            f"two-stage reader: {locate_io} / {read_io}")
        try:
            locate = self._interp.get_signature_runner(LOCATE_SIGNATURE)
            read = self._interp.get_signature_runner(READ_SIGNATURE)
            self._loc_in = locate.get_input_details()[IMAGE_INPUT]
            self._loc_out = locate.get_output_details()[THETA_OUTPUT]
            self._in = read.get_input_details()[IMAGE_INPUT]
            self._logits_name = list(read_io["outputs"])[0]
            self._out = read.get_output_details()[self._logits_name]
        except (ValueError, RuntimeError, KeyError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AlprError(f"cannot load TFLite model {model_path}: {first}") from None
        _check_image_input(model_path, self._loc_in)
        theta_shape = tuple(int(s) for s in self._loc_out["shape"])
        if len(theta_shape) != 2 or theta_shape[1] != 6:
            raise AlprError(f"{model_path}: 'locate' output shape {theta_shape} is not [N, 6]")
        _check_image_input(model_path, self._in)
        self._check_logits(model_path, self._out)
        self._stages = (locate, read)

    @property
    def input_dtype(self) -> Any:
        return self._loc_in["dtype"] if self._stages is not None else self._in["dtype"]

    @property
    def two_stage(self) -> bool:
        """True for a ``locate`` + ``read`` model (the STN's warp done here, see the module docstring)."""
        return self._stages is not None

    def theta(self, batch: np.ndarray) -> np.ndarray:
        """Two-stage models: pre-processed float32 [N,24,94,3] -> the STN's affines [N,6] (row-major 2x3)."""
        if self._stages is None:
            raise AlprError("theta() needs a two-stage (locate + read) reader model")
        out = self._stages[0](**{IMAGE_INPUT: _quantize(batch, self._loc_in)})[THETA_OUTPUT]
        return _dequantize(np.asarray(out), self._loc_out) + IDENTITY_THETA

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Pre-processed float32 [N,24,94,3] -> float32 logits [N,18,classes]: one interpreter call, or for
        a two-stage model ``locate``, the warp, ``read``; in calls of at most ``MAX_BATCH`` (``in_batches``)."""
        return in_batches(self._logits, batch)

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        if self._stages is not None:
            warped = affine_warp(batch, self.theta(batch))
            out = self._stages[1](**{IMAGE_INPUT: _quantize(warped, self._in)})[self._logits_name]
            return _dequantize(np.asarray(out), self._out)
        return self._graph(batch)

    def read(self, crops: Sequence[np.ndarray]) -> List[PlateRead]:
        """BGR crops (any size) -> one PlateRead each, in order; all in one batch (see read_crops).

        An empty crop (zero width or height, e.g. a box clipped away at the image edge) gives
        ``PlateRead("", 0.0, False)`` instead of failing the whole batch.
        """
        return read_crops(crops, self.logits, self.charset, self.decoder, self.beam_width, tta=self.tta,
                          retry_cuts=self.retry_cuts, province=self.province, home=self.home)
