"""Detect cars, plates and disabled stickers in images and read the plates.

    python detect.py --images data/images/demo.jpg --lpr
    python detect.py --framework tf --weights checkpoints/yolov4-tiny-3l-alpr-544 --images photos/ --lpr --json
    python detect.py --images 'shots/*.jpg' --lpr --charset cn --crop --output out/

Writes the annotated images (and with --json one JSON document per image, with --crop the plate
crops under <output>/crop/<image>/) into --output; prints the plates it read.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from core.app import define_model_flags  # noqa: E402
from core.cli import guarded  # noqa: E402

FLAGS = flags.FLAGS
define_model_flags(flags, lpr_default=False)
flags.DEFINE_list("images", ["data/images/demo.jpg"],
                  "images: files, folders, globs or .txt lists of image paths (comma-separated)")
flags.DEFINE_string("output", "./detections", "output folder")
flags.DEFINE_boolean("count", False, "print the number of objects of each class")
flags.DEFINE_boolean("info", False, "print every detection (class, score, box)")
flags.DEFINE_boolean("crop", False, "save crops of the detected plates under <output>/crop/<image>/")
flags.DEFINE_list("crop_classes", ["license_plate"], "classes to crop with --crop")
flags.DEFINE_boolean("json", False, "write <output>/<image>.json for each image")


def main(argv):
    from core.app import ImageJob, model_choice, run_images

    images = list(FLAGS.images) + [a for a in argv[1:]]
    models = model_choice(FLAGS)
    job = ImageJob(images=images, output=FLAGS.output, models=models, count=FLAGS.count, info=FLAGS.info,
                   show=not FLAGS.dont_show, crop=FLAGS.crop, crop_classes=tuple(FLAGS.crop_classes),
                   json=FLAGS.json)
    return run_images(job)


if __name__ == "__main__":
    sys.exit(app.run(guarded(main)))
