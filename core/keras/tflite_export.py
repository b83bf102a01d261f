"""SavedModel (from ``save_model.py``) -> TFLite: float32, float16, or full-integer int8.

int8 is full-integer: the converter may only use ``TFLITE_BUILTINS_INT8`` (no Select-TF ops, no
float fallback), so a graph that cannot be quantized fails here with a clear error instead of
silently producing a float model. Calibration images go through the same letterbox pre-processing
as the edge runtime (``core.yolo``). The model's input/output types are a choice (``io_type``):
``float`` keeps float32 tensors at the boundary (the converter adds QUANTIZE/DEQUANTIZE ops),
``int8``/``uint8`` make them integer; ``core.detector`` handles all of them through the tensors'
quantization parameters.

int8 needs the raw-heads graph (``save_model.py --framework tflite``): decoding (exp, sigmoid,
box arithmetic) in int8 would lose the box precision, and the runtime decodes in numpy anyway.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from core.errors import AlprError
from core.images import IMAGE_EXTENSIONS, expand_image_args, read_image, read_image_list
from core.keras.quantize import quantize_with_percentile_ranges
from core.model_info import OUTPUT_RAW, ModelInfo, load_model_info, save_model_info
from core.yolo import letterbox_image, to_input_tensor

QUANTIZE_MODES = ("float32", "float16", "int8")
IO_TYPES = ("float", "int8", "uint8")
SIGNATURE = "serving_default"
# int8 raw heads are clamped to >= -8 before quantization. A head's channels (tx, ty, tw, th, objectness,
# class logits) share one per-tensor int8 scale, and the class logits reach about -30, which makes the
# step about 0.15 and costs box precision (exp(tw) moves by ~8%). Below -8 nothing changes what the
# detector reports: sigmoid(-8) = 3.4e-4 caps the score, sigmoid(tx) is 0 within 3.4e-4 of a cell, and
# exp(-8) makes a box 3.4e-4 of its anchor. The clamp roughly halves the output step.
INT8_LOGIT_FLOOR = -8.0
# int8 activation ranges: this percentile of each activation's calibration values (both tails) rather
# than min/max (see core.keras.quantize). On Yolo-Fastest with three calibration samples of
# the shared photos, 99.99 kept 4/4, 3/4, 4/4 of the float32 detections at score 0.25 (min/max: the same)
# and 8, 8, 9 of 11 at score 0.1 (min/max: 8, 5, 8), and moved car AP on generated scenes less.
INT8_RANGE_PERCENTILE: Optional[float] = 99.99


@dataclass
class ExportReport:
    """What was written and how its boundary tensors look."""

    path: Path
    quantize_mode: str
    size_bytes: int
    inputs: List[str] = field(default_factory=list)  # "images: int8 [1,416,416,3] scale=0.00392 zp=-128"
    outputs: List[str] = field(default_factory=list)
    calibration_images: int = 0
    skipped_images: List[str] = field(default_factory=list)  # "path: reason"
    max_abs_diff: Optional[Dict[str, float]] = None  # TFLite vs SavedModel, dequantized

    def describe(self) -> str:
        lines = [f"wrote {self.path} ({self.quantize_mode}, {self.size_bytes / 1e6:.2f} MB)"]
        lines += [f"  input  {s}" for s in self.inputs]
        lines += [f"  output {s}" for s in self.outputs]
        if self.quantize_mode == "int8":
            lines.append(f"  calibrated on {self.calibration_images} images"
                         + (f" ({len(self.skipped_images)} unreadable, skipped)" if self.skipped_images else ""))
        for s in self.skipped_images:
            lines.append(f"  skipped {s}")
        if self.max_abs_diff is not None:
            diffs = ", ".join(f"{k} {v:.3g}" for k, v in sorted(self.max_abs_diff.items()))
            what = "calibration image" if self.quantize_mode == "int8" else "smooth random image"
            lines.append(f"  checked on a {what}: max |TFLite - SavedModel| = {diffs}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- calibration images
def calibration_paths(dataset: Optional[str | os.PathLike | Sequence[str]], flag: str = "--dataset") -> List[str]:
    """``dataset`` as a folder, a glob, a list file (one image path per line) or a list of those; ``flag``
    names the option it came from in errors."""
    if dataset is None or (isinstance(dataset, str) and not dataset.strip()):
        raise AlprError(f"int8 quantization needs calibration images: pass {flag} (a folder, a glob or a "
                        "list file of images)")
    args = [os.fspath(dataset)] if isinstance(dataset, (str, os.PathLike)) else [os.fspath(d) for d in dataset]
    paths: List[str] = []
    for arg in args:
        p = Path(arg)
        if p.is_file() and p.suffix.lower() not in IMAGE_EXTENSIONS:
            # an entry found nowhere stays in: reading it skips and reports it, as for a broken image
            paths.extend(str(path) for _, path in read_image_list(p))
        else:
            found = expand_image_args([arg])
            if found.missing:
                raise AlprError(f"calibration dataset not found: {arg}")
            paths.extend(found.images)
    if not paths:
        raise AlprError(f"the calibration dataset {', '.join(args)} holds no images")
    return paths


def load_calibration_tensors(paths: Sequence[str], info: ModelInfo, count: int, seed: int = 0
                             ) -> Tuple[List[np.ndarray], List[str]]:
    """Up to ``count`` images (a seeded sample when there are more) as float32 [1,H,W,3] inputs."""
    if count < 1:
        raise AlprError(f"--calib_count must be at least 1 (got {count})")
    order = list(paths)
    if len(order) > count:
        random.Random(seed).shuffle(order)
    w, h = info.input_size
    tensors: List[np.ndarray] = []
    skipped: List[str] = []
    for p in order:
        if len(tensors) >= count:
            break
        try:
            bgr = read_image(p)
        except AlprError as exc:
            skipped.append(f"{p}: {exc}")
            continue
        rgb, _ = letterbox_image(bgr, w, h, info.letterbox)
        tensors.append(to_input_tensor(rgb))
    if not tensors:
        raise AlprError(f"none of the {len(order)} calibration images could be read (first: {skipped[0]})")
    return tensors, skipped


def write_augmented_images(sources: Sequence[str], out_dir: str | os.PathLike, count: int, seed: int = 0,
                           colour_jitter: float = 0.1) -> List[str]:
    """``count`` JPEGs made from ``sources`` by random crops, flips, scale and colour jitter.

    For calibrating on a handful of photos (e.g. ../shared/data/scenes): the crops widen the range
    of object sizes and exposures the quantizer sees. Written into ``out_dir`` (a temp folder).
    """
    import cv2

    images = [read_image(p) for p in sources]
    if not images:
        raise AlprError("no source images to augment")
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        frac = rng.uniform(0.35, 1.0)
        cw, ch = max(16, int(w * frac * rng.uniform(0.8, 1.2))), max(16, int(h * frac))
        cw, ch = min(cw, w), min(ch, h)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img[y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        gain, bias = rng.uniform(1 - colour_jitter, 1 + colour_jitter), rng.uniform(-1, 1) * 50 * colour_jitter
        crop = np.clip(crop.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        path = out / f"aug_{i:04d}.jpg"
        cv2.imwrite(str(path), crop)
        paths.append(str(path))
    return paths


# ----------------------------------------------------------------------------- conversion
def _tf():
    import tensorflow as tf

    return tf


def _converter(saved_model_dir: Path, info: ModelInfo, logit_floor: Optional[float] = None,
               logit_ceiling: Optional[float] = None):
    """A converter over the serving signature with a static batch of 1 (static shapes suit XNNPACK)."""
    tf = _tf()
    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
    except (OSError, ValueError) as exc:
        raise AlprError(f"cannot load SavedModel {saved_model_dir}: {str(exc).splitlines()[0]}") from None
    if SIGNATURE not in loaded.signatures:
        raise AlprError(f"SavedModel {saved_model_dir} has no '{SIGNATURE}' signature")
    sig = loaded.signatures[SIGNATURE]
    w, h = info.input_size

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="images")])
    def serve(images):
        outs = sig(images=images)
        if logit_floor is None:
            return outs
        if logit_ceiling is not None:
            # relu6((x - floor) * g) / g + floor clamps to [floor, ceiling]: the shift and the gain fold
            # into the conv and the relu6 fuses with it, so the conv's int8 output spans only that range
            g = 6.0 / (logit_ceiling - logit_floor)
            return {k: tf.nn.relu6((v - logit_floor) * g) / g + logit_floor for k, v in outs.items()}
        # relu(x - floor) + floor: the converter folds the shift into the conv bias and fuses the relu,
        # so the head conv's int8 output only spans [floor, max] instead of down to about -30.
        return {k: tf.nn.relu(v - logit_floor) + logit_floor for k, v in outs.items()}

    concrete = serve.get_concrete_function()
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], loaded), loaded


def convert_saved_model(saved_model_dir: str | os.PathLike, output: str | os.PathLike,
                        quantize_mode: str = "float32", dataset=None, calib_count: int = 100,
                        input_size: Optional[int] = None, io_type: str = "int8", verify: bool = True,
                        seed: int = 0, progress: Optional[Callable[[Iterator], Iterator]] = None,
                        int8_logit_floor: Optional[float] = INT8_LOGIT_FLOOR,
                        range_percentile: Optional[float] = INT8_RANGE_PERCENTILE,
                        int8_logit_ceiling: Optional[float] = None) -> ExportReport:
    """Convert a SavedModel written by ``save_model.py`` and write ``output`` + its ModelInfo sidecar.

    ``io_type`` only matters for int8 (float32/float16 models keep float tensors). ``progress`` may
    wrap the calibration iterator (e.g. tqdm). ``int8_logit_floor`` clamps the raw heads from below
    in int8 models (see ``INT8_LOGIT_FLOOR``); None keeps them unclamped. ``int8_logit_ceiling`` (with a
    floor) clamps them from above too: a score of sigmoid(12) is 1 to 6e-6, and the heads' largest
    logits otherwise set the output step. ``range_percentile``: the
    int8 range of each inner activation is that percentile of its calibration values (both tails)
    instead of the extreme min/max; None: min/max, the converter's own calibration (always so unless
    ``io_type='int8'``).
    """
    if range_percentile is not None and not 50.0 < range_percentile <= 100.0:
        raise AlprError(f"range percentile must lie in (50, 100] (got {range_percentile})")
    if io_type != "int8":
        range_percentile = None  # the MLIR quantizer run on its own gives int8 boundaries only
    if quantize_mode not in QUANTIZE_MODES:
        raise AlprError(f"unknown quantize mode {quantize_mode!r}: one of {', '.join(QUANTIZE_MODES)}")
    if io_type not in IO_TYPES:
        raise AlprError(f"unknown input/output type {io_type!r}: one of {', '.join(IO_TYPES)}")
    src = Path(saved_model_dir)
    if not (src / "saved_model.pb").is_file():
        raise AlprError(f"not a SavedModel folder (no saved_model.pb): {src}")
    info = load_model_info(src)
    if info is None:
        raise AlprError(f"{src} has no alpr_model.json: export it with save_model.py")
    if input_size and tuple(info.input_size) != (input_size, input_size):
        raise AlprError(f"--input_size {input_size} differs from the SavedModel's input {info.input_size[0]}x"
                        f"{info.input_size[1]}: re-export it with save_model.py --input_size {input_size}")
    if quantize_mode == "int8" and info.output != OUTPUT_RAW:
        raise AlprError("full-integer int8 needs the raw-heads graph: export the SavedModel with "
                        "save_model.py --framework tflite")

    calib: List[np.ndarray] = []
    skipped: List[str] = []
    if quantize_mode == "int8":  # read the images before the slow TF work, so a bad set fails fast
        calib, skipped = load_calibration_tensors(calibration_paths(dataset), info, calib_count, seed)

    tf = _tf()
    floor = int8_logit_floor if quantize_mode == "int8" and int8_logit_floor is not None else None
    ceiling = int8_logit_ceiling if floor is not None else None
    if ceiling is not None and ceiling <= floor:
        raise AlprError(f"logit ceiling {ceiling:g} must lie above the floor {floor:g}")
    converter, _keep = _converter(src, info, floor, ceiling)
    if quantize_mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize_mode == "int8":
        def representative() -> Iterator[List[np.ndarray]]:
            it = iter(calib)
            for x in (progress(it) if progress else it):
                yield [x]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        dtype = {"float": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[io_type]
        if range_percentile is None:
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
        else:
            converter._experimental_calibrate_only = True
    try:
        flatbuffer = converter.convert()
        if quantize_mode == "int8" and range_percentile is not None:
            flatbuffer = quantize_with_percentile_ranges(flatbuffer, calib, range_percentile, seed=seed)
    except AlprError:
        raise
    except Exception as exc:  # the converter raises ConverterError / ValueError / RuntimeError
        first = next((ln.strip() for ln in str(exc).splitlines() if "error" in ln.lower()), None)
        first = first or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AlprError(f"TFLite {quantize_mode} conversion failed: {first}") from None

    from core.cli import atomic_path

    out = Path(output)
    with atomic_path(out, suffix=".tflite") as tmp:
        tmp.write_bytes(flatbuffer)
    quant = {"quantize_mode": quantize_mode, "converted_from": src.name, "tensorflow": tf.__version__}
    if quantize_mode == "int8":
        quant.update(io_type=io_type, calibration_images=len(calib), ops="TFLITE_BUILTINS_INT8",
                     head_logit_floor=floor, head_logit_ceiling=ceiling, activation_ranges=(
                         "min/max" if range_percentile is None else f"percentile {range_percentile:g}"))
    sidecar = ModelInfo(info.input_size, info.class_names, info.heads, info.output, info.letterbox,
                        dict(info.source, quantization=quant))
    save_model_info(out, sidecar)

    report = ExportReport(path=out, quantize_mode=quantize_mode, size_bytes=len(flatbuffer),
                          calibration_images=len(calib), skipped_images=skipped)
    from core.detector import Detector

    backend = Detector.open(out).backend
    report.inputs = [describe_tensor(backend.input_detail, "images")]
    report.outputs = [describe_tensor(d, name) for name, d in backend.outputs.items()]
    if verify:
        x = calib[0] if calib else _verification_input(info, seed)
        report.max_abs_diff = compare_with_saved_model(out, src, x, floor, ceiling)
    return report


def _verification_input(info: ModelInfo, seed: int) -> np.ndarray:
    """A smooth random image (blurred noise): closer to a photo's statistics than white noise."""
    import cv2

    w, h = info.input_size
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
    return to_input_tensor(img)


