"""Train the province or top-line letter check of the Chinese reader, or the region, top-line digits or Hangul
letter check of the Korean one (``lprnet.province``), and export it as int8 TFLite.

    python -m lprnet.train_province --data runs/reader_cn/data/train/labels.txt \\
        --val_data runs/reader_cn/data/val/labels.txt --out runs/province_cn
    K=runs/reader_kr/data
    python -m lprnet.train_province --charset kr --val_data $K/val/labels.txt --out runs/region_kr \\
        --data $K/train/labels.txt,$K/yellow/labels.txt,$K/yellow2/labels.txt,$K/green2/labels.txt

(the recipe's ``train`` list already names the ``yellow``, ``yellow2`` and ``green2`` crops: named again they
weigh twice, as in the shipped region check's training)

    python -m lprnet.train_province --charset kr --field digits --data Y2/labels.txt,G2/labels.txt \
        --val_data V/labels.txt --out runs/digits_kr

(``Y2``, ``G2``: renders of ``kr_yellow2`` and ``kr_green2`` plates, ``tools.synth.plates --kind``; only two-line
crops with a region and two digits after it give views)

    python -m lprnet.train_province --charset cn --field letter --data Y/labels.txt,YV/labels.txt \
        --val_data V/labels.txt --out runs/letter_cn

(``Y``, ``YV``: renders of ``cn_yellow2`` plates, the second with ``--font_variants --shear 0.35``)

    python -m lprnet.train_province --charset kr --field hangul --data R/labels.txt --val_data V/labels.txt \
        --out runs/hangul_kr

(``R``: renders of the Korean mix; only one-line crops give views)

Reads plate crops from label files (``lprnet.dataset``; the line count of each crop says how its view is
cut, ``lprnet.preprocess.province_view`` with the field's shares and starts, ``lprnet.province.FIELDS``), trains a
small CNN on the views of the crops' field (province, letter, region, digits or hangul; crops without it are left
out) under the default ``tf.distribute`` strategy (MirroredStrategy when several GPUs are visible), keeps the epoch
with the best validation accuracy, and writes into ``--out``: ``province.weights.h5``, ``province-int8.tflite``
with its ``.json`` (classes, ``--min_probability``, the view's shares and, for digits, letter and hangul, its starts,
the tokens or pattern the field follows and the line counts it checks), ``history.csv`` and ``curves.png``.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from core.errors import AlprError
from lprnet.charset import load_charset
from lprnet.preprocess import (
    MEAN,
    PROVINCE_VIEW_HEIGHT,
    PROVINCE_VIEW_WIDTH,
    SCALE,
    normalize,
    province_view,
)
from lprnet.province import CHARSET_FIELDS, FIELD_CHARSET, FIELDS, CheckField, find_field, parse_gate

DEFAULT_FIELD = {c: names[0] for c, names in CHARSET_FIELDS.items()}  # each charset's first check
# chosen on the cn validation crops (model card, session 39)
DEFAULT_MIN_PROBABILITY = 0.8
# the threshold and gate (read_confidence_below) a field's .json gets unless the command names them: the shipped
# Hangul check's (session 43, runs/s43/RULE_gate.md); the other fields get DEFAULT_MIN_PROBABILITY and no gate
FIELD_SETTINGS: Dict[str, Tuple[float, Optional[float]]] = {"hangul": (0.85, 0.97)}


def build_model(num_classes: int):
    """Conv-BN-ReLU blocks of 32, 2x64, 2x128, 256 channels with three 2x2 poolings, global average
    pooling, dropout and a dense layer: logits [N, num_classes] from views [N, 40, 48, 3] in [-1, 1)."""
    import keras
    from keras import layers

    def block(x, channels: int, count: int):
        for _ in range(count):
            x = layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        return x

    inp = keras.Input((PROVINCE_VIEW_HEIGHT, PROVINCE_VIEW_WIDTH, 3), dtype="float32", name="view")
    x = layers.MaxPooling2D()(block(inp, 32, 1))
    x = layers.MaxPooling2D()(block(x, 64, 2))
    x = layers.MaxPooling2D()(block(x, 128, 2))
    x = layers.GlobalAveragePooling2D()(block(x, 256, 1))
    x = layers.Dropout(0.2)(x)
    return keras.Model(inp, layers.Dense(num_classes, name="logits")(x), name="province")


def load_views(sources: Union[str, Sequence[str]], charset: str = "cn", progress: bool = True,
               field: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray, int]:
    """uint8 views [N, 40, 48, 3] and class ids [N] (into ``FIELDS[field].classes``; ``field`` None: the
    charset's ``DEFAULT_FIELD``) of the crops in ``sources`` (label files or folders, in order) that have the
    field (``lprnet.province.find_field``) and a line count it checks; also how many crops were left out."""
    from lprnet.dataset import list_samples, load_originals

    spec = _field(charset, field)
    classes, cs = spec.classes, load_charset(charset)
    views: List[np.ndarray] = []
    ids: List[int] = []
    total = 0
    for source in [sources] if isinstance(sources, str) else sources:
        listing = list_samples(source, cs)
        crops, texts = load_originals(listing, progress=progress)
        total += len(texts)
        for crop, text, sample in zip(crops, texts, listing.samples):
            found = find_field(text, classes, spec.after, spec.after_pattern)
            if found is not None and (sample.lines or 1) in spec.lines:
                views.append(province_view(crop, sample.lines, shares=spec.shares, starts=spec.starts))
                ids.append(classes.index(found[1]))
    if not views:
        raise AlprError(f"no crops in {sources} have the {charset} {field or DEFAULT_FIELD[charset]} check's field")
    return np.stack(views), np.array(ids, np.int32), total - len(views)


def _dataset(views: np.ndarray, ids: np.ndarray, batch_size: int, seed: int):
    """Shuffled batches with a shift of up to 3 px and a brightness/contrast jitter, normalised."""
    import tensorflow as tf

    def augment(x, y):
        x = tf.cast(x, tf.float32)
        x = tf.image.resize_with_crop_or_pad(x, PROVINCE_VIEW_HEIGHT + 6, PROVINCE_VIEW_WIDTH + 6)
        x = tf.image.random_crop(x, (PROVINCE_VIEW_HEIGHT, PROVINCE_VIEW_WIDTH, 3))
        x = x * tf.random.uniform((), 0.7, 1.3) + tf.random.uniform((), -25.0, 25.0)
        return (tf.clip_by_value(x, 0.0, 255.0) - MEAN) * SCALE, y  # lprnet.preprocess.normalize

    return (tf.data.Dataset.from_tensor_slices((views, ids)).shuffle(min(len(ids), 50000), seed=seed)
            .map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=True)
            .prefetch(2))


def _plot(rows: Sequence[dict], path: Path, what: str = "province") -> None:
    from lprnet.train import plot_two_panels

    def col(key: str) -> List[float]:
        return [r[key] for r in rows]

    plot_two_panels(path, col("epoch"), {"train": col("loss"), "validation": col("val_loss")}, "cross-entropy",
                    {"train": col("accuracy"), "validation": col("val_accuracy")}, f"{what} accuracy")


def _field(charset: str, field: Optional[str]) -> CheckField:
    """The ``lprnet.province.FIELDS`` entry of ``field`` (None: the charset's first check), which must be of
    ``charset``."""
    name = field or DEFAULT_FIELD[charset]
    if FIELD_CHARSET.get(name) != charset:
        raise AlprError(f"the {name} check is not one of charset {charset!r}'s")
    return FIELDS[name]


def export_int8(model, calibration: np.ndarray, out_path: Path, min_probability: float,
                charset: str = "cn", field: Optional[str] = None,
                read_confidence_below: Optional[float] = None) -> Path:
    """Full-integer int8 TFLite (int8 input and output) calibrated on uint8 views, and its metadata: the
    field's classes (one-character classes as one string, others as a list), view shares and, where they are
    not the defaults, where the view starts, the tokens the field follows, the line counts it checks and the
    read confidence below which it looks at a read."""
    import tensorflow as tf

    from core.cli import atomic_path
    from lprnet.export import _convert, _write
    from lprnet.province import metadata_path

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    data = _convert(converter, "int8", normalize(calibration), len(calibration))
    _write(data, out_path)
    spec = _field(charset, field)
    classes = spec.classes
    meta = {"classes": "".join(classes) if all(len(c) == 1 for c in classes) else list(classes),
            "min_probability": min_probability, "view": [PROVINCE_VIEW_WIDTH, PROVINCE_VIEW_HEIGHT],
            "shares": list(spec.shares)}
    if any(spec.starts):
        meta["starts"] = list(spec.starts)
    if spec.after:
        meta["after"] = list(spec.after)
    if spec.after_pattern:
        meta["after_pattern"] = spec.after_pattern
    if spec.lines != (1, 2):
        meta["lines"] = list(spec.lines)
    if read_confidence_below is not None:
        meta["read_confidence_below"] = read_confidence_below
    with atomic_path(metadata_path(out_path), suffix=".json") as tmp:
        tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    return out_path


def save_weights_only(model, path: Path) -> None:
    """``model``'s weights into ``path`` without the optimizer's state, which Keras 3 checkpoints keep (three
    times the size): a fresh model of the same shape takes the weights and writes them."""
    from core.cli import atomic_path

    clean = build_model(int(model.output_shape[-1]))
    clean.set_weights(model.get_weights())
    with atomic_path(path, suffix=".weights.h5") as tmp:
        clean.save_weights(str(tmp))


def main(argv: Sequence[str]) -> None:
    import keras
    from absl import flags

    from lprnet.train import _strategy

    del argv
    f = flags.FLAGS
    name = f.field or DEFAULT_FIELD[f.charset]
    field_threshold, field_gate = FIELD_SETTINGS.get(name, (DEFAULT_MIN_PROBABILITY, None))
    threshold = f.min_probability if f["min_probability"].present else field_threshold
    gate = f.read_confidence_below if f["read_confidence_below"].present else field_gate
    if gate is not None:
        try:
            parse_gate(gate)
        except ValueError as exc:
            raise AlprError(f"--{exc}") from None
    classes = _field(f.charset, f.field).classes  # a field of another charset: refused before any output
    out = Path(f.out)
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, left = load_views(f.data, f.charset, field=f.field)
    x_val, y_val, _ = load_views(f.val_data, f.charset, field=f.field)
    print(f"{len(y_train)} training views ({left} crops without the field left out), {len(y_val)} validation views")
    keras.utils.set_random_seed(f.seed)
    steps = max(1, len(y_train) // f.batch_size) if not f.max_steps else f.max_steps
    with _strategy().scope():
        model = build_model(len(classes))
        if f.init_weights:
            model.load_weights(f.init_weights)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, f.epochs * steps, warmup_target=f.learning_rate, warmup_steps=min(300, f.epochs * steps // 10))
        model.compile(keras.optimizers.Adam(schedule),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    weights = out / "province.weights.h5"
    history = model.fit(
        _dataset(x_train, y_train, f.batch_size, f.seed).repeat(), epochs=f.epochs, steps_per_epoch=steps,
        validation_data=(normalize(x_val), y_val), verbose=1,
        callbacks=[keras.callbacks.ModelCheckpoint(str(weights), monitor="val_accuracy", save_best_only=True,
                                                   save_weights_only=True)])
    rows = [{"epoch": i + 1, **{k: float(v[i]) for k, v in history.history.items()}}
            for i in range(len(history.epoch))]
    from core.cli import atomic_path

    with atomic_path(out / "history.csv", suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, out / "curves.png", name)
    model.load_weights(str(weights))
    save_weights_only(model, weights)
    rng = np.random.default_rng(f.seed)
    calib = x_train[rng.permutation(len(x_train))[: f.calibration_count]]
    tflite = export_int8(model, calib, out / "province-int8.tflite", threshold, f.charset, f.field, gate)
    best = max(r["val_accuracy"] for r in rows)
    print(f"best validation {name} accuracy {best:.4f}; wrote {weights}, {tflite} (+ .json), history.csv, curves.png")


if __name__ == "__main__":
    from absl import app, flags

    from core.cli import guarded

    flags.DEFINE_enum("charset", "cn", sorted(DEFAULT_FIELD), "the reader's charset (its checks: cn province, "
                      "letter; kr region, digits, hangul)")
    flags.DEFINE_enum("field", None, sorted(FIELDS), "which check (default: the charset's first: province for cn, "
                      "region for kr; digits: kr, the top line's two digits of two-line plates; letter: cn, the top "
                      "line's letter of two-line plates; hangul: kr, the letter of one-line plates)")
    flags.DEFINE_list("data", None, "training crops: label files or folders (lprnet.dataset), comma-separated")
    flags.DEFINE_string("val_data", None, "validation crops: a label file or folder")
    flags.DEFINE_string("out", None, "output folder")
    flags.DEFINE_integer("epochs", 6, "epochs")
    flags.DEFINE_integer("batch_size", 128, "batch size")
    flags.DEFINE_float("learning_rate", 2e-3, "peak learning rate (Adam, warm-up then cosine decay)")
    flags.DEFINE_integer("max_steps", 0, "steps per epoch (0: one pass over the training views)")
    flags.DEFINE_string("init_weights", None, "start from these province.weights.h5")
    flags.DEFINE_float("min_probability", DEFAULT_MIN_PROBABILITY, "the runtime's threshold, written to the .json "
                       "(default 0.8; hangul: 0.85)")
    flags.DEFINE_float("read_confidence_below", None, "written to the .json: the runtime runs the check only on "
                       "reads less sure than this (default: hangul 0.97, the other fields on every read)")
    flags.DEFINE_integer("calibration_count", 300, "training views that calibrate the int8 export")
    flags.DEFINE_integer("seed", 1, "random seed")
    flags.mark_flags_as_required(["data", "val_data", "out"])
    app.run(guarded(main))
