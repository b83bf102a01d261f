"""Detect cars, plates and disabled stickers in images and read the plates.

    python detect.py --images data/images/demo.jpg --lpr
    python detect.py --framework tf --weights checkpoints/yolov4-tiny-alpr-416 --images photos/ --lpr --json
    python detect.py --images 'shots/*.jpg' --lpr --charset cn --crop --output out/

Writes the annotated images (and with --json one JSON document per image, with --crop the plate
crops under <output>/crop/<image>/) into --output; prints the plates it read.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from core.cli import guarded  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("framework", "tflite", ["tflite", "tf"], "tflite: a .tflite model; tf: a SavedModel folder")
flags.DEFINE_string("weights", None, "detector model (default: the shipped yolov4-tiny for --framework)")
flags.DEFINE_integer("size", None, "input size; must match the model's (models have a fixed input size)")
flags.DEFINE_boolean("tiny", True, "kept for compatibility with tensorflow-yolov4-tflite (the shipped model is tiny)")
flags.DEFINE_string("model", "yolov4", "kept for compatibility with tensorflow-yolov4-tflite")
flags.DEFINE_list("images", ["data/images/demo.jpg"], "images: files, folders or globs (comma-separated)")
flags.DEFINE_string("output", "./detections", "output folder")
flags.DEFINE_float("iou", 0.45, "IoU threshold of the per-class NMS")
flags.DEFINE_float("score", None, "score threshold (default: the one stored with the model)")
flags.DEFINE_boolean("count", False, "print the number of objects of each class")
flags.DEFINE_boolean("info", False, "print every detection (class, score, box)")
flags.DEFINE_boolean("dont_show", False, "do not open a window (a window opens only where a display exists)")
flags.DEFINE_boolean("crop", False, "save crops of the detected plates under <output>/crop/<image>/")
flags.DEFINE_list("crop_classes", ["license_plate"], "classes to crop with --crop")
flags.DEFINE_boolean("lpr", False, "read the plates")
flags.DEFINE_string("lpr_weights", None, "plate reader .tflite (default: the shipped one for --charset)")
flags.DEFINE_enum("charset", "kr", ["kr", "cn"], "plate alphabet and conventions")
flags.DEFINE_boolean("json", False, "write <output>/<image>.json for each image")
flags.DEFINE_string("classes", None, "class names file (default: the names stored with the model)")
flags.DEFINE_integer("num_threads", None, "TFLite interpreter threads (default: the runtime's choice)")


def main(argv):
    from core.app import ImageJob, ModelChoice, run_images

    images = list(FLAGS.images) + [a for a in argv[1:]]
    models = ModelChoice(framework=FLAGS.framework, weights=FLAGS.weights, classes=FLAGS.classes, size=FLAGS.size,
                         lpr=FLAGS.lpr, lpr_weights=FLAGS.lpr_weights, charset=FLAGS.charset, score=FLAGS.score,
                         iou=FLAGS.iou, num_threads=FLAGS.num_threads)
    job = ImageJob(images=images, output=FLAGS.output, models=models, count=FLAGS.count, info=FLAGS.info,
                   show=not FLAGS.dont_show, crop=FLAGS.crop, crop_classes=tuple(FLAGS.crop_classes),
                   json=FLAGS.json)
    return run_images(job)


if __name__ == "__main__":
    sys.exit(app.run(guarded(main)))
