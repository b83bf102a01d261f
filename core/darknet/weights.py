"""Darknet ``.weights`` reader and writer (TF-free), driven by a parsed cfg.

File layout: int32 major, minor, revision; ``seen`` as int64 when ``major*10 + minor >= 2`` (else
int32); then for every ``[convolutional]`` layer in order: with batch_normalize beta, gamma,
running mean, running variance (each ``[filters]``), else bias ``[filters]``; then the kernel
``[filters, in_channels/groups, size, size]``. All float32, little endian. Every byte must be
accounted for: a short or long file is an error that names the layer and the likely cause.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from core.darknet.cfg import Convolutional, DarknetCfg
from core.errors import DarknetFormatError

_F32 = np.dtype("<f4")


@dataclass(frozen=True)
class WeightsHeader:
    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def seen_is_int64(self) -> bool:
        return self.major * 10 + self.minor >= 2

    @property
    def nbytes(self) -> int:
        return 12 + (8 if self.seen_is_int64 else 4)

    def pack(self) -> bytes:
        fmt = "<iiiq" if self.seen_is_int64 else "<iiii"
        return struct.pack(fmt, self.major, self.minor, self.revision, self.seen)


@dataclass(frozen=True)
class ConvWeights:
    """One convolutional layer's parameters in Darknet layout.

    ``bias`` is Darknet's ``biases`` array (the batch-norm beta when ``bn`` is set); ``bn`` holds
    (gamma, running mean, running variance); ``kernel`` is [filters, in/groups, size, size].
    """

    bias: np.ndarray
    kernel: np.ndarray
    bn: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None

    def arrays(self) -> List[np.ndarray]:
        """Arrays in file order."""
        head = [self.bias] if self.bn is None else [self.bias, *self.bn]
        return head + [self.kernel]


def conv_layers(cfg: DarknetCfg) -> List[Convolutional]:
    return [layer for layer in cfg.layers if isinstance(layer, Convolutional)]


def conv_shapes(cfg: DarknetCfg, layer: Convolutional) -> Tuple[Tuple[int, ...], ...]:
    """Shapes of the arrays a layer stores, in file order."""
    in_channels = cfg.input_of(layer.index).channels
    kernel = (layer.filters, in_channels // layer.groups, layer.size, layer.size)
    vec = (layer.filters,)
    return ((vec,) * 4 if layer.batch_normalize else (vec,)) + (kernel,)


def layer_nbytes(cfg: DarknetCfg, layer: Convolutional) -> int:
    return 4 * sum(int(np.prod(s)) for s in conv_shapes(cfg, layer))


def expected_nbytes(cfg: DarknetCfg, header: Optional[WeightsHeader] = None) -> int:
    header = header or WeightsHeader()
    return header.nbytes + sum(layer_nbytes(cfg, layer) for layer in conv_layers(cfg))


def _cause(cfg: DarknetCfg) -> str:
    yolo = cfg.yolo_layers
    classes = f"classes={yolo[0].classes}" if yolo else "the cfg"
    return (f"likely cause: the cfg does not describe the network these weights were trained with "
            f"(wrong cfg, or {classes} / the filters before each [yolo] differ from training)")


def read_header(data: bytes, source: str) -> WeightsHeader:
    if len(data) < 16:
        raise DarknetFormatError(f"{source}: {len(data)} bytes is too short for a Darknet weights header")
    major, minor, revision = struct.unpack_from("<iii", data, 0)
    if not (0 <= major < 1000 and 0 <= minor < 1000 and revision >= 0):
        raise DarknetFormatError(
            f"{source}: not a Darknet weights file (header version {major}.{minor}.{revision})")
    if major * 10 + minor >= 2:
        (seen,) = struct.unpack_from("<q", data, 12)
    else:
        (seen,) = struct.unpack_from("<i", data, 12)
    return WeightsHeader(major, minor, revision, seen)


def parse_weights(data: bytes, cfg: DarknetCfg, source: str = "<bytes>"
                  ) -> Tuple[WeightsHeader, Dict[int, ConvWeights]]:
    """Split the bytes of a weights file into per-layer arrays (keyed by layer index)."""
    header = read_header(data, source)
    offset = header.nbytes
    out: Dict[int, ConvWeights] = {}
    for layer in conv_layers(cfg):
        shapes = conv_shapes(cfg, layer)
        need = 4 * sum(int(np.prod(s)) for s in shapes)
        left = len(data) - offset
        if need > left:
            raise DarknetFormatError(
                f"{source}: truncated at {layer.describe()} (filters={layer.filters}, size={layer.size}): "
                f"needs {need} bytes at offset {offset}, found {left}; "
                f"file is {len(data)} bytes, the cfg needs {expected_nbytes(cfg, header)}; {_cause(cfg)}")
        arrays = []
        for shape in shapes:
            count = int(np.prod(shape))
            arrays.append(np.frombuffer(data, _F32, count, offset).reshape(shape).astype(np.float32))
            offset += 4 * count
        bn = tuple(arrays[1:4]) if layer.batch_normalize else None
        out[layer.index] = ConvWeights(bias=arrays[0], kernel=arrays[-1], bn=bn)  # type: ignore[arg-type]
    if offset != len(data):
        raise DarknetFormatError(
            f"{source}: {len(data) - offset} bytes left after the last layer: file is {len(data)} bytes, "
            f"the cfg accounts for {offset}; {_cause(cfg)}")
    return header, out


def read_weights(path: str | Path, cfg: DarknetCfg) -> Tuple[WeightsHeader, Dict[int, ConvWeights]]:
    path = Path(path)
    if not path.is_file():
        raise DarknetFormatError(f"weights file not found: {path}")
    return parse_weights(path.read_bytes(), cfg, str(path))


def serialize_weights(cfg: DarknetCfg, weights: Dict[int, ConvWeights],
                      header: Optional[WeightsHeader] = None) -> bytes:
    """Bytes of a weights file; every conv layer of the cfg must be present with the right shapes."""
    header = header or WeightsHeader()
    buf = io.BytesIO()
    buf.write(header.pack())
    for layer in conv_layers(cfg):
        if layer.index not in weights:
            raise DarknetFormatError(f"no weights for {layer.describe()}")
        arrays = weights[layer.index].arrays()
        shapes = conv_shapes(cfg, layer)
        if [a.shape for a in arrays] != list(shapes):
            raise DarknetFormatError(
                f"{layer.describe()}: arrays {[a.shape for a in arrays]} do not match the cfg's {list(shapes)}")
        for a in arrays:
            buf.write(np.ascontiguousarray(a, dtype=_F32).tobytes())
    return buf.getvalue()


def write_weights(path: str | Path, cfg: DarknetCfg, weights: Dict[int, ConvWeights],
                  header: Optional[WeightsHeader] = None) -> None:
    """Write atomically (temp file + rename)."""
    from core.cli import atomic_path

    data = serialize_weights(cfg, weights, header)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def random_weights(cfg: DarknetCfg, seed: int = 0, scale: float = 1.0, head_gain: float = 1.0
                   ) -> Dict[int, ConvWeights]:
    """Plausible random weights (He-scaled kernels, positive variances) for tests and benchmarks.

    ``scale`` multiplies every kernel's He standard deviation (deep residual cfgs such as yolov4
    blow up at 1.0 and need about 0.8); ``head_gain`` multiplies the kernels feeding the yolo
    layers so that head outputs span a realistic logit range.
    """
    rng = np.random.default_rng(seed)
    heads = {y.index - 1 for y in cfg.yolo_layers}
    out: Dict[int, ConvWeights] = {}
    for layer in conv_layers(cfg):
        shapes = conv_shapes(cfg, layer)
        kshape = shapes[-1]
        fan_in = kshape[1] * kshape[2] * kshape[3]
        gain = scale * (head_gain if layer.index in heads else 1.0)
        kernel = rng.normal(0, gain * np.sqrt(2.0 / fan_in), kshape).astype(np.float32)
        f = layer.filters
        bias = rng.normal(0, 0.1, f).astype(np.float32)
        bn = None
        if layer.batch_normalize:
            bn = (rng.uniform(0.8, 1.2, f).astype(np.float32), rng.normal(0, 0.1, f).astype(np.float32),
                  rng.uniform(0.5, 1.5, f).astype(np.float32))
        out[layer.index] = ConvWeights(bias=bias, kernel=kernel, bn=bn)
    return out
