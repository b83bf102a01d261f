"""Darknet cfg -> Keras functional model, one builder per section type (``LAYER_BUILDERS``).

The model takes RGB images scaled to [0, 1], NHWC, and returns the raw output of every yolo head
(the tensor entering each ``[yolo]`` section), in cfg order. Decoding lives apart
(``core.yolo`` in numpy, ``core.keras.decode`` in TF) so the export target is a parameter of export.

Keras layer names carry the Darknet layer index (``conv_12``, ``bn_12``): ``core.keras.darknet_io``
maps weights by those names.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import keras
from keras import layers as L
from keras import ops

from core.darknet.cfg import (
    AvgPool,
    Convolutional,
    DarknetCfg,
    Dropout,
    Layer,
    MaxPool,
    Route,
    Shortcut,
    Upsample,
    Yolo,
)
from core.errors import DarknetFormatError
from core.keras.layers import BatchNormalization

BN_EPSILON = 1e-6  # Darknet divides by sqrt(var) + 1e-6; OpenCV's importer uses sqrt(var + 1e-6)


def _mish(x):
    # x * tanh(softplus(x)) with a softplus made of TFLite built-ins (EXP, LOG, ABS, MAXIMUM).
    softplus = ops.maximum(x, 0.0) + ops.log(1.0 + ops.exp(-ops.abs(x)))
    return x * ops.tanh(softplus)


def _swish(x):
    return x * ops.sigmoid(x)


ACTIVATION_FNS: Dict[str, Optional[Callable]] = {
    "linear": None,
    "leaky": None,  # LeakyReLU layer, see _activate
    "relu": ops.relu,
    "relu6": ops.relu6,
    "logistic": ops.sigmoid,
    "tanh": ops.tanh,
    "mish": _mish,
    "swish": _swish,
}


def _activate(x, activation: str, name: str):
    if activation == "linear":
        return x
    if activation == "leaky":
        return L.LeakyReLU(negative_slope=0.1, name=name)(x)
    return L.Activation(ACTIVATION_FNS[activation], name=name)(x)


Builder = Callable[[Layer, List, DarknetCfg], object]
LAYER_BUILDERS: Dict[type, Builder] = {}


def builds(kind: type) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        LAYER_BUILDERS[kind] = fn
        return fn

    return register


@builds(Convolutional)
def _conv(layer: Convolutional, outs: List, cfg: DarknetCfg):
    i = layer.index
    x = outs[-1]
    in_ch = cfg.input_of(i).channels
    if layer.padding:
        x = L.ZeroPadding2D(layer.padding, name=f"pad_{i}")(x)
    use_bias = not layer.batch_normalize
    common = dict(strides=layer.stride, padding="valid", use_bias=use_bias)
    if layer.groups == 1:
        x = L.Conv2D(layer.filters, layer.size, name=f"conv_{i}", **common)(x)
    elif layer.groups == in_ch:
        x = L.DepthwiseConv2D(layer.size, depth_multiplier=layer.filters // in_ch, name=f"conv_{i}", **common)(x)
    else:
        # Grouped convolution as split + convolutions + concat: every TFLite runtime supports it.
        step_in, step_out = in_ch // layer.groups, layer.filters // layer.groups
        parts = [L.Conv2D(step_out, layer.size, name=f"conv_{i}_g{g}", **common)(
            x[..., g * step_in:(g + 1) * step_in]) for g in range(layer.groups)]
        x = L.Concatenate(axis=-1, name=f"conv_{i}")(parts)
    if layer.batch_normalize:
        x = BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"bn_{i}")(x)
    return _activate(x, layer.activation, f"act_{i}")


@builds(MaxPool)
def _maxpool(layer: MaxPool, outs: List, cfg: DarknetCfg):
    i = layer.index
    inp = cfg.input_of(i)
    out = cfg.shapes[i]
    x = outs[-1]
    k, s = layer.size, layer.stride
    left = layer.padding // 2
    pads = []
    for n_in, n_out in ((inp.height, out.height), (inp.width, out.width)):
        right = (n_out - 1) * s + k - n_in - left
        pads.append((left, max(right, 0)))
    if all(p == (0, 0) for p in pads):
        return L.MaxPooling2D(k, s, padding="valid", name=f"maxpool_{i}")(x)
    same = []
    for n_in in (inp.height, inp.width):
        total = max(((n_in + s - 1) // s - 1) * s + k - n_in, 0)
        same.append((total // 2, total - total // 2))
    if pads == same:
        return L.MaxPooling2D(k, s, padding="same", name=f"maxpool_{i}")(x)
    # Edge padding equals Darknet's "ignore the outside" whenever each window keeps a real border
    # pixel: true when 2 * pad <= size (Darknet's default padding always satisfies it).
    if any(2 * p > k for pair in pads for p in pair):
        raise DarknetFormatError(f"{layer.describe()}: maxpool padding={layer.padding} is not supported")
    x = L.Lambda(lambda t, p=pads: ops.pad(t, [(0, 0), p[0], p[1], (0, 0)], mode="symmetric"),
                 name=f"maxpool_pad_{i}")(x)
    return L.MaxPooling2D(k, s, padding="valid", name=f"maxpool_{i}")(x)


@builds(AvgPool)
def _avgpool(layer: AvgPool, outs: List, cfg: DarknetCfg):
    return L.GlobalAveragePooling2D(keepdims=True, name=f"avgpool_{layer.index}")(outs[-1])


@builds(Route)
def _route(layer: Route, outs: List, cfg: DarknetCfg):
    parts = []
    for j in layer.layers:
        t = outs[j]
        if layer.groups > 1:
            c = cfg.shapes[j].channels // layer.groups
            t = t[..., layer.group_id * c:(layer.group_id + 1) * c]
        parts.append(t)
    if len(parts) == 1:
        return L.Identity(name=f"route_{layer.index}")(parts[0])
    return L.Concatenate(axis=-1, name=f"route_{layer.index}")(parts)


@builds(Shortcut)
def _shortcut(layer: Shortcut, outs: List, cfg: DarknetCfg):
    x = L.Add(name=f"shortcut_{layer.index}")([outs[-1]] + [outs[j] for j in layer.sources])
    return _activate(x, layer.activation, f"act_{layer.index}")


@builds(Upsample)
def _upsample(layer: Upsample, outs: List, cfg: DarknetCfg):
    return L.UpSampling2D(layer.stride, interpolation="nearest", name=f"upsample_{layer.index}")(outs[-1])


@builds(Dropout)
def _dropout(layer: Dropout, outs: List, cfg: DarknetCfg):
    return outs[-1]  # inference no-op, as in Darknet's forward pass at test time


@builds(Yolo)
def _yolo(layer: Yolo, outs: List, cfg: DarknetCfg):
    return outs[-1]  # the head's raw output is the model output; decoding is separate


def build_model(cfg: DarknetCfg, name: str = "darknet") -> keras.Model:
    """Keras model of ``cfg`` at the cfg's input size; outputs: the raw yolo heads in order."""
    shape = cfg.input_shape
    inputs = keras.Input((shape.height, shape.width, shape.channels), name="images")
    outs: List = []
    heads = []
    for layer in cfg.layers:
        builder = LAYER_BUILDERS.get(type(layer))
        if builder is None:
            raise DarknetFormatError(f"{layer.describe()}: no Keras builder for [{layer.kind}]")
        y = builder(layer, outs if outs else [inputs], cfg)
        outs.append(y)
        if isinstance(layer, Yolo):
            heads.append(y)
    if not heads:
        raise DarknetFormatError(f"{cfg.source}: no [yolo] layer: nothing to detect with")
    return keras.Model(inputs, heads, name=name)
