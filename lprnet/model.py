"""LPRNet (+ optional spatial transformer) in Keras 3, NHWC (TF side).

The backbone follows the layer structure of sirius-ai/LPRNet_Pytorch so that its trained weights
import one to one (see lprnet.import_torch); layer names carry the index of the matching torch
module (``backbone_4`` <- ``backbone.4``). Facts about the reference structure, for the reader:

- input 24x94x3; conv3x3 -> BN -> ReLU -> maxpool3x3/1 -> small block(128) -> BN -> ReLU
  -> maxpool3x3 stride (1,2) and every 2nd channel -> block(256) -> BN -> ReLU -> block(256) -> BN
  -> ReLU -> maxpool3x3 stride (1,2) and every 4th channel -> dropout -> conv(1x4, 256) -> BN -> ReLU
  -> dropout -> conv(13x1, classes) -> BN -> ReLU.
  (The torch model applies MaxPool3d to a 4-D tensor, so its depth axis is the channel axis: a depth
  kernel of 1 with stride 2 or 4 keeps channels 0, 2, 4, ... or 0, 4, 8, ...)
- global context: four feature maps (after the first ReLU, after block 1, after block 3, the class
  map) are average-pooled to 4x18, each divided by its mean square, concatenated (516 channels),
  mixed by a 1x1 conv and averaged over height -> [batch, 18, classes].
- One deliberate difference: torch takes that mean square over the whole batch, we take it per
  plate, so a plate's read does not depend on the other plates in its batch. At batch size 1 the
  two are identical (the parity test compares there).

The STN in front predicts an affine 2x3 transform (initialised to identity) from a downscaled input
and resamples the 24x94 crop bilinearly with gather + arithmetic only, so the model exports to TFLite
with built-in ops (no Select-TF ops).
"""
from __future__ import annotations

import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from core.keras.layers import BatchNormalization
from lprnet.preprocess import IDENTITY_THETA, INPUT_HEIGHT, INPUT_WIDTH

NUM_STEPS = 18
BN_EPSILON = 1e-5  # torch's BatchNorm2d default
BN_MOMENTUM = 0.9  # torch momentum 0.1
# Layers that stay float32 under a mixed policy (train_lprnet.py --precision mixed_bfloat16): the STN,
# whose sampling coordinates span 0..93 px (bfloat16 keeps 8 significant bits: steps of 0.5 px there;
# the sampler's float32 grid constants would not even mix with a bfloat16 theta), and the small
# global-context head, whose per-plate mean square and logits feed the CTC loss.
F32 = "float32"


