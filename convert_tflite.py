"""Convert a SavedModel written by ``save_model.py`` into a TFLite model for the edge runtime.

    python save_model.py --cfg yolov4-tiny.cfg --weights yolov4-tiny.weights --framework tflite \
        --output checkpoints/yolov4-tiny-416
    python convert_tflite.py --weights checkpoints/yolov4-tiny-416 --output yolov4-tiny-416-int8.tflite \
        --quantize_mode int8 --dataset runs/scenes/images --calib_count 200

``float32`` reproduces the SavedModel; ``float16`` halves the file (weights stored as float16);
``int8`` is full-integer (built-in int8 ops only, calibrated on ``--dataset``: a folder, a glob or a
list file of images) with int8, uint8 or float input/output tensors (``--io_type``). The report says
what the boundary tensors became. ``<output>.json`` beside the model keeps class names, anchors and
the quantization settings.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from core.cli import guarded  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("weights", None, "SavedModel folder written by save_model.py", required=True)
flags.DEFINE_string("output", None, "TFLite file to write", required=True)
flags.DEFINE_integer("input_size", None, "expected input size; must match the SavedModel's (checked)")
flags.DEFINE_enum("quantize_mode", "float32", ["float32", "float16", "int8"], "weights/activations precision")
flags.DEFINE_string("dataset", None, "int8 calibration images: a folder, a glob or a list file (one path per line)")
flags.DEFINE_integer("calib_count", 100, "number of calibration images (a seeded sample when there are more)")
flags.DEFINE_enum("io_type", "int8", ["int8", "uint8", "float"],
                  "int8 only: type of the model's input and output tensors")
flags.DEFINE_float("range_percentile", 99.99, "int8: each inner activation's range is this percentile of its "
                   "calibration values (both tails); 0: min/max, the converter's own calibration "
                   "(always min/max with --io_type uint8 or float)")
flags.DEFINE_float("logit_floor", -8.0, "int8: clamp the raw heads from below before quantizing (finer output "
                   "step); 0 disables it")
flags.DEFINE_float("logit_ceiling", 0.0, "int8: also clamp the raw heads from above (with --logit_floor; a "
                   "finer output step when a few large logits set the range); 0 disables it")
flags.DEFINE_boolean("verify", True, "compare the TFLite model with the SavedModel on one input")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from tqdm import tqdm

    from core.keras.tflite_export import convert_saved_model

    def progress(it):
        return tqdm(it, total=FLAGS.calib_count, desc="calibrating", unit="img", leave=False)

    report = convert_saved_model(FLAGS.weights, FLAGS.output, quantize_mode=FLAGS.quantize_mode,
                                 dataset=FLAGS.dataset, calib_count=FLAGS.calib_count,
                                 input_size=FLAGS.input_size, io_type=FLAGS.io_type, verify=FLAGS.verify,
                                 progress=progress, range_percentile=FLAGS.range_percentile or None,
                                 int8_logit_floor=FLAGS.logit_floor or None,
                                 int8_logit_ceiling=FLAGS.logit_ceiling or None)
    print(report.describe())
    return 0


if __name__ == "__main__":
    sys.exit(app.run(guarded(main)))
