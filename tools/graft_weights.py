"""Start a bigger Darknet network from a trained smaller one (Darknet's ``partial``, by layer index).

Every convolutional layer of ``--cfg`` whose index and array shapes match a layer of ``--from_cfg``
takes that layer's trained weights; the others are initialised fresh: He-normal kernels, batch norm as
the identity, and, for a layer feeding a ``[yolo]`` layer, small kernels with the objectness bias at a
1 % prior, so a new head starts quiet instead of firing everywhere. The typical use is growing the
shipped two-head yolov4-tiny into a three-head yolov4-tiny-3l (its first 38 layers are the same)::

    python -m tools.graft_weights --cfg checkpoints/yolov4-tiny-3l-alpr.cfg \\
        --from_cfg checkpoints/yolov4-tiny-alpr.cfg --from_weights checkpoints/yolov4-tiny-alpr.weights \\
        --out runs/init3l.weights

then ``train.py --weights`` the result. TF-free.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from core.darknet.cfg import DarknetCfg, load_cfg
from core.darknet.weights import ConvWeights, conv_layers, conv_shapes, read_weights, write_weights


def fresh_layer(cfg: DarknetCfg, index: int, rng: np.random.Generator,
                objectness_prior: float = 0.01) -> ConvWeights:
    """New weights for conv layer ``index`` of ``cfg`` (see the module docstring)."""
    layer = cfg.layers[index]
    kshape = conv_shapes(cfg, layer)[-1]
    f = layer.filters
    bn = (np.ones(f, np.float32), np.zeros(f, np.float32), np.ones(f, np.float32)) if layer.batch_normalize else None
    head = next((y for y in cfg.yolo_layers if y.index == index + 1), None)
    if head is None:
        fan_in = kshape[1] * kshape[2] * kshape[3]
        kernel = rng.normal(0.0, math.sqrt(2.0 / fan_in), kshape).astype(np.float32)
        return ConvWeights(bias=np.zeros(f, np.float32), kernel=kernel, bn=bn)
    bias = np.zeros((len(head.mask), f // len(head.mask)), np.float32)
    bias[:, 4] = math.log(objectness_prior / (1.0 - objectness_prior))
    return ConvWeights(bias=bias.reshape(-1), kernel=rng.normal(0.0, 0.01, kshape).astype(np.float32), bn=bn)


def graft(cfg: DarknetCfg, from_cfg: DarknetCfg, from_weights: Dict[int, ConvWeights], seed: int = 0
          ) -> Tuple[Dict[int, ConvWeights], List[int], List[int]]:
    """(weights for ``cfg``, indices copied, indices initialised fresh)."""
    rng = np.random.default_rng(seed)
    old = {layer.index: layer for layer in conv_layers(from_cfg)}
    out: Dict[int, ConvWeights] = {}
    copied: List[int] = []
    fresh: List[int] = []
    for layer in conv_layers(cfg):
        src = old.get(layer.index)
        if (src is not None and src.batch_normalize == layer.batch_normalize
                and conv_shapes(from_cfg, src) == conv_shapes(cfg, layer)):
            out[layer.index] = from_weights[layer.index]
            copied.append(layer.index)
        else:
            out[layer.index] = fresh_layer(cfg, layer.index, rng)
            fresh.append(layer.index)
    return out, copied, fresh


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from core.errors import AlprError

    f = flags.FLAGS
    if len(argv) > 1:
        raise AlprError(f"unexpected arguments: {' '.join(argv[1:])}")
    cfg = load_cfg(f.cfg)
    src_cfg = load_cfg(f.from_cfg)
    header, src = read_weights(f.from_weights, src_cfg)
    weights, copied, fresh = graft(cfg, src_cfg, src, f.seed)
    write_weights(f.out, cfg, weights, dataclasses.replace(header, seen=0))
    print(f"{Path(f.out)}: {len(copied)} conv layers from {f.from_weights}, "
          f"{len(fresh)} new ({', '.join(map(str, fresh)) or 'none'})")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("cfg", None, "the cfg of the network to start (read only)")
    flags.DEFINE_string("from_cfg", None, "the cfg of the trained network")
    flags.DEFINE_string("from_weights", None, "its trained .weights")
    flags.DEFINE_string("out", None, "where to write the new .weights")
    flags.DEFINE_integer("seed", 0, "seed of the fresh layers' initialisation")
    flags.mark_flags_as_required(["cfg", "from_cfg", "from_weights", "out"])


if __name__ == "__main__":
    from absl import app

    from core.cli import guarded

    _define_flags()
    app.run(guarded(main), argv=sys.argv)
