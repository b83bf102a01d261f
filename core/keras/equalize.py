"""Per-channel equalization of the yolo heads' inputs, so a full-integer int8 model keeps its small boxes.

int8 TFLite gives each activation tensor one scale. In a trained yolov4-tiny-3l the input of the
stride-8 head's last conv spans up to 47 in a few channels and about 4 in most (the median channel),
so most channels get a handful of int8 levels, and the head's objectness and class logits for small
objects come out up to two logits off (session 18, the bf16 chain's model at 544).

Leaky, ReLU and linear activations are positively homogeneous: f(s * x) = s * f(x) for s > 0. Scaling
output channel i of conv k (its batch-norm gamma and beta, or its kernel and bias) by s_i therefore
scales that channel of the activation by s_i, and dividing the next conv's input-channel-i weights by
s_i undoes it: the float network computes the same function (within float rounding), while the
activation's channels, measured on calibration images, now span similar ranges. This is the
cross-layer equalization of Nagel et al. (2019, "Data-Free Quantization"), here with activation
ranges rather than weight ranges. Only convs whose single reader is the conv of a [yolo] layer are
touched: a conv that a route also reads feeds another branch, which would see the scaled channels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence

import numpy as np

from core.darknet.cfg import Convolutional, DarknetCfg, Route, Shortcut, Yolo

HOMOGENEOUS = ("linear", "leaky", "relu")
# channels narrower than this fraction of the widest are scaled as if they had this range (dead channels
# would otherwise get huge factors and the next conv's weights for them would round to zero anyway)
RANGE_FLOOR = 0.05


@dataclass(frozen=True)
class Equalized:
    """One equalized pair: conv ``layer`` scaled per channel, conv ``layer + 1`` compensated."""

    layer: int
    widest: float  # the widest channel's calibration range (max |activation|)
    median: float  # the median channel's, before
    largest_factor: float


def head_input_layers(cfg: DarknetCfg) -> List[int]:
    """Conv layers k with a positively homogeneous activation whose only reader is conv k+1 (one group),
    the conv a [yolo] layer reads."""
    read = {i for layer in cfg.layers if isinstance(layer, Route) for i in layer.layers}
    read |= {i for layer in cfg.layers if isinstance(layer, Shortcut) for i in layer.sources}
    out = []
    for yolo in cfg.yolo_layers:
        k = yolo.index - 2
        if k < 0 or k in read:
            continue
        conv, head = cfg.layers[k], cfg.layers[k + 1]
        if (isinstance(conv, Convolutional) and isinstance(head, Convolutional) and head.groups == 1
                and conv.activation in HOMOGENEOUS and (conv.batch_normalize or conv.groups == 1)
                and isinstance(cfg.layers[k + 2], Yolo)):
            out.append(k)
    return out


def _output_layer(model, cfg: DarknetCfg, k: int):
    conv = cfg.layers[k]
    if conv.activation != "linear":
        return model.get_layer(f"act_{k}")
    return model.get_layer(f"bn_{k}" if conv.batch_normalize else f"conv_{k}")


def channel_ranges(model, cfg: DarknetCfg, layers: Sequence[int], images: Iterable[np.ndarray]
                   ) -> Dict[int, np.ndarray]:
    """max |activation| per channel of each of ``layers``' outputs over ``images`` (float [1,H,W,3])."""
    import keras

    if not layers:
        return {}
    probe = keras.Model(model.inputs, [_output_layer(model, cfg, k).output for k in layers])
    ranges: Dict[int, np.ndarray] = {}
    for x in images:
        outs = probe([x], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for k, o in zip(layers, outs):
            o = np.asarray(o)
            r = np.abs(o.reshape(-1, o.shape[-1])).max(axis=0)
            ranges[k] = r if k not in ranges else np.maximum(ranges[k], r)
    return ranges


def equalize(model, cfg: DarknetCfg, ranges: Dict[int, np.ndarray], alpha: float = 1.0) -> List[Equalized]:
    """Scale each measured layer's channels by (widest / range_i) ** alpha, in place; see the module doc."""
    done = []
    for k, r in ranges.items():
        widest = float(r.max())
        if not widest > 0:
            continue
        s = (widest / np.maximum(r, RANGE_FLOOR * widest)) ** alpha
        conv = cfg.layers[k]
        if conv.batch_normalize:
            bn = model.get_layer(f"bn_{k}")
            gamma, beta, mean, var = bn.get_weights()
            bn.set_weights([gamma * s, beta * s, mean, var])
        else:
            layer = model.get_layer(f"conv_{k}")
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * s, bias * s])  # Keras kernel [h, w, in, out]: out is the last axis
        head = model.get_layer(f"conv_{k + 1}")
        weights = head.get_weights()
        weights[0] = weights[0] / s[None, None, :, None]  # input channel i of the next conv
        head.set_weights(weights)
        done.append(Equalized(k, widest, float(np.median(r)), float(s.max())))
    return done
