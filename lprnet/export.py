"""Export an LPRNet to TFLite (float32 / float16 / full-integer int8) or a SavedModel (TF side).

The TFLite model takes pre-processed crops [N,24,94,3] (see lprnet.preprocess) with a dynamic
batch and returns logits [N,18,68]; int8 models have int8 input and output tensors (the reader
quantizes/dequantizes with the tensors' own scale and zero point). Only TFLite built-in ops are
allowed; the converter fails rather than silently adding Select-TF ops.

CLI: python -m lprnet.export --weights W.weights.h5 --out reader.tflite --quantization int8 \
         --calibration DIR_OF_CROPS [--charset cn]
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence, Union

import numpy as np

from core.errors import AlprError
from lprnet.preprocess import INPUT_HEIGHT, INPUT_WIDTH

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


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
    """
    import tensorflow as tf

    from core.cli import atomic_path

    if quantization not in QUANTIZATIONS:
        raise AlprError(f"unknown quantization {quantization!r} (use one of {', '.join(QUANTIZATIONS)})")
    if quantization == "int8":
        if calibration is None or len(calibration) == 0:
            raise AlprError("int8 export needs calibration crops (a folder of plate crops)")
        from lprnet.model import freeze_context

        model = freeze_context(model, np.asarray(calibration, np.float32))
    # Through a SavedModel: it freezes the Keras 3 variables (a concrete function keeps them as
    # resources, which int8 calibration cannot read).
    workdir = Path(tempfile.mkdtemp(prefix="lprnet_export_"))
    try:
        saved = export_saved_model(model, workdir / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantization == "int8" and (percentile is not None or logit_floor is not None):
            data = _convert_int8_clipped(converter, np.asarray(calibration, np.float32)[:calibration_steps],
                                         percentile, logit_floor)
        else:
            data = _convert(converter, quantization, calibration, calibration_steps)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = Path(out_path)
    with atomic_path(out, suffix=".tflite") as tmp:
        tmp.write_bytes(data)
    return out


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
