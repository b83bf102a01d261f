"""Train a Darknet-cfg YOLO detector in TensorFlow on a YOLO-txt dataset; export Darknet .weights.

    python train.py --cfg data/cfg/yolov4-tiny.cfg --train runs/scenes/train.txt \
        --valid runs/scenes/valid.txt --input_size 320 --batch_size 8 --epochs 30 --out_dir runs/det

Writes into --out_dir: checkpoints/ (resumable: run the same command again to go on), tensorboard/,
training_curves.png, and ``<name>.weights`` (+ ``<name>_best.weights`` for the best validation
mAP@0.5). The weights go through ``save_model.py`` and ``convert_tflite.py`` like any Darknet model
(give them the same cfg; the input size is chosen at conversion). Runs under tf.distribute: all
GPUs of the machine with MirroredStrategy when there are several, the default device otherwise.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from core.cli import guarded  # noqa: E402
from core.keras import PRECISIONS, enable_onednn  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("cfg", None, "Darknet .cfg to train (its [yolo] anchors, masks, classes and loss settings)")
flags.DEFINE_string("weights", None, "initial Darknet .weights (default: random initialisation)")
flags.DEFINE_string("train", None, "training images: a folder with YOLO txt labels beside the images, or train.txt")
flags.DEFINE_string("valid", None, "validation images (folder or valid.txt); mAP every --eval_every epochs")
flags.DEFINE_string("out_dir", "runs/train", "output folder (checkpoints, logs, weights)")
flags.DEFINE_string("name", None, "name of the exported .weights (default: the cfg's file name)")
flags.DEFINE_string("export", None, "also copy the final (best validated) .weights to this path")
flags.DEFINE_integer("input_size", 416, "training input size (square, a multiple of 32)")
flags.DEFINE_integer("batch_size", 16, "global batch size (split over the replicas)")
flags.DEFINE_integer("epochs", 30, "epochs")
flags.DEFINE_integer("max_steps", None, "stop after this many steps in total (a time budget)")
flags.DEFINE_float("lr", 1e-3, "peak learning rate")
flags.DEFINE_float("final_lr_fraction", 0.02, "cosine decay ends at lr * this")
flags.DEFINE_integer("warmup_steps", 200, "burn-in steps (lr * (step/warmup)^4)")
flags.DEFINE_enum("optimizer", "adam", ["adam", "sgd"], "AdamW, or SGD with Darknet's momentum 0.949")
flags.DEFINE_float("weight_decay", 5e-4, "weight decay (not on batch-norm and bias variables with adam)")
flags.DEFINE_float("box_gain", 1.0, "multiplies the CIoU term (on top of the cfg's iou_normalizer)")
flags.DEFINE_float("mosaic", 0.5, "probability of a 4-image mosaic")
flags.DEFINE_float("flip", 0.5, "probability of a horizontal flip")
flags.DEFINE_list("scale", ["0.5", "1.3"], "min,max size of a placed image relative to the input")
flags.DEFINE_float("hue", 0.1, "hue jitter (fraction of the circle)")
flags.DEFINE_float("saturation", 1.5, "saturation factor range [1/s, s]")
flags.DEFINE_float("exposure", 1.5, "exposure factor range [1/e, e]")
flags.DEFINE_integer("eval_every", 5, "validate every N epochs (0: never)")
flags.DEFINE_integer("eval_max_images", 500, "validation images used at most")
flags.DEFINE_integer("workers", 2, "parallel data-loading calls")
flags.DEFINE_enum("precision", "float32", list(PRECISIONS),
                  "mixed_bfloat16: compute in bfloat16 with float32 weights (faster on CPUs with AVX512_BF16 "
                  "and on bfloat16 GPUs; the exported .weights are float32 either way)")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_boolean("resume", True, "go on from out_dir/checkpoints when there is one")
flags.DEFINE_boolean("progress", True, "tqdm progress bar")
flags.mark_flags_as_required(["cfg", "train"])


def main(argv):
    if len(argv) > 1:
        from core.errors import AlprError

        raise AlprError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    from pathlib import Path

    from core.errors import AlprError
    from core.keras.data import AugmentConfig
    from core.keras.train_detector import TrainConfig, copy_final, train

    if not Path(FLAGS.cfg).is_file():
        raise AlprError(f"cfg not found: {FLAGS.cfg}")
    try:
        scale = tuple(float(v) for v in FLAGS.scale)
    except ValueError:
        raise AlprError(f"--scale must be two numbers, got {FLAGS.scale}") from None
    if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise AlprError(f"--scale must be min,max with 0 < min <= max, got {FLAGS.scale}")
    aug = AugmentConfig(mosaic=FLAGS.mosaic, scale=scale, flip=FLAGS.flip, hue=FLAGS.hue,
                        saturation=FLAGS.saturation, exposure=FLAGS.exposure)
    cfg = TrainConfig(cfg=FLAGS.cfg, train=FLAGS.train, valid=FLAGS.valid, out_dir=FLAGS.out_dir,
                      weights=FLAGS.weights, input_size=FLAGS.input_size, batch_size=FLAGS.batch_size,
                      epochs=FLAGS.epochs, lr=FLAGS.lr, final_lr_fraction=FLAGS.final_lr_fraction,
                      warmup_steps=FLAGS.warmup_steps, optimizer=FLAGS.optimizer, weight_decay=FLAGS.weight_decay,
                      box_gain=FLAGS.box_gain, eval_every=FLAGS.eval_every, eval_max_images=FLAGS.eval_max_images,
                      workers=FLAGS.workers, seed=FLAGS.seed, name=FLAGS.name or Path(FLAGS.cfg).stem,
                      resume=FLAGS.resume, max_steps=FLAGS.max_steps, augment=aug, progress=FLAGS.progress,
                      precision=FLAGS.precision)
    result = train(cfg)
    if FLAGS.export:
        print(f"exported {copy_final(result, FLAGS.export)}")
    return 0


if __name__ == "__main__":
    enable_onednn()
    sys.exit(app.run(guarded(main)))
