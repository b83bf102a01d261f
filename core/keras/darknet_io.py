"""Move weights between Darknet layout (``core.darknet.weights``) and a built Keras model."""
from __future__ import annotations

from typing import Dict

import keras
import numpy as np

from core.darknet.cfg import Convolutional, DarknetCfg
from core.darknet.weights import ConvWeights, conv_layers
from core.errors import DarknetFormatError


def _kernel_to_keras(kernel: np.ndarray, layer: Convolutional, in_ch: int) -> np.ndarray:
    k = kernel.transpose(2, 3, 1, 0)  # [f, c/g, s, s] -> [s, s, c/g, f]
    if layer.groups > 1 and layer.groups == in_ch:  # depthwise: [s, s, 1, f] -> [s, s, c, f/c]
        k = k.reshape(layer.size, layer.size, in_ch, layer.filters // in_ch)
    return k


def _kernel_from_keras(k: np.ndarray, layer: Convolutional, in_ch: int) -> np.ndarray:
    if layer.groups > 1 and layer.groups == in_ch:
        k = k.reshape(layer.size, layer.size, 1, layer.filters)
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def _conv_parts(model: keras.Model, layer: Convolutional, in_ch: int):
    """Keras layers holding a Darknet conv's kernels (one per group when split)."""
    i = layer.index
    if 1 < layer.groups < in_ch:
        return [model.get_layer(f"conv_{i}_g{g}") for g in range(layer.groups)]
    return [model.get_layer(f"conv_{i}")]


def load_darknet_weights(model: keras.Model, cfg: DarknetCfg, weights: Dict[int, ConvWeights]) -> None:
    for layer in conv_layers(cfg):
        w = weights[layer.index]
        in_ch = cfg.input_of(layer.index).channels
        parts = _conv_parts(model, layer, in_ch)
        kernel = _kernel_to_keras(w.kernel, layer, in_ch)
        chunks = np.split(kernel, len(parts), axis=3)
        bias_chunks = np.split(w.bias, len(parts))
        for part, k, b in zip(parts, chunks, bias_chunks):
            part.set_weights([k] if layer.batch_normalize else [k, b])
        if layer.batch_normalize:
            gamma, mean, var = w.bn  # type: ignore[misc]
            model.get_layer(f"bn_{layer.index}").set_weights([gamma, w.bias, mean, var])


def extract_darknet_weights(model: keras.Model, cfg: DarknetCfg) -> Dict[int, ConvWeights]:
    out: Dict[int, ConvWeights] = {}
    for layer in conv_layers(cfg):
        in_ch = cfg.input_of(layer.index).channels
        parts = _conv_parts(model, layer, in_ch)
        values = [p.get_weights() for p in parts]
        if any(len(v) != (1 if layer.batch_normalize else 2) for v in values):
            raise DarknetFormatError(f"{layer.describe()}: the Keras model does not match the cfg")
        kernel = _kernel_from_keras(np.concatenate([v[0] for v in values], axis=3), layer, in_ch)
        if layer.batch_normalize:
            gamma, beta, mean, var = model.get_layer(f"bn_{layer.index}").get_weights()
            out[layer.index] = ConvWeights(bias=beta, kernel=kernel, bn=(gamma, mean, var))
        else:
            out[layer.index] = ConvWeights(bias=np.concatenate([v[1] for v in values]), kernel=kernel)
    return out
