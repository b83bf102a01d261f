"""Training a Darknet-cfg detector in TensorFlow (what ``train.py`` runs).

``train(TrainConfig)``: builds the cfg's Keras model (``core.keras.builder``) at the training input
size, optionally loads initial Darknet ``.weights``, and trains it with the YOLOv4 loss of
``core.keras.loss`` on a YOLO-txt dataset (``core.keras.data``) under a ``tf.distribute`` strategy:
the default one on a single device, ``MirroredStrategy`` over all GPUs when there are several. The
learning rate warms up (Darknet's burn-in: ``lr * (step / warmup) ** 4``) then follows a cosine
decay to ``lr * final_lr_fraction``. Every epoch writes a resumable checkpoint (model and optimizer
variables, epoch, step, history) into ``out_dir/checkpoints``; TensorBoard scalars go to
``out_dir/tensorboard``, the curves to ``out_dir/training_curves.png``, validation mAP (every
``eval_every`` epochs, ``core.metrics``) into the history. At the end the model is written as Darknet
``.weights`` (``out_dir/<name>.weights`` and ``<name>_best.weights`` for the best validation
mAP@0.5), so it goes through ``save_model.py`` / ``convert_tflite.py`` like any Darknet model.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.cli import atomic_copy, atomic_path
from core.errors import AlprError
from core.keras.data import NO_AUGMENT, AugmentConfig, Record, letterboxed, load_records, make_dataset, undecodable
from core.keras.loss import LossSpec, loss_spec_from_cfg, yolo_loss
from core.model_info import YoloHead


@dataclass(frozen=True)
class TrainConfig:
    cfg: str
    train: str  # dataset folder or list file (train.txt)
    out_dir: str
    valid: Optional[str] = None
    weights: Optional[str] = None  # initial Darknet .weights
    input_size: int = 416
    batch_size: int = 16
    epochs: int = 30
    lr: float = 1e-3
    final_lr_fraction: float = 0.02
    warmup_steps: int = 200
    optimizer: str = "adam"  # adam (AdamW) | sgd (momentum 0.949, Darknet's)
    weight_decay: float = 5e-4
    box_gain: float = 1.0
    eval_every: int = 5  # epochs; 0: never
    eval_max_images: int = 500
    workers: int = 2
    seed: int = 0
    name: str = "detector"
    resume: bool = True
    max_steps: Optional[int] = None  # stop early (smoke tests, time budgets)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    progress: bool = True
    precision: str = "float32"  # core.keras.PRECISIONS; mixed_bfloat16 computes in bfloat16


@dataclass
class TrainResult:
    weights: Path
    best_weights: Optional[Path]
    epochs_done: int
    steps_done: int
    history: Dict[str, list]
    seconds_per_step: float


def float32_outputs(outputs) -> list:
    """The model's head outputs as a list of float32 tensors (the loss and decoding run in float32)."""
    import tensorflow as tf

    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    return [tf.cast(o, tf.float32) for o in outputs]


def get_strategy():
    """MirroredStrategy over all GPUs when there are several, else the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def learning_rate(step: int, total: int, cfg: TrainConfig) -> float:
    """Burn-in ``(step / warmup) ** 4`` then cosine from ``lr`` to ``lr * final_lr_fraction``."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step / cfg.warmup_steps) ** 4
    span = max(1, total - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    lo = cfg.lr * cfg.final_lr_fraction
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * t))


def _make_optimizer(cfg: TrainConfig):
    import keras

    if cfg.optimizer == "adam":
        opt = keras.optimizers.AdamW(learning_rate=cfg.lr, weight_decay=cfg.weight_decay)
        opt.exclude_from_weight_decay(var_names=["bn_", "bias", "beta", "gamma"])
        return opt
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=cfg.lr, momentum=0.949, nesterov=False,
                                    weight_decay=cfg.weight_decay)
    raise AlprError(f"unknown optimizer {cfg.optimizer!r} (adam or sgd)")