def describe_tensor(d: dict, name: str) -> str:
    dtype = np.dtype(d["dtype"]).name
    shape = "[" + ",".join(str(int(s)) for s in d["shape"]) + "]"
    scale, zp = d.get("quantization", (0.0, 0))
    kind = "float" if dtype.startswith("float") else "quantized"
    q = f" scale={scale:.6g} zero_point={zp}" if scale else ""
    return f"{name}: {dtype} {shape} ({kind}){q}"


def compare_with_saved_model(tflite_path: str | os.PathLike, saved_model_dir: str | os.PathLike,
                             x: np.ndarray, logit_floor: Optional[float] = None,
                             logit_ceiling: Optional[float] = None) -> Dict[str, float]:
    """Max |TFLite - SavedModel| per output on input ``x`` (float [1,H,W,3]); TFLite dequantized,
    the SavedModel's outputs clamped to [``logit_floor``, ``logit_ceiling``] as the int8 graph does."""
    from core.detector import Detector

    tfl = Detector.open(tflite_path)
    sm = Detector.open(saved_model_dir)
    a = tfl.run_float(x)
    b = sm.run_float(x)
    if logit_floor is not None:
        b = {k: np.maximum(v, np.float32(logit_floor)) for k, v in b.items()}
    if logit_ceiling is not None:
        b = {k: np.minimum(v, np.float32(logit_ceiling)) for k, v in b.items()}
    return {k: float(np.max(np.abs(a[k] - b[k]))) for k in b}
