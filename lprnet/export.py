"""Export an LPRNet to TFLite (float32 / float16 / full-integer int8) or a SavedModel (TF side).

The TFLite model takes pre-processed crops [N,24,94,3] (see lprnet.preprocess) with a dynamic
batch and returns logits [N,18,68]; int8 models have int8 input and output tensors (the reader
quantizes/dequantizes with the tensors' own scale and zero point). Only TFLite built-in ops are
allowed; the converter fails rather than silently adding Select-TF ops.

int8 of a reader with a spatial transformer is a *two-stage* model: one .tflite file with two
signatures (names in lprnet.reader), both full-integer int8 with int8 inputs and outputs and no float op
inside, and the geometry done exactly by the runtime in between (lprnet.preprocess.affine_warp):

- ``locate``: ``image`` int8 [N,24,94,3] -> ``theta_offset`` int8 [N,6], the STN's row-major 2x3
  affine minus the identity (lprnet.preprocess.IDENTITY_THETA);
- ``read``: ``image`` int8 [N,24,94,3], the crop warped through theta -> ``logits`` int8 [N,18,classes].

In one int8 graph the sampler's pixel coordinates (0..93 in 256 levels) and its floor/cast (left as a
float island by the converter) ruin the bilinear resampling. ``locate`` is calibrated on the
calibration crops, ``read`` on those crops warped by the float model's own STN. float32, float16 and
dynamic exports stay one graph with the STN inside.

CLI: python -m lprnet.export --weights W.weights.h5 --out reader.tflite --quantization int8 \
         --calibration DIR_OF_CROPS [--charset cn]
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from core.errors import AlprError
from lprnet.preprocess import INPUT_HEIGHT, INPUT_WIDTH
from lprnet.reader import IMAGE_INPUT, LOCATE_SIGNATURE, LOGITS_OUTPUT, READ_SIGNATURE, THETA_OUTPUT

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
# signature name, its input's name, its output's name (two-stage int8 STN readers)
LOCATE = (LOCATE_SIGNATURE, IMAGE_INPUT, THETA_OUTPUT)
READ = (READ_SIGNATURE, IMAGE_INPUT, LOGITS_OUTPUT)


def convert_to_tflite(
    model,
    out_path: Union[str, Path],
    quantization: str = "float32",
    calibration: np.ndarray | None = None,
    calibration_steps: int = 1000,
    percentile: float | None = 99.999,
    logit_floor: float | None = -40.0,
) -> Path:
    """Convert and write atomically. ``calibration``: float32 pre-processed crops [N,24,94,3] for int8.

    int8 only: ``percentile`` sets each activation's quantization range to that percentile of its
    calibration values instead of the extreme min/max (LPRNet's post-ReLU activations have rare
    outliers up to 8x their 99.9th percentile, which with min/max ranges cost ~4 points of sequence
    accuracy on real plates); ``logit_floor`` raises the bottom of the output range (logits far below
    the best class change neither the argmax nor the confidence). ``None`` keeps the converter's own.

    int8 of a model with an STN writes the two-stage file of the module docstring (signatures
    ``locate`` and ``read``, int8 inputs and outputs, the percentile and logit floor applying to
    ``read``); every other export is one graph (int8: int8 input and output; float32, float16 and
    dynamic: float32 input and output).
    """
    if quantization not in QUANTIZATIONS:
        raise AlprError(f"unknown quantization {quantization!r} (use one of {', '.join(QUANTIZATIONS)})")
    from lprnet.model import freeze_context, has_stn

    if quantization == "int8":
        if calibration is None or len(calibration) == 0:
            raise AlprError("int8 export needs calibration crops (a folder of plate crops)")
        calibration = np.asarray(calibration, np.float32)
        if has_stn(model):
            data = _convert_int8_two_stage(model, calibration[:calibration_steps], percentile, logit_floor)
            return _write(data, out_path)
        model = freeze_context(model, calibration)
    data = _convert_one_graph(model, quantization, calibration, calibration_steps, percentile, logit_floor)
    return _write(data, out_path)


def _write(data: bytes, out_path: Union[str, Path]) -> Path:
    from core.cli import atomic_path

    out = Path(out_path)
    with atomic_path(out, suffix=".tflite") as tmp:
        tmp.write_bytes(data)
    return out


def _convert_one_graph(model, quantization: str, calibration: Optional[np.ndarray], calibration_steps: int,
                       percentile: Optional[float], logit_floor: Optional[float]) -> bytes:
    """One graph image -> output of ``model`` (int8: already context-frozen, calibration float32)."""
    import tensorflow as tf

    # Through a SavedModel: it freezes the Keras 3 variables (a concrete function keeps them as
    # resources, which int8 calibration cannot read).
    workdir = Path(tempfile.mkdtemp(prefix="lprnet_export_"))
    try:
        saved = export_saved_model(model, workdir / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantization == "int8" and (percentile is not None or logit_floor is not None):
            assert calibration is not None
            return _convert_int8_clipped(converter, calibration[:calibration_steps], percentile, logit_floor)
        return _convert(converter, quantization, calibration, calibration_steps)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _convert_int8_two_stage(model, calibration: np.ndarray, percentile: Optional[float],
                            logit_floor: Optional[float], batch_size: int = 64) -> bytes:
    """int8 of an STN reader as two signatures (see the module docstring) in one flatbuffer.

    ``read`` gets the percentile ranges, logit floor and frozen context of a plain reader, measured on
    the calibration crops warped by the float STN. ``locate`` keeps min/max ranges; its output is never
    clipped (the quantizer leaves model outputs at their calibration min/max). Measured on the Korean
    validation crops (theta error at the crop's corners, mean / max): theta minus the identity with
    min/max ranges 0.20 / 0.59 pixel, theta itself 0.25 / 0.79, locate at the 99.9th percentile 0.29 / 2.3."""
    from lprnet.model import freeze_context, stn_stages

    locate, warp, read = stn_stages(model)
    warped = np.concatenate([np.asarray(warp(calibration[i : i + batch_size], training=False), np.float32)
                             for i in range(0, len(calibration), batch_size)])
    read = freeze_context(read, warped)
    steps = len(calibration)
    locate_data = _convert_one_graph(locate, "int8", calibration, steps, None, None)
    read_data = _convert_one_graph(read, "int8", warped, steps, percentile, logit_floor)
    return merge_signatures([(LOCATE, locate_data), (READ, read_data)])


def merge_signatures(parts: Sequence[Tuple[Tuple[str, str, str], bytes]]) -> bytes:
    """One TFLite flatbuffer holding each single-subgraph, single-input, single-output model of ``parts``
    as a subgraph with its own signature ``(key, input name, output name)``, in order (the first is
    subgraph 0, what an interpreter without signatures runs).

    Buffers are appended (buffer 0, the empty sentinel, is shared), operator codes deduplicated, the
    parts' own signatures dropped. The metadata are the first part's, with the highest
    ``min_runtime_version`` of all parts."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    merged = None
    runtime_versions = []
    for (key, input_name, output_name), data in parts:
        part = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
        if len(part.subgraphs) != 1:
            raise AlprError(f"cannot merge signature {key!r}: {len(part.subgraphs)} subgraphs, expected 1")
        graph = part.subgraphs[0]
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise AlprError(f"cannot merge signature {key!r}: expected one input and one output")
        for meta in part.metadata or []:
            if _name(meta.name) == "min_runtime_version":
                raw = part.buffers[meta.buffer].data
                runtime_versions.append(bytes(raw if raw is not None else b"").rstrip(b"\0").decode())
        if merged is None:
            merged = part
            merged.signatureDefs = []
        else:
            base = len(merged.buffers) - 1
            merged.buffers.extend(part.buffers[1:])
            for tensor in graph.tensors:
                tensor.buffer = 0 if tensor.buffer == 0 else tensor.buffer + base
            codes = {_code_key(c): i for i, c in enumerate(merged.operatorCodes)}
            remap = []
            for code in part.operatorCodes:
                if _code_key(code) not in codes:
                    codes[_code_key(code)] = len(merged.operatorCodes)
                    merged.operatorCodes.append(code)
                remap.append(codes[_code_key(code)])
            for op in graph.operators:
                op.opcodeIndex = remap[op.opcodeIndex]
            merged.subgraphs.append(graph)
        graph.name = key
        sig = schema.SignatureDefT()
        sig.signatureKey = key
        sig.subgraphIndex = len(merged.subgraphs) - 1
        sig.inputs = [_tensor_map(input_name, int(graph.inputs[0]))]
        sig.outputs = [_tensor_map(output_name, int(graph.outputs[0]))]
        merged.signatureDefs.append(sig)
    if merged is None:
        raise AlprError("nothing to merge")
    if runtime_versions:
        newest = max(runtime_versions, key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()))
        for meta in merged.metadata or []:
            if _name(meta.name) == "min_runtime_version":
                old = merged.buffers[meta.buffer].data
                size = max(len(old) if old is not None else 0, len(newest))
                merged.buffers[meta.buffer].data = np.frombuffer(newest.encode().ljust(size, b"\0"), np.uint8)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(merged))