# ------------------------------------------------------------------------------------ checkpoints
def _ckpt_dir(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def save_checkpoint(out_dir: Path, model, optimizer, state: dict, keep: int = 2) -> Path:
    """Model + optimizer variables (npz) and the training state (json); atomic; keeps the last ``keep``."""
    d = _ckpt_dir(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"ckpt-{state['step']:08d}.npz"
    arrays = {f"m{i}": np.asarray(v) for i, v in enumerate(model.weights)}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    with atomic_path(d / "latest.json") as tmp:
        tmp.write_text(json.dumps({"checkpoint": path.name, **state}, indent=1), encoding="utf-8")
    for old in sorted(d.glob("ckpt-*.npz"))[:-keep]:
        old.unlink()
    return path


def load_checkpoint(out_dir: Path, model, optimizer) -> Optional[dict]:
    """Restore the latest checkpoint into ``model`` and ``optimizer``; its state, or None when there is none."""
    latest = _ckpt_dir(out_dir) / "latest.json"
    if not latest.is_file():
        return None
    state = json.loads(latest.read_text(encoding="utf-8"))
    path = _ckpt_dir(out_dir) / state["checkpoint"]
    with np.load(path) as data:
        m = [data[f"m{i}"] for i in range(len(model.weights))]
        if len([k for k in data.files if k.startswith("m")]) != len(m):
            raise AlprError(f"{path} does not belong to this model (different number of variables)")
        for v, a in zip(model.weights, m):
            if tuple(v.shape) != a.shape:
                raise AlprError(f"{path} does not belong to this model ({v.path}: {a.shape} vs {tuple(v.shape)})")
            v.assign(a)
        n_opt = len([k for k in data.files if k.startswith("o")])
        if n_opt == len(optimizer.variables):
            for i, v in enumerate(optimizer.variables):
                v.assign(data[f"o{i}"])
    return state


# ------------------------------------------------------------------------------------ validation
class KerasDetector:
    """A Keras model of a cfg as a detector (``detect(bgr) -> [Detection]``), decoding in numpy.

    Used for validation during training and by ``evaluate.py`` on ``.weights`` files.
    """

    def __init__(self, model, heads: Sequence[YoloHead], class_names: Sequence[str], input_size: int):
        self.model = model
        self.heads = tuple(heads)
        self.class_names = tuple(class_names)
        self.size = int(input_size)
        self._fn = None

    @classmethod
    def from_darknet(cls, cfg_path: str, weights: str, class_names: Sequence[str], input_size: int
                     ) -> KerasDetector:
        from core.keras.convert import load_darknet, model_info_for

        conv = load_darknet(cfg_path, weights, input_size)
        info = model_info_for(conv.cfg, class_names)
        return cls(conv.model, info.heads, class_names, input_size)

    def raw(self, x: np.ndarray) -> List[np.ndarray]:
        import tensorflow as tf

        if self._fn is None:
            self._fn = tf.function(lambda t: float32_outputs(self.model(t, training=False)), reduce_retracing=True)
        return [np.asarray(o) for o in self._fn(tf.constant(x))]

    def detect(self, bgr: np.ndarray, score_threshold: float = 0.25, iou_threshold: float = 0.45):
        from core.types import Detection
        from core.yolo import decode_heads, filter_and_nms, letterbox_image, to_input_tensor, undo_letterbox

        rgb, lb = letterbox_image(bgr, self.size, self.size)
        raws = self.raw(to_input_tensor(rgb))
        boxes, scores = decode_heads([r[0] for r in raws], self.heads, len(self.class_names), self.size, self.size)
        boxes, scores, classes = filter_and_nms(boxes, scores, score_threshold, iou_threshold)
        boxes = undo_letterbox(boxes, lb, self.size, self.size)
        return [Detection(box=tuple(float(v) for v in b), score=float(s), class_id=int(c),
                          class_name=self.class_names[int(c)]) for b, s, c in zip(boxes, scores, classes)]


def validate(model, heads: Sequence[YoloHead], records: Sequence[Record], num_classes: int, size: int,
             batch_size: int = 8, score_threshold: float = 0.005) -> Dict[str, float]:
    """mAP@0.5 and mAP@0.5:0.95 (overall and per class id) of ``model`` on letterboxed records."""
    import tensorflow as tf

    from core.metrics import ImageBoxes, evaluate
    from core.yolo import decode_heads, filter_and_nms

    fn = tf.function(lambda t: float32_outputs(model(t, training=False)), reduce_retracing=True)
    dets, truths = [], []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        pairs = [letterboxed(r, size) for r in chunk]
        bad = set(undecodable(chunk))  # its true boxes are unknown: not scored
        x = np.stack([p[0] for p in pairs]).astype(np.float32) / 255.0
        outs = [np.asarray(o) for o in fn(tf.constant(x))]
        for k, (_, labels) in enumerate(pairs):
            if chunk[k].path in bad:
                continue
            boxes, scores = decode_heads([o[k] for o in outs], heads, num_classes, size, size)
            b, s, c = filter_and_nms(boxes, scores, score_threshold, 0.45)
            dets.append(ImageBoxes.make(b, c, s))
            xyxy = np.concatenate([labels[:, 1:3] - labels[:, 3:5] / 2, labels[:, 1:3] + labels[:, 3:5] / 2], 1)
            truths.append(ImageBoxes.make(xyxy, labels[:, 0].astype(np.int64)))
    m = evaluate(dets, truths, num_classes)
    out = {"map50": m.map50, "map50_95": m.map50_95}
    for c in m.per_class:
        out[f"ap50_{c.class_id}"] = c.ap50
    return out


# ------------------------------------------------------------------------------------ plots
def plot_curves(history: Dict[str, list], path: Path, class_names: Sequence[str] = ()) -> None:
    """Loss terms per epoch and validation mAP as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ep = history.get("epoch", [])
    for key in ("total", "box", "obj", "cls"):
        if history.get(key):
            axes[0].plot(ep, history[key], label=key, marker="." if len(ep) < 30 else None)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss per image")
    axes[0].set_yscale("log")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    vep = history.get("val_epoch", [])
    for key in sorted(k for k in history if k.startswith("val_")):
        if key == "val_epoch" or not history[key]:
            continue
        label = key[4:]
        if label.startswith("ap50_"):
            cid = int(label[5:])
            label = f"AP50 {class_names[cid] if cid < len(class_names) else cid}"
        axes[1].plot(vep, history[key], label=label, marker="o")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylim(0, 1)
    axes[1].set_title("validation")
    axes[1].grid(alpha=0.3)
    if vep:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------ training
def _set_bn_momentum(model, momentum: float) -> None:
    """Faster-moving batch-norm statistics for short trainings (the exported weights do not depend on it)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def init_head_biases(model, dcfg, objectness_prior: float = 0.01) -> None:
    """Start the heads' objectness at a small probability instead of 0.5 (training from scratch).

    With thousands of candidates per image and a handful of objects, logits of 0 make the first
    hundreds of steps unlearn objectness everywhere; a prior (as in RetinaNet) skips that.
    """
    c = dcfg.num_classes
    logit = math.log(objectness_prior / (1 - objectness_prior))
    for y in dcfg.yolo_layers:
        layer = model.get_layer(f"conv_{y.index - 1}")
        kernel, bias = layer.get_weights()
        bias = bias.reshape(len(y.mask), 5 + c)
        bias[:, 4] = logit
        layer.set_weights([kernel, bias.reshape(-1)])


def build_training_model(cfg: TrainConfig):
    """(DarknetCfg at the training size, Keras model, LossSpec, weights header)."""
    from core.darknet.cfg import load_cfg
    from core.darknet.weights import WeightsHeader, read_weights
    from core.keras.builder import build_model
    from core.keras.darknet_io import load_darknet_weights

    if cfg.input_size % 32:
        raise AlprError(f"--input_size {cfg.input_size} is not a multiple of 32")
    dcfg = load_cfg(cfg.cfg).with_input_size(cfg.input_size)
    model = build_model(dcfg)
    header = WeightsHeader()
    if cfg.weights:
        header, w = read_weights(cfg.weights, dcfg)
        load_darknet_weights(model, dcfg, w)
    else:
        init_head_biases(model, dcfg)
    _set_bn_momentum(model, 0.97)
    return dcfg, model, loss_spec_from_cfg(dcfg), header


def train(cfg: TrainConfig, log: Callable[[str], None] = print, strategy=None) -> TrainResult:
    """Train (or resume) as ``cfg`` says; ``strategy`` defaults to ``get_strategy()``."""
    import tensorflow as tf

    from core.darknet.weights import WeightsHeader
    from core.keras.convert import save_darknet_weights

    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    import keras

    keras.utils.set_random_seed(cfg.seed)
    strategy = strategy or get_strategy()
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise AlprError(f"--batch_size {cfg.batch_size} is not a multiple of the {replicas} replicas")

    from core.keras.layers import precision_policy, slow_precision_note

    note = slow_precision_note(cfg.precision)
    if note:
        log(note)
    with strategy.scope(), precision_policy(cfg.precision):
        dcfg, model, spec, header = build_training_model(cfg)
        optimizer = _make_optimizer(cfg)
        optimizer.build(model.trainable_variables)
    heads = tuple(YoloHead(grid=h.grid, anchors=h.anchors, scale_x_y=h.scale_x_y) for h in spec.heads)
    num_classes = spec.num_classes

    records, summary = load_records(cfg.train, num_classes)
    log(f"train: {cfg.train}: {summary}")
    valid_records: List[Record] = []
    if cfg.valid:
        valid_records, vsummary = load_records(cfg.valid, num_classes)
        valid_records = valid_records[: cfg.eval_max_images]
        log(f"valid: {cfg.valid}: {vsummary}")
    steps_per_epoch = len(records) // cfg.batch_size
    if steps_per_epoch == 0:
        raise AlprError(f"{len(records)} training images are fewer than one batch of {cfg.batch_size}")
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    history: Dict[str, list] = {"epoch": [], "total": [], "box": [], "obj": [], "cls": [], "lr": [], "val_epoch": []}
    epoch, step, best = 0, 0, -1.0
    state = load_checkpoint(out_dir, model, optimizer) if cfg.resume else None
    if state is not None:
        epoch, step, best, history = state["epoch"], state["step"], state.get("best", -1.0), state["history"]
        log(f"resumed from {state['checkpoint']} (epoch {epoch}, step {step})")

    writer = tf.summary.create_file_writer(str(out_dir / "tensorboard"))

    @tf.function
    def train_step(images, targets):
        def replica_step(images, targets):
            *head_targets, truths = targets
            with tf.GradientTape() as tape:
                raws = float32_outputs(model(images, training=True))
                terms = yolo_loss(raws, head_targets, truths, spec, cfg.box_gain)
                loss = tf.nn.compute_average_loss(terms["total"], global_batch_size=cfg.batch_size)
            grads = tape.gradient(loss, model.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, 10.0)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return {k: tf.reduce_sum(v) / cfg.batch_size for k, v in terms.items()}

        per_replica = strategy.run(replica_step, args=(images, targets))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    step_times: List[float] = []
    t_start = time.time()
    while epoch < cfg.epochs and step < total_steps:
        ds = make_dataset(records, spec, cfg.augment, cfg.batch_size, epoch, cfg.seed, cfg.workers)
        dist = strategy.experimental_distribute_dataset(ds)
        sums = {"total": 0.0, "box": 0.0, "obj": 0.0, "cls": 0.0}
        n = 0
        bar = _progress(min(steps_per_epoch, total_steps - step), f"epoch {epoch + 1}/{cfg.epochs}",
                        cfg.progress)
        t_prev = time.time()
        for images, targets in dist:
            if step >= total_steps:
                break
            lr = learning_rate(step, total_steps, cfg)
            optimizer.learning_rate = lr
            terms = {k: float(v) for k, v in train_step(images, targets).items()}
            if not math.isfinite(terms["total"]):
                raise AlprError(f"the loss became {terms['total']} at step {step}; lower --lr")
            for k in sums:
                sums[k] += terms[k]
            n += 1
            step += 1
            now = time.time()
            step_times.append(now - t_prev)
            t_prev = now
            with writer.as_default(step=step):
                for k, v in terms.items():
                    _scalar(f"loss/{k}", v)
                _scalar("lr", lr)
            bar.set_postfix(loss=f"{terms['total']:.2f}", box=f"{terms['box']:.2f}", obj=f"{terms['obj']:.2f}",
                            cls=f"{terms['cls']:.2f}", lr=f"{lr:.2e}")
            bar.update(1)
        bar.close()
        if n == 0:
            break
        partial = n < steps_per_epoch
        epoch += 0 if partial else 1
        history["epoch"].append(epoch if not partial else epoch + n / steps_per_epoch)
        for k in sums:
            history[k].append(sums[k] / n)
        history["lr"].append(learning_rate(step, total_steps, cfg))
        last_epoch = epoch >= cfg.epochs or step >= total_steps
        if valid_records and cfg.eval_every > 0 and (epoch % cfg.eval_every == 0 or last_epoch):
            metrics = validate(model, heads, valid_records, num_classes, cfg.input_size)
            history["val_epoch"].append(history["epoch"][-1])
            for k, v in metrics.items():
                history.setdefault(f"val_{k}", []).append(None if math.isnan(v) else v)
            with writer.as_default(step=step):
                for k, v in metrics.items():
                    if not math.isnan(v):
                        _scalar(f"val/{k}", v)
            log(f"epoch {history['epoch'][-1]:g}: loss {history['total'][-1]:.3f}, val mAP@0.5 "
                f"{metrics['map50']:.4f}, mAP@0.5:0.95 {metrics['map50_95']:.4f}")
            if not math.isnan(metrics["map50"]) and metrics["map50"] > best:
                best = metrics["map50"]
                save_darknet_weights(model, dcfg, out_dir / f"{cfg.name}_best.weights",
                                     WeightsHeader(header.major, header.minor, header.revision,
                                                   header.seen + step * cfg.batch_size))
        else:
            log(f"epoch {history['epoch'][-1]:g}: loss {history['total'][-1]:.3f}")
        writer.flush()
        save_checkpoint(out_dir, model, optimizer,
                        {"epoch": epoch, "step": step, "best": best, "history": history,
                         "config": _jsonable(cfg)})
        if history["val_epoch"] and history["val_epoch"][-1] == history["epoch"][-1] or last_epoch:
            plot_curves(history, out_dir / "training_curves.png", _names_near(cfg))

    final = out_dir / f"{cfg.name}.weights"
    save_darknet_weights(model, dcfg, final, WeightsHeader(header.major, header.minor, header.revision,
                                                           header.seen + step * cfg.batch_size))
    best_path = out_dir / f"{cfg.name}_best.weights"
    sps = float(np.median(step_times[1:])) if len(step_times) > 1 else float("nan")
    log(f"wrote {final} after {step} steps ({time.time() - t_start:.0f} s, median {sps:.2f} s/step)")
    bad = undecodable(records + valid_records)
    if bad:
        log(f"warning: {len(bad)} image(s) could not be decoded: trained as empty grey images, left out of "
            f"validation (first: {bad[0]}); fix or remove them")
    return TrainResult(final, best_path if best_path.is_file() else None, epoch, step, history, sps)


def _scalar(tag: str, value: float) -> None:
    """A TensorBoard scalar without the ``tensorboard`` package (its scalars-plugin metadata by hand)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=meta.SerializeToString())


def _names_near(cfg: TrainConfig) -> Tuple[str, ...]:
    for folder in (Path(cfg.train), Path(cfg.train).parent):
        names = folder / "obj.names"
        if names.is_file():
            return tuple(n.strip() for n in names.read_text(encoding="utf-8").splitlines() if n.strip())
    return ()


def _jsonable(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["augment"] = asdict(cfg.augment)
    return d


class _NoBar:
    def set_postfix(self, **_: object) -> None:
        pass

    def update(self, _: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def copy_final(result: TrainResult, dest: str) -> Path:
    """Copy the trained weights (the best validated ones when there are) to ``dest``."""
    return atomic_copy(result.best_weights or result.weights, dest)


__all__ = ["TrainConfig", "TrainResult", "train", "learning_rate", "validate", "KerasDetector", "plot_curves",
           "save_checkpoint", "load_checkpoint", "get_strategy", "NO_AUGMENT", "LossSpec"]
