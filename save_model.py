"""Convert a Darknet .cfg + .weights into a TensorFlow SavedModel.

    python save_model.py --cfg data/cfg/yolov4-tiny.cfg --weights yolov4-tiny.weights \
        --classes data/classes/custom.names --input_size 416 --output checkpoints/yolov4-tiny-416

The SavedModel's ``serving_default`` takes ``images`` [batch, size, size, 3] RGB in [0, 1] and
returns, with ``--framework tf``, ``boxes`` [batch, N, 4] (x1, y1, x2, y2 as fractions of the
input) and ``scores`` [batch, N, classes] for every candidate (no NMS: the runtime filters with
the user's --score and --iou); with ``--framework tflite`` the raw yolo heads, decoded in numpy by
the edge runtime (what int8 quantization wants). ``alpr_model.json`` beside it keeps class names,
input size and anchors. ``--equalize_dataset`` (for int8 conversion) rescales the channels of each
head's input on calibration images so that one int8 scale fits them all; the float model is unchanged
(``core/keras/equalize.py``).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from core.cli import guarded  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("weights", None, "Darknet .weights file (omit to export random-initialised weights: not useful)")
flags.DEFINE_string("cfg", None, "Darknet .cfg file (default: picked by --model/--tiny from data/cfg/)")
flags.DEFINE_enum("model", "yolov4", ["yolov4", "yolov3"], "architecture when --cfg is not given")
flags.DEFINE_boolean("tiny", False, "tiny variant when --cfg is not given")
flags.DEFINE_string("classes", None, "class names file; must have as many names as the cfg's classes "
                    "(default: data/classes/custom.names or coco.names, whichever fits)")
flags.DEFINE_integer("input_size", None, "network input size, a multiple of 32 (default: the cfg's width)")
flags.DEFINE_string("output", None, "SavedModel folder to write (default: checkpoints/<cfg name>-<size>)")
flags.DEFINE_enum("framework", "tf", ["tf", "tflite"],
                  "tf: decoded boxes + scores; tflite: raw yolo heads, the graph TFLite export wants")
flags.DEFINE_float("score_thres", 0.25, "default score threshold stored with the model")
flags.DEFINE_boolean("letterbox", True, "keep the aspect ratio when resizing images (Darknet letter_box)")
flags.DEFINE_boolean("verify", True, "reload the SavedModel and compare it with the Keras model")
flags.DEFINE_string("equalize_dataset", None, "for int8 conversion: images (a folder, a glob or a list file) on "
                    "which to equalize the channels of each head's input; the float model is unchanged")
flags.DEFINE_integer("equalize_count", 100, "how many of those images (a seeded sample when there are more)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from core.keras.convert import convert_darknet

    report = convert_darknet(
        cfg=FLAGS.cfg, model=FLAGS.model, tiny=FLAGS.tiny, weights=FLAGS.weights, classes=FLAGS.classes,
        input_size=FLAGS.input_size, output=FLAGS.output, framework=FLAGS.framework,
        score_thres=FLAGS.score_thres, letterbox=FLAGS.letterbox, verify=FLAGS.verify,
        equalize_dataset=FLAGS.equalize_dataset, equalize_count=FLAGS.equalize_count)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(app.run(guarded(main)))