def _name(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _code_key(code) -> tuple:
    return (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)


def _tensor_map(name: str, index: int):
    from tensorflow.lite.python import schema_py_generated as schema

    mapping = schema.TensorMapT()
    mapping.name = name
    mapping.tensorIndex = index
    return mapping


def _convert(converter, quantization: str, calibration: np.ndarray | None, calibration_steps: int) -> bytes:
    import tensorflow as tf

    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "dynamic":  # int8 weights, float activations (not full-integer)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if calibration is None or len(calibration) == 0:
            raise AlprError("int8 export needs calibration crops (a folder of plate crops)")
        calib = np.asarray(calibration, np.float32)

        def representative() -> Iterator[List[np.ndarray]]:
            for i in range(min(len(calib), calibration_steps)):
                yield [calib[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as exc:  # noqa: BLE001 - converter errors are long; keep the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AlprError(f"TFLite {quantization} conversion failed: {first}") from None


def _convert_int8_clipped(
    converter, calib: np.ndarray, percentile: float | None, logit_floor: float | None,
    values_per_crop: int = 2000,
) -> bytes:
    """Full-integer int8 with percentile activation ranges and a logit floor (``core.keras.quantize``)."""
    import tensorflow as tf

    from core.keras.quantize import quantize_with_percentile_ranges

    def representative() -> Iterator[List[np.ndarray]]:
        for i in range(len(calib)):
            yield [calib[i : i + 1]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True
    try:
        calibrated = converter.convert()
        return quantize_with_percentile_ranges(calibrated, [calib[k : k + 1] for k in range(len(calib))],
                                               percentile, output_floor=logit_floor, per_sample=values_per_crop)
    except AlprError:
        raise
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AlprError(f"TFLite int8 conversion failed: {first}") from None


def export_saved_model(model, out_dir: Union[str, Path]) -> Path:
    """A SavedModel with a ``serve`` endpoint (also ``serving_default``) image -> logits; atomic."""
    import tensorflow as tf

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # keras.export.ExportArchive tracks the Keras 3 variables so that the converter freezes
        # them (a plain tf.Module + tf.function leaves READ_VARIABLE ops in the TFLite model).
        import keras

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            lambda image: model(image, training=False),
            input_signature=[tf.TensorSpec([None, INPUT_HEIGHT, INPUT_WIDTH, 3], tf.float32, "image")],
        )
        archive.write_out(str(tmp), verbose=False)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def calibration_crops(source: Union[str, Path], charset_name: str = "cn", limit: int = 500) -> np.ndarray:
    """Pre-processed crops from a folder or label file, for int8 calibration (labels are not used)."""
    from lprnet.charset import load_charset
    from lprnet.dataset import list_samples, load_crops
    from lprnet.preprocess import normalize

    listing = list_samples(source, load_charset(charset_name))
    listing.samples = listing.samples[:limit]
    images, _ = load_crops(listing)
    return normalize(images)


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from lprnet.model import load_keras_model

    del argv
    f = flags.FLAGS
    model = load_keras_model(f.weights)
    if f.out.endswith(".tflite"):
        calib = calibration_crops(f.calibration, f.charset) if f.calibration else None
        percentile = f.percentile if f.percentile > 0 else None
        out = convert_to_tflite(model, f.out, f.quantization, calib, percentile=percentile,
                                logit_floor=f.logit_floor if percentile is not None else None)
    else:
        out = export_saved_model(model, f.out)
    print(f"wrote {out}")


if __name__ == "__main__":
    from absl import app, flags

    from core.cli import guarded

    flags.DEFINE_string("weights", None, "Keras weights (*.weights.h5) or model (*.keras)")
    flags.DEFINE_string("out", None, "output: *.tflite, or a directory for a SavedModel")
    flags.DEFINE_enum("quantization", "float32", list(QUANTIZATIONS), "TFLite weight/activation type")
    flags.DEFINE_string("calibration", None, "folder of crops or label file, for int8 calibration")
    flags.DEFINE_string("charset", "cn", "charset of the calibration labels (cn, kr or a file)")
    flags.DEFINE_float("percentile", 99.999, "int8: activation ranges at this percentile (0: min/max)")
    flags.DEFINE_float("logit_floor", -40.0, "int8: bottom of the logits' quantization range")
    flags.mark_flags_as_required(["weights", "out"])
    app.run(guarded(main))