@keras.saving.register_keras_serializable(package="lprnet")
class ChannelStride(layers.Layer):
    """Keep every ``step``-th channel (torch MaxPool3d with a depth kernel of 1 on a 4-D tensor)."""

    def __init__(self, step: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step = int(step)

    def call(self, x):
        return x[..., :: self.step]

    def compute_output_shape(self, input_shape):
        c = input_shape[-1]
        return (*input_shape[:-1], None if c is None else -(-c // self.step))

    def get_config(self) -> dict:
        return {**super().get_config(), "step": self.step}


@keras.saving.register_keras_serializable(package="lprnet")
class MeanSquareNormalize(layers.Layer):
    """x / mean(x^2): the global-context normalisation of LPRNet.

    ``fixed=False``: the mean square of each sample (over H, W, C). ``fixed=True``: a stored constant
    (``mean_square``, the average over a set of crops, see ``freeze_context``), which turns the layer
    into a multiplication by a constant: what full-integer int8 needs, since a per-sample mean
    square quantized to int8 underflows to zero and breaks the division. During training the
    constant follows the batches as a moving average, like BatchNormalization's statistics.
    """

    def __init__(self, fixed: bool = False, momentum: float = 0.99, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fixed = bool(fixed)
        self.momentum = float(momentum)

    def build(self, input_shape) -> None:
        self.mean_square = self.add_weight(
            name="mean_square", shape=(), initializer="ones", trainable=False
        )

    def call(self, x, training=None):
        if self.fixed:
            return x * (1.0 / self.mean_square)
        ms = ops.mean(ops.square(x), axis=(1, 2, 3), keepdims=True)
        if training:
            batch_ms = ops.mean(ms)
            self.mean_square.assign(self.momentum * self.mean_square + (1.0 - self.momentum) * batch_ms)
        return x / ms

    def get_config(self) -> dict:
        return {**super().get_config(), "fixed": self.fixed, "momentum": self.momentum}


@keras.saving.register_keras_serializable(package="lprnet")
class MeanOverHeight(layers.Layer):
    """[N, H, W, C] -> [N, W, C]: the CTC steps run along the plate's width."""

    def call(self, x):
        return ops.mean(x, axis=1)


@keras.saving.register_keras_serializable(package="lprnet")
class AffineSampler(layers.Layer):
    """Bilinear resampling of ``image`` [N,H,W,C] through ``theta`` [N,6] (row-major 2x3).

    Coordinates are normalised to [-1, 1] at pixel centres; samples outside the image take the
    nearest border pixel. Identity theta reproduces the input exactly.
    """

    def call(self, inputs):
        image, theta = inputs
        shape = tf.shape(image)
        n, h, w = shape[0], shape[1], shape[2]
        height, width = image.shape[1], image.shape[2]
        channels = image.shape[3]
        ys = (2.0 * np.arange(height, dtype=np.float32) + 1.0) / height - 1.0
        xs = (2.0 * np.arange(width, dtype=np.float32) + 1.0) / width - 1.0
        grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
        gx = tf.constant(grid_x.reshape(1, -1))
        gy = tf.constant(grid_y.reshape(1, -1))
        t = [theta[:, i : i + 1] for i in range(6)]
        sx = t[0] * gx + t[1] * gy + t[2]
        sy = t[3] * gx + t[4] * gy + t[5]
        px = tf.clip_by_value(((sx + 1.0) * width - 1.0) * 0.5, 0.0, width - 1.0)
        py = tf.clip_by_value(((sy + 1.0) * height - 1.0) * 0.5, 0.0, height - 1.0)
        x0f = tf.floor(px)
        y0f = tf.floor(py)
        wx = px - x0f
        wy = py - y0f
        x0 = tf.cast(x0f, tf.int32)
        y0 = tf.cast(y0f, tf.int32)
        x1 = tf.minimum(x0 + 1, width - 1)
        y1 = tf.minimum(y0 + 1, height - 1)
        flat = tf.reshape(image, [n, h * w, channels])

        def pick(yy, xx):
            return tf.gather(flat, yy * width + xx, batch_dims=1)

        wx = wx[..., None]
        wy = wy[..., None]
        top = pick(y0, x0) * (1.0 - wx) + pick(y0, x1) * wx
        bottom = pick(y1, x0) * (1.0 - wx) + pick(y1, x1) * wx
        out = top * (1.0 - wy) + bottom * wy
        return tf.reshape(out, [n, height, width, channels])

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


def _localisation(x):
    """Small localisation net -> theta [N, 6], identity at initialisation."""
    y = layers.AveragePooling2D(2, name="stn_pool0", dtype=F32)(x)
    y = layers.Conv2D(32, 3, activation="relu", name="stn_conv1", dtype=F32)(y)
    y = layers.MaxPooling2D(2, name="stn_pool1", dtype=F32)(y)
    y = layers.Conv2D(32, 3, activation="relu", name="stn_conv2", dtype=F32)(y)
    y = layers.Flatten(name="stn_flatten", dtype=F32)(y)
    y = layers.Dense(32, activation="tanh", name="stn_fc1", dtype=F32)(y)
    return layers.Dense(
        6,
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        name="stn_theta",
        dtype=F32,
    )(y)


def _bn(name: str):
    return BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _small_basic_block(x, ch_out: int, name: str):
    mid = ch_out // 4
    x = layers.Conv2D(mid, 1, activation="relu", name=f"{name}_block_0")(x)
    x = layers.Conv2D(mid, (3, 1), padding="same", activation="relu", name=f"{name}_block_2")(x)
    x = layers.Conv2D(mid, (1, 3), padding="same", activation="relu", name=f"{name}_block_4")(x)
    return layers.Conv2D(ch_out, 1, name=f"{name}_block_6")(x)


def build_lprnet(
    num_classes: int = 68, stn: bool = False, dropout: float = 0.5, fixed_context: bool = False
) -> keras.Model:
    """LPRNet (optionally STN + LPRNet): float input [N,24,94,3] in [-1,1) -> logits [N,18,classes]."""
    inputs = keras.Input((INPUT_HEIGHT, INPUT_WIDTH, 3), name="image")
    x = inputs
    if stn:
        x = AffineSampler(name="stn_sampler", dtype=F32)([x, _localisation(x)])
    x = layers.Conv2D(64, 3, name="backbone_0")(x)
    x = _bn("backbone_1")(x)
    f0 = x = layers.ReLU(name="backbone_2")(x)
    x = layers.MaxPooling2D(3, strides=1, name="backbone_3")(x)
    x = _small_basic_block(x, 128, "backbone_4")
    x = _bn("backbone_5")(x)
    f1 = x = layers.ReLU(name="backbone_6")(x)
    x = layers.MaxPooling2D(3, strides=(1, 2), name="backbone_7_pool")(x)
    x = ChannelStride(2, name="backbone_7_channels")(x)
    x = _small_basic_block(x, 256, "backbone_8")
    x = _bn("backbone_9")(x)
    x = layers.ReLU(name="backbone_10")(x)
    x = _small_basic_block(x, 256, "backbone_11")
    x = _bn("backbone_12")(x)
    f2 = x = layers.ReLU(name="backbone_13")(x)
    x = layers.MaxPooling2D(3, strides=(1, 2), name="backbone_14_pool")(x)
    x = ChannelStride(4, name="backbone_14_channels")(x)
    x = layers.Dropout(dropout, name="backbone_15")(x)
    x = layers.Conv2D(256, (1, 4), name="backbone_16")(x)
    x = _bn("backbone_17")(x)
    x = layers.ReLU(name="backbone_18")(x)
    x = layers.Dropout(dropout, name="backbone_19")(x)
    x = layers.Conv2D(num_classes, (13, 1), name="backbone_20")(x)
    x = _bn("backbone_21")(x)
    f3 = layers.ReLU(name="backbone_22")(x)

    g0 = layers.AveragePooling2D(5, strides=5, name="context_pool0")(f0)
    g1 = layers.AveragePooling2D(5, strides=5, name="context_pool1")(f1)
    g2 = layers.AveragePooling2D((4, 10), strides=(4, 2), name="context_pool2")(f2)
    context = [MeanSquareNormalize(fixed_context, name=f"context_norm{i}", dtype=F32)(g)
               for i, g in enumerate((g0, g1, g2, f3))]
    x = layers.Concatenate(axis=-1, name="context", dtype=F32)(context)
    x = layers.Conv2D(num_classes, 1, name="container_0", dtype=F32)(x)
    logits = MeanOverHeight(name="logits", dtype=F32)(x)
    return keras.Model(inputs, logits, name="lprnet_stn" if stn else "lprnet")


def context_mean_squares(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Average over ``images`` of each context branch's per-sample mean square -> [4]."""
    norms = [model.get_layer(f"context_norm{i}") for i in range(4)]
    probe = keras.Model(model.inputs, [layer.input for layer in norms])
    sums = np.zeros(4, np.float64)
    for start in range(0, len(images), batch_size):
        feats = probe(images[start : start + batch_size], training=False)
        for i, f in enumerate(feats):
            sums[i] += float(np.sum(np.mean(np.square(np.asarray(f, np.float64)), axis=(1, 2, 3))))
    return sums / max(len(images), 1)


def freeze_context(model: keras.Model, images: np.ndarray | None = None) -> keras.Model:
    """A copy of ``model`` whose context normalisation uses constants (for int8 export).

    With ``images`` (pre-processed crops) the constants are measured on them; without, the moving
    averages learnt in training are kept.
    """
    num_classes = int(model.output.shape[-1])
    frozen = build_lprnet(num_classes, stn=has_stn(model), fixed_context=True)
    frozen.set_weights(model.get_weights())
    if images is not None and len(images):
        for i, value in enumerate(context_mean_squares(model, images)):
            frozen.get_layer(f"context_norm{i}").mean_square.assign(value)
    return frozen


def has_stn(model: keras.Model) -> bool:
    return any(layer.name == "stn_sampler" for layer in model.layers)


def stn_stages(model: keras.Model) -> tuple[keras.Model, keras.Model, keras.Model]:
    """Split an STN reader into ``(locate, warp, read)`` models sharing its weights (copies).

    ``locate``: image -> theta minus the identity [N, 6] (the last Dense layer's bias shifted, no extra
    op; a small range around 0 quantizes finer in int8). ``warp``:
    image -> the STN's resampled image (the float model's own warp, for calibrating ``read``).
    ``read``: the LPRNet backbone alone (``stn=False``), warped image -> logits.
    """
    if not has_stn(model):
        raise ValueError("model has no spatial transformer (no 'stn_sampler' layer)")
    image = keras.Input((INPUT_HEIGHT, INPUT_WIDTH, 3), name="image")
    locate = keras.Model(image, _localisation(image), name="lprnet_locate")
    for layer in locate.layers:
        if layer.weights:
            weights = model.get_layer(layer.name).get_weights()
            if layer.name == "stn_theta":
                weights = [weights[0], weights[1] - IDENTITY_THETA]
            layer.set_weights(weights)
    warp = keras.Model(model.input, model.get_layer("stn_sampler").output, name="lprnet_warp")
    fixed = any(getattr(layer, "fixed", False) for layer in model.layers if isinstance(layer, MeanSquareNormalize))
    read = build_lprnet(int(model.output.shape[-1]), stn=False, fixed_context=fixed)
    for layer in read.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return locate, warp, read


def load_keras_model(path: str, num_classes: int = 68) -> keras.Model:
    """A ``.keras`` model, or a ``.weights.h5`` file for our LPRNet with or without STN."""
    from core.errors import AlprError

    if path.endswith(".keras"):
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as exc:  # noqa: BLE001 - any load failure is a bad file for the user
            raise AlprError(f"cannot load Keras model {path}: {str(exc).splitlines()[0]}") from None
    candidates = [False, True]
    try:  # Keras 3 stores weights by layer type: an STN model has an 'affine_sampler' entry.
        import h5py

        with h5py.File(path, "r") as fh:
            candidates = [bool("layers/affine_sampler" in fh)]
    except (OSError, ImportError):
        pass
    errors = []
    for stn in candidates:
        model = build_lprnet(num_classes, stn=stn)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Keras warns per layer before it raises
                model.load_weights(path)
            return model
        except Exception as exc:  # noqa: BLE001
            errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    raise AlprError(f"cannot load LPRNet weights {path}: {errors[0]}")
