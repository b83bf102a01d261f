"""Seconds per training step of the reader and the detector, with Keras's BatchNormalization and with
the fused one the models use (``core.keras.layers``): ``python -m tools.train_step_benchmark``.

Each step is a forward and backward pass and an optimizer update on random inputs (the reader: CTC
loss on random labels at 24x94, batch 64; the detector: the mean square of its heads for ``--cfg`` at
``--size``, batch 8), timed after a warm-up step; the median of ``--steps`` is printed. ``--precision
mixed_bfloat16`` builds both models under that Keras policy (``train.py`` / ``train_lprnet.py --precision``).
TensorFlow's oneDNN kernels are on as in the trainers (``core.keras.enable_onednn``: unless
``TF_ENABLE_ONEDNN_OPTS`` is set); ``--noonednn`` times TensorFlow's own kernels, ``--onednn`` forces oneDNN's.
Each line says which ran, as TensorFlow reports it.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, Sequence

from absl import app, flags

from core.keras import PRECISIONS, set_onednn

FLAGS = flags.FLAGS


def _time(step: Callable[[], object], steps: int) -> float:
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_training(model, loss_of_outputs: Callable, steps: int, x) -> float:
    """Median seconds of a forward + backward pass and an AdamW update (both trainers' optimizer) on ``x``."""
    import keras
    import tensorflow as tf

    opt = keras.optimizers.AdamW(1e-5)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_of_outputs(model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    return _time(lambda: step().numpy(), steps)


def reader_step(steps: int) -> float:
    import numpy as np
    import tensorflow as tf

    from lprnet.model import build_lprnet
    from lprnet.train import ctc_loss

    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (64, 24, 94, 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, 67, (64, 9)).astype(np.int32))
    n = tf.fill([64], 7)
    return _time_training(build_lprnet(68, stn=True, dropout=0.1),
                          lambda logits: tf.reduce_mean(ctc_loss(y, logits, n, 67)), steps, x)


def detector_step(cfg_path: str, size: int, steps: int) -> float:
    import tensorflow as tf

    from core.darknet.cfg import load_cfg
    from core.keras.builder import build_model

    model = build_model(load_cfg(cfg_path).with_input_size(size))
    x = tf.random.stateless_uniform((8, size, size, 3), [1, 2])
    return _time_training(model, lambda heads: tf.add_n([tf.reduce_mean(tf.square(h)) for h in heads]), steps, x)


def _case(bn: str) -> Dict[str, object]:
    """Both timings with one BatchNormalization class, in this process."""
    import keras

    import core.keras.builder as builder
    import lprnet.model as reader_model
    from core.keras.layers import BatchNormalization, onednn_enabled, precision_policy

    cls = keras.layers.BatchNormalization if bn == "keras" else BatchNormalization
    builder.BatchNormalization = cls  # the builders look the class up at build time
    reader_model.BatchNormalization = cls
    with precision_policy(FLAGS.precision):
        return {"reader": reader_step(FLAGS.steps), "detector": detector_step(FLAGS.cfg, FLAGS.size, FLAGS.steps),
                "onednn": onednn_enabled()}


def main(argv: Sequence[str]) -> None:
    del argv
    if FLAGS.only:
        set_onednn(FLAGS.onednn)  # before TensorFlow
        print(json.dumps(_case(FLAGS.only)))
        return
    env = dict(os.environ)  # the cases' only: this process's last line should see what the recipes see
    set_onednn(FLAGS.onednn, env)
    results: Dict[str, Dict[str, object]] = {}
    for bn in ("keras", "fused"):  # one fresh process each, so that neither warms the other's caches
        proc = subprocess.run([sys.executable, "-m", "tools.train_step_benchmark", "--only", bn, "--steps",
                               str(FLAGS.steps), "--cfg", FLAGS.cfg, "--size", str(FLAGS.size),
                               "--precision", FLAGS.precision],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"error: the {bn} case failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        results[bn] = json.loads(proc.stdout.strip().splitlines()[-1])
    for part in ("reader", "detector"):
        k, f = results["keras"][part], results["fused"][part]
        onednn = "on" if results["fused"]["onednn"] else "off"
        print(f"{part} ({FLAGS.precision}, oneDNN {onednn}): {k:.3f} s/step with Keras BatchNormalization, "
              f"{f:.3f} fused ({k / f:.2f}x)")
    from core.keras.layers import bfloat16_hardware

    print("bfloat16 hardware: " + ("yes (new recipe runs train their bfloat16 stages in bfloat16)"
                                   if bfloat16_hardware() else
                                   "no (new recipe runs train in float32 here; emulated bfloat16 is slower)"))


if __name__ == "__main__":
    flags.DEFINE_integer("steps", 8, "timed steps per case")
    flags.DEFINE_string("cfg", "checkpoints/yolov4-tiny-3l-alpr.cfg", "detector cfg")
    flags.DEFINE_integer("size", 544, "detector input size")
    flags.DEFINE_enum("precision", "float32", list(PRECISIONS), "Keras dtype policy of both models")
    flags.DEFINE_boolean("onednn", None, "force TensorFlow's oneDNN CPU kernels on (--onednn) or off "
                         "(--noonednn); default: on unless TF_ENABLE_ONEDNN_OPTS is set, as the trainers do")
    flags.DEFINE_enum("only", None, ["keras", "fused"], "time one case in this process (used internally)")
    app.run(main)
