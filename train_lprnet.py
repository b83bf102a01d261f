"""Train the LPRNet plate reader.

python train_lprnet.py --data CROPS_DIR_OR_LABEL_FILE --charset kr --out runs/lprnet_kr \
    [--val_data DIR] [--epochs 30] [--batch_size 64] [--learning_rate 1e-3] [--stn] \
    [--init_weights imported.weights.h5] [--no-resume] [--precision mixed_bfloat16]

Crops are named by their text (a -N / _N suffix marks a duplicate), or listed in a label file
(filename<TAB>text per line). Bad files are skipped and counted. Outputs: last/best.weights.h5,
state.json (resume), curves.png, logs/ for TensorBoard. Export afterwards with
python -m lprnet.export --weights runs/lprnet_kr/best.weights.h5 --out reader.tflite
"""
from __future__ import annotations

from typing import Sequence

from absl import app, flags

from core.cli import guarded
from core.keras import PRECISIONS, enable_onednn

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "folder of crops named by their text, or a label file")
flags.DEFINE_string("val_data", None, "validation crops (default: hold out --val_split of --data)")
flags.DEFINE_float("val_split", 0.1, "fraction of --data held out for validation without --val_data")
flags.DEFINE_string("charset", "cn", "charset: cn, kr or a charset file")
flags.DEFINE_string("out", "runs/lprnet", "output directory (checkpoints, logs, curves)")
flags.DEFINE_integer("epochs", 30, "epochs")
flags.DEFINE_integer("batch_size", 64, "global batch size")
flags.DEFINE_float("learning_rate", 1e-3, "peak learning rate (warm-up then cosine decay)")
flags.DEFINE_float("warmup_epochs", 1.0, "linear warm-up length in epochs")
flags.DEFINE_float("weight_decay", 1e-4, "AdamW weight decay")
flags.DEFINE_bool("stn", True, "put the spatial transformer in front of LPRNet")
flags.DEFINE_float("dropout", 0.5, "dropout rate in the LPRNet head")
flags.DEFINE_bool("augment", True, "augment training crops")
flags.DEFINE_string("init_weights", None, "start from these Keras weights (e.g. imported LPRNet_Pytorch)")
flags.DEFINE_enum("freeze_bn", "auto", ["auto", "yes", "no"],
                  "BatchNorm in inference mode while training (auto: yes with --init_weights)")
flags.DEFINE_bool("resume", True, "resume from --out when it holds a previous run")
flags.DEFINE_integer("seed", 0, "random seed")
flags.DEFINE_enum("precision", "float32", list(PRECISIONS),
                  "Keras dtype policy; mixed_bfloat16 computes the backbone in bfloat16 (faster on CPUs with "
                  "AVX512_BF16 or AMX and on recent GPUs; the weights stay float32)")


def main(argv: Sequence[str]) -> None:
    del argv
    from lprnet.train import TrainConfig, train

    cfg = TrainConfig(
        data=FLAGS.data, out_dir=FLAGS.out, charset=FLAGS.charset, val_data=FLAGS.val_data,
        val_split=FLAGS.val_split, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, warmup_epochs=FLAGS.warmup_epochs,
        weight_decay=FLAGS.weight_decay, stn=FLAGS.stn, dropout=FLAGS.dropout, augment=FLAGS.augment,
        init_weights=FLAGS.init_weights, resume=FLAGS.resume, seed=FLAGS.seed, precision=FLAGS.precision,
        freeze_bn=None if FLAGS.freeze_bn == "auto" else FLAGS.freeze_bn == "yes",
    )
    history = train(cfg)
    if history.epoch:
        print(f"done: best validation sequence accuracy {max(history.val_sequence_accuracy):.4f}; "
              f"weights in {FLAGS.out}/best.weights.h5")


if __name__ == "__main__":
    enable_onednn()
    flags.mark_flag_as_required("data")
    app.run(guarded(main))
