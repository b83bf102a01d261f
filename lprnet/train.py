"""Training of the LPRNet reader (TF side); train_lprnet.py is the thin absl front end.

Data: a folder of crops named by their text or a label file (lprnet.dataset); bad files are counted
and skipped. tf.data pipeline with augmentation (perspective, crops that cut or pad, blur, noise,
colour), CTC loss, warm-up + cosine learning-rate schedule, a custom loop under a tf.distribute
strategy (MirroredStrategy when several GPUs are visible), validation each epoch, checkpoints with
resume (weights + optimizer state + history), TensorBoard logs, a tqdm bar and a PNG of the curves.

Outputs in ``out_dir``: last.weights.h5, best.weights.h5 (best validation sequence accuracy),
optimizer.npz, state.json, curves.png, logs/ (TensorBoard).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.errors import AlprError
from lprnet.charset import Charset, load_charset
from lprnet.ctc import greedy_decode
from lprnet.dataset import Listing, list_samples, load_crops
from lprnet.preprocess import INPUT_HEIGHT, INPUT_WIDTH, MEAN, SCALE, TWO_LINE_MAX_ASPECT

NUM_STEPS = 18


@dataclass
class TrainConfig:
    data: str
    out_dir: str
    charset: str = "cn"
    val_data: Optional[str] = None
    val_split: float = 0.1
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-4
    stn: bool = False
    dropout: float = 0.5
    augment: bool = True
    init_weights: Optional[str] = None
    # BatchNormalization in inference mode (statistics and scales frozen). None: frozen when
    # starting from --init_weights. The LPRNet_Pytorch release needs it: its stored BN statistics
    # do not match batch statistics (in torch too, train-mode BN takes it from 88% to 0%).
    freeze_bn: Optional[bool] = None
    resume: bool = True
    seed: int = 0
    progress: bool = True
    # Keras dtype policy (core.keras.PRECISIONS). mixed_bfloat16 runs the backbone in bfloat16 (the STN and the
    # context head stay float32, lprnet.model.F32); the weights stay float32, so exports do not change.
    precision: str = "float32"


@dataclass
class History:
    epoch: List[int] = field(default_factory=list)
    loss: List[float] = field(default_factory=list)
    val_loss: List[float] = field(default_factory=list)
    val_sequence_accuracy: List[float] = field(default_factory=list)
    val_char_accuracy: List[float] = field(default_factory=list)
    learning_rate: List[float] = field(default_factory=list)


def encode_labels(texts: List[str], charset: Charset) -> Tuple[np.ndarray, np.ndarray]:
    """Texts -> dense int32 ids [N, max_len] (padded with the blank) and lengths [N]."""
    ids = [charset.encode(t) for t in texts]
    too_long = [t for t, i in zip(texts, ids) if 2 * len(i) + 1 > NUM_STEPS]
    if too_long:
        raise AlprError(f"{len(too_long)} labels are too long for {NUM_STEPS} CTC steps, e.g. {too_long[0]!r}")
    width = max(len(i) for i in ids)
    out = np.full((len(ids), width), charset.blank, np.int32)
    for row, i in enumerate(ids):
        out[row, : len(i)] = i
    return out, np.array([len(i) for i in ids], np.int32)


# ----------------------------------------------------------------------------------- augmentation


def _augment(image, rng_seed):
    """One uint8 [24,94,3] crop -> float32 [24,94,3] in pixel units, randomly distorted."""
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(rng_seed, 8)
    img = tf.cast(image, tf.float32)
    h, w = float(INPUT_HEIGHT), float(INPUT_WIDTH)

    # Perspective + crops that cut or pad: move the four corners independently (perspective) on
    # top of a common scale and shift (zoom in cuts the plate, zoom out pads it with its border).
    # Kept mild: at most ~4 px cut at a side, so that no character of the label leaves the crop.
    scale = tf.random.stateless_uniform([], seeds[0], 0.92, 1.04)
    shift = tf.random.stateless_uniform([2], seeds[1], -1.0, 1.0) * [0.015 * w, 0.06 * h]
    jitter = tf.random.stateless_uniform([4, 2], seeds[2], -1.0, 1.0) * [0.015 * w, 0.06 * h]
    dst = tf.constant([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    center = tf.constant([w / 2.0, h / 2.0])
    src = (dst - center) * scale + center + shift + jitter
    transform = _projective(dst, src)
    img = tf.raw_ops.ImageProjectiveTransformV3(
        images=img[None], transforms=transform[None], output_shape=[INPUT_HEIGHT, INPUT_WIDTH],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST",
    )[0]

    # Colour: brightness, contrast, saturation, hue (hue on BGR is still a hue rotation).
    img = img / 255.0
    img = tf.image.stateless_random_brightness(img, 0.2, seeds[3])
    img = tf.image.stateless_random_contrast(img, 0.7, 1.3, seeds[4])
    img = tf.image.stateless_random_saturation(img, 0.6, 1.4, seeds[5])
    img = tf.image.stateless_random_hue(img, 0.04, seeds[6])
    img = tf.clip_by_value(img, 0.0, 1.0) * 255.0

    # Blur (half of the time) and sensor noise.
    k = tf.constant([1.0, 2.0, 1.0])
    kernel = (k[:, None] * k[None, :]) / 16.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    blurred = tf.nn.depthwise_conv2d(img[None], kernel, [1, 1, 1, 1], "SAME")[0]
    u = tf.random.stateless_uniform([2], seeds[7])
    img = tf.where(u[0] < 0.5, blurred, img)
    sigma = u[1] * 6.0
    img = img + tf.random.stateless_normal(tf.shape(img), seeds[7] + 1) * sigma
    return tf.clip_by_value(img, 0.0, 255.0)


def _projective(dst, src):
    """8 coefficients mapping output points ``dst`` to input points ``src`` (TF's convention)."""
    import tensorflow as tf

    rows = []
    rhs = []
    for i in range(4):
        x, y = dst[i, 0], dst[i, 1]
        u, v = src[i, 0], src[i, 1]
        rows.append(tf.stack([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y]))
        rows.append(tf.stack([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y]))
        rhs.extend([u, v])
    a = tf.stack(rows)
    b = tf.stack(rhs)[:, None]
    return tf.linalg.solve(a, b)[:, 0]


def make_dataset(images: np.ndarray, labels: np.ndarray, lengths: np.ndarray, batch_size: int,
                 augment: bool, shuffle: bool, seed: int):
    """tf.data of (normalised float images, dense labels, label lengths)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, labels, lengths))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if augment:
        counter = tf.data.Dataset.random(seed=seed).map(lambda s: tf.stack([s, s // 7 + 1]))
        ds = tf.data.Dataset.zip((ds, counter)).map(
            lambda item, s: ((_augment(item[0], s) - MEAN) * SCALE, item[1], item[2]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(lambda im, lab, n: ((tf.cast(im, tf.float32) - MEAN) * SCALE, lab, n))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------- training


def ctc_loss(labels, logits, lengths, blank: int):
    """Per-example CTC loss; labels dense, padded with the blank beyond ``lengths``."""
    import tensorflow as tf

    n = tf.shape(logits)[0]
    return tf.nn.ctc_loss(
        labels=labels, logits=logits, label_length=lengths,
        logit_length=tf.fill([n], tf.shape(logits)[1]), logits_time_major=False, blank_index=blank,
    )


class ScalarLog:
    """TensorBoard scalars written as an event file (TFRecord of Event protos).

    Written directly, so that the logs exist even where the tensorboard package (which
    tf.summary needs) is not installed; ``tensorboard --logdir OUT/logs`` reads them.
    """

    def __init__(self, logdir: Path) -> None:
        import socket
        import time

        import tensorflow as tf

        logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self._writer = tf.io.TFRecordWriter(str(logdir / name))
        from tensorflow.core.util import event_pb2

        self._event_pb2 = event_pb2
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def scalars(self, step: int, values: Dict[str, float]) -> None:
        import time

        from tensorflow.core.framework import summary_pb2

        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]
        )
        self._write(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _strategy():
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def _split(images: np.ndarray, texts: List[str], fraction: float, seed: int):
    if len(images) < 2:
        raise AlprError("need at least 2 usable crops to hold some out for validation")
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = min(len(images) - 1, max(1, int(round(len(images) * fraction))))
    val, train = order[:n_val], order[n_val:]
    return images[train], [texts[i] for i in train], images[val], [texts[i] for i in val]


def _load(source: str, charset: Charset, progress: bool, log: Callable[[str], None]):
    listing: Listing = list_samples(source, charset)
    images, texts = load_crops(listing, progress=progress)
    if listing.skipped:
        log(f"{source}: {listing.summary()}")
    if listing.wide_two_line:
        two_line = sum(s.lines == 2 for s in listing.samples)
        hint = (": rendered at a fixed size such as 94x24? render with --size original"
                if listing.wide_two_line > 0.2 * two_line else "")
        log(f"{source}: warning: {listing.wide_two_line} of {two_line} crops labelled two-line are too wide "
            f"for the runtime to stitch (aspect >= {TWO_LINE_MAX_ASPECT}); training stitches them, the "
            f"runtime reads them as one line{hint}")
    return images, texts, len(listing.skipped)


def plot_curves(history: History, path: Path) -> None:
    plot_two_panels(path, history.epoch, {"train": history.loss, "validation": history.val_loss}, "CTC loss",
                    {"sequence": history.val_sequence_accuracy, "character": history.val_char_accuracy},
                    "validation accuracy")


def plot_two_panels(path: Path, epochs: Sequence[float], left: Dict[str, Sequence[float]], left_label: str,
                    right: Dict[str, Sequence[float]], right_label: str) -> None:
    """Training curves as a PNG (written atomically): a loss panel and an accuracy panel in [0, 1], each a
    line per {label: values} over ``epochs``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from core.cli import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, series, label in ((axes[0], left, left_label), (axes[1], right, right_label)):
        for name, values in series.items():
            ax.plot(epochs, values, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> History:
    """Train (or resume) and return the history; see the module docstring for the outputs."""
    import keras
    import tensorflow as tf

    from core.cli import atomic_path
    from core.keras.layers import check_precision, precision_policy, slow_precision_note
    from lprnet.evaluate import score
    from lprnet.model import build_lprnet, load_keras_model

    check_precision(cfg.precision)  # before minutes of loading crops
    charset = load_charset(cfg.charset)
    out = Path(cfg.out_dir)
    keras.utils.set_random_seed(cfg.seed)

    images, texts, bad = _load(cfg.data, charset, cfg.progress, log)
    if cfg.val_data:
        val_images, val_texts, bad_val = _load(cfg.val_data, charset, cfg.progress, log)
        bad += bad_val
    else:
        images, texts, val_images, val_texts = _split(images, texts, cfg.val_split, cfg.seed)
    labels, lengths = encode_labels(texts, charset)
    val_labels, val_lengths = encode_labels(val_texts, charset)
    log(f"training on {len(images)} crops, validating on {len(val_images)}, {bad} bad files skipped")
    out.mkdir(parents=True, exist_ok=True)  # only once there is something to train on

    note = slow_precision_note(cfg.precision)
    if note:
        log(note)
    strategy = _strategy()
    global_batch = cfg.batch_size
    steps_per_epoch = max(1, math.ceil(len(images) / global_batch))
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(min(total_steps // 2, cfg.warmup_epochs * steps_per_epoch))
    with strategy.scope():
        with precision_policy(cfg.precision):
            model = build_lprnet(charset.num_classes, stn=cfg.stn, dropout=cfg.dropout)
        if cfg.init_weights:
            # Copy layer by layer (names match): the start may lack the STN, and the dropout
            # rate is this run's, not the one the weights were saved with.
            start = load_keras_model(cfg.init_weights, charset.num_classes)
            names = {layer.name for layer in model.layers}
            for layer in start.layers:
                if layer.weights and layer.name in names:
                    model.get_layer(layer.name).set_weights(layer.get_weights())
        freeze_bn = cfg.freeze_bn if cfg.freeze_bn is not None else bool(cfg.init_weights)
        if freeze_bn:
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.learning_rate * 0.01 if warmup else cfg.learning_rate,
            decay_steps=max(1, total_steps - warmup), alpha=0.01,
            warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup,
        )
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay,
                                           clipnorm=5.0)
        optimizer.build(model.trainable_variables)

    history = History()
    state_path = out / "state.json"
    start_epoch = 0
    best = -1.0
    if cfg.resume and state_path.is_file() and (out / "last.weights.h5").is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        model.load_weights(str(out / "last.weights.h5"))
        opt_state = np.load(out / "optimizer.npz")
        for i, var in enumerate(optimizer.variables):
            var.assign(opt_state[f"v{i}"])
        history = History(**state["history"])
        start_epoch = int(state["epoch"])
        best = float(state["best"])
        log(f"resumed from {out} at epoch {start_epoch}")

    # On one device, one iterator over the repeated data for the whole run, ``steps_per_epoch`` batches an epoch: the
    # same batches as an iterator per epoch (tests/test_lprnet_train.py), without deleting an iterator at each
    # epoch's end, which waits on a tf.data worker thread and left the cores idle for up to about 45 s after 9 of the
    # 21 epochs of session 46's cn recipe (model card, "Session 47"). Several replicas keep an iterator per epoch:
    # their rebatching would merge an epoch's short last batch with the next epoch's first crops.
    data = make_dataset(images, labels, lengths, global_batch, cfg.augment, True, cfg.seed + start_epoch)
    one_iterator = strategy.num_replicas_in_sync == 1
    train_ds = strategy.experimental_distribute_dataset(data.repeat() if one_iterator else data)
    batches = iter(train_ds) if one_iterator else None
    blank = charset.blank

    @tf.function
    def train_step(batch):
        def step(x, y, n):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                per_example = ctc_loss(y, logits, n, blank)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        per_replica = strategy.run(step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    @tf.function
    def predict(x):
        return model(x, training=False)

    val_x = (val_images.astype(np.float32) - MEAN) * SCALE
    writer = ScalarLog(out / "logs")

    for epoch in range(start_epoch, cfg.epochs):
        losses = []
        bar = None
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", leave=False)
        epoch_batches = (next(batches) for _ in range(steps_per_epoch)) if batches is not None else train_ds
        for batch in epoch_batches:
            loss = float(train_step(batch))
            if not math.isfinite(loss):
                raise AlprError(f"training diverged (loss {loss}) at epoch {epoch + 1}; lower --learning_rate")
            losses.append(loss)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
        if bar is not None:
            bar.close()

        val_logits = np.concatenate([np.asarray(predict(val_x[i : i + 256])) for i in range(0, len(val_x), 256)])
        val_loss = float(np.mean(ctc_loss(val_labels, val_logits, val_lengths, blank)))
        preds = [charset.decode(r.ids) for r in greedy_decode(val_logits, blank=blank, is_probs=False)]
        metrics = score(preds, val_texts, charset)
        lr = float(schedule(optimizer.iterations))
        history.epoch.append(epoch + 1)
        history.loss.append(float(np.mean(losses)))
        history.val_loss.append(val_loss)
        history.val_sequence_accuracy.append(float(metrics["sequence_accuracy"]))  # type: ignore[arg-type]
        history.val_char_accuracy.append(float(metrics["char_accuracy"]))  # type: ignore[arg-type]
        history.learning_rate.append(lr)
        writer.scalars(epoch + 1, {
            "loss/train": history.loss[-1], "loss/validation": val_loss,
            "accuracy/sequence": history.val_sequence_accuracy[-1],
            "accuracy/character": history.val_char_accuracy[-1], "learning_rate": lr,
        })
        log(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {history.loss[-1]:.4f}, val loss {val_loss:.4f}, "
            f"val seq acc {history.val_sequence_accuracy[-1]:.4f}, char acc {history.val_char_accuracy[-1]:.4f}"
        )

        with atomic_path(out / "last.weights.h5", suffix=".weights.h5") as tmp:
            model.save_weights(str(tmp))
        if history.val_sequence_accuracy[-1] > best:
            best = history.val_sequence_accuracy[-1]
            with atomic_path(out / "best.weights.h5", suffix=".weights.h5") as tmp:
                model.save_weights(str(tmp))
        with atomic_path(out / "optimizer.npz", suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{f"v{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
        state = {"epoch": epoch + 1, "best": best, "history": asdict(history), "config": asdict(cfg)}
        with atomic_path(state_path, suffix=".json") as tmp:
            tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
        plot_curves(history, out / "curves.png")
    writer.close()
    return history
