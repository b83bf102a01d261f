"""Darknet ``.cfg`` parser: text -> frozen, typed sections with their tensor shapes.

Semantics follow Darknet (AlexeyAB) and OpenCV's Darknet importer:

* ``#`` and ``;`` start comments; whitespace inside a line is ignored; ``[conv]`` and ``[max]`` are
  aliases. When a key is repeated inside a section the *first* value is used (Darknet's
  ``option_find`` and OpenCV's ``std::map::insert`` both keep the first one).
* Layers are numbered from 0, ``[net]`` excluded; ``route``/``shortcut`` indices may be negative
  (relative to the current layer) or absolute.

Every section type has a parser in ``SECTION_PARSERS`` (a registry, extended by decorating a
function with ``@section_parser("name")``). The result, ``DarknetCfg``, also carries the output
shape of each layer, so the weights reader and the Keras builder never re-derive geometry.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from core.errors import DarknetFormatError

ALIASES = {"conv": "convolutional", "max": "maxpool", "network": "net", "local_avg": "avgpool",
           "avg": "avgpool", "soft": "softmax"}
ACTIVATIONS = ("linear", "leaky", "mish", "relu", "logistic", "swish", "relu6", "tanh")


@dataclass(frozen=True)
class RawSection:
    """A section as written: its type, the line of its header and its options in file order."""

    kind: str
    line: int
    options: Tuple[Tuple[str, str], ...]

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        for k, v in self.options:
            if k == key:
                return v
        return default

    def _convert(self, key: str, default, cast, what: str):
        value = self.get(key)
        if value is None:
            if default is _REQUIRED:
                raise DarknetFormatError(f"[{self.kind}] at line {self.line}: missing '{key}='")
            return default
        try:
            return cast(value)
        except ValueError:
            raise DarknetFormatError(
                f"[{self.kind}] at line {self.line}: '{key}={value}' is not {what}") from None

    def int(self, key: str, default=None) -> int:
        return self._convert(key, default, lambda v: int(float(v)) if "." in v else int(v), "an integer")

    def float(self, key: str, default=None) -> float:
        return self._convert(key, default, float, "a number")

    def ints(self, key: str, default=None) -> Tuple[int, ...]:
        return self._convert(key, default, lambda v: tuple(int(x) for x in v.split(",") if x != ""),
                             "a list of integers")

    def floats(self, key: str, default=None) -> Tuple[float, ...]:
        return self._convert(key, default, lambda v: tuple(float(x) for x in v.split(",") if x != ""),
                             "a list of numbers")


class _Required:
    pass


_REQUIRED = _Required()


@dataclass(frozen=True)
class Shape:
    height: int
    width: int
    channels: int


@dataclass(frozen=True)
class Net:
    width: int
    height: int
    channels: int
    line: int
    options: Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class Layer:
    """Base of every typed section: its layer index and the line of its header."""

    index: int
    line: int

    @property
    def kind(self) -> str:
        return KIND_OF[type(self)]

    def describe(self) -> str:
        return f"layer {self.index} [{self.kind}] (line {self.line})"


@dataclass(frozen=True)
class Convolutional(Layer):
    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: str


@dataclass(frozen=True)
class MaxPool(Layer):
    size: int
    stride: int
    padding: int  # total padding (Darknet default: size - 1); the left/top side gets padding // 2


@dataclass(frozen=True)
class AvgPool(Layer):
    """Global average pooling ([avgpool] in Darknet)."""


@dataclass(frozen=True)
class Route(Layer):
    layers: Tuple[int, ...]  # absolute indices
    groups: int
    group_id: int


@dataclass(frozen=True)
class Shortcut(Layer):
    sources: Tuple[int, ...]  # absolute indices of the 'from' layers (added to the previous layer)
    activation: str


@dataclass(frozen=True)
class Upsample(Layer):
    stride: int


@dataclass(frozen=True)
class Dropout(Layer):
    probability: float


@dataclass(frozen=True)
class Yolo(Layer):
    mask: Tuple[int, ...]
    anchors: Tuple[Tuple[float, float], ...]  # all anchors of the cfg, in input pixels
    classes: int
    scale_x_y: float
    new_coords: bool

    @property
    def masked_anchors(self) -> Tuple[Tuple[float, float], ...]:
        return tuple(self.anchors[m] for m in self.mask)


KIND_OF = {Convolutional: "convolutional", MaxPool: "maxpool", AvgPool: "avgpool", Route: "route",
           Shortcut: "shortcut", Upsample: "upsample", Dropout: "dropout", Yolo: "yolo"}


@dataclass(frozen=True)
class DarknetCfg:
    """A parsed cfg: the ``[net]`` section, the layers, and the output shape of each layer."""

    net: Net
    layers: Tuple[Layer, ...]
    shapes: Tuple[Shape, ...]
    source: str = "<string>"

    @property
    def input_shape(self) -> Shape:
        return Shape(self.net.height, self.net.width, self.net.channels)

    @property
    def yolo_layers(self) -> Tuple[Yolo, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, Yolo))

    @property
    def num_classes(self) -> int:
        classes = {y.classes for y in self.yolo_layers}
        if len(classes) != 1:
            raise DarknetFormatError(f"{self.source}: yolo layers disagree on classes: {sorted(classes)}")
        return classes.pop()

    def input_of(self, index: int) -> Shape:
        """Shape entering layer ``index`` (the previous layer's output, or the network input)."""
        return self.input_shape if index == 0 else self.shapes[index - 1]

    def with_input_size(self, width: int, height: Optional[int] = None) -> DarknetCfg:
        """The same network at another input size (a multiple of the network's total stride)."""
        height = width if height is None else height
        net = dataclasses.replace(self.net, width=width, height=height)
        return _finish(net, self.layers, self.source)


# --------------------------------------------------------------------------------------- reading

def read_sections(text: str, source: str = "<string>") -> Tuple[RawSection, ...]:
    sections: List[RawSection] = []
    current_kind: Optional[str] = None
    current_line = 0
    options: List[Tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())  # Darknet strips every whitespace character
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise DarknetFormatError(f"{source}:{number}: malformed section header {raw.strip()!r}")
            if current_kind is not None:
                sections.append(RawSection(current_kind, current_line, tuple(options)))
            kind = line[1:-1].lower()
            current_kind, current_line, options = ALIASES.get(kind, kind), number, []
            continue
        if current_kind is None:
            raise DarknetFormatError(f"{source}:{number}: option {raw.strip()!r} before any [section]")
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise DarknetFormatError(f"{source}:{number}: expected key=value, got {raw.strip()!r}")
        options.append((key, value))
    if current_kind is not None:
        sections.append(RawSection(current_kind, current_line, tuple(options)))
    return tuple(sections)


ParserFn = Callable[[RawSection, int, "_Context"], Layer]
SECTION_PARSERS: Dict[str, ParserFn] = {}


def section_parser(kind: str) -> Callable[[ParserFn], ParserFn]:
    def register(fn: ParserFn) -> ParserFn:
        SECTION_PARSERS[kind] = fn
        return fn

    return register


@dataclass
class _Context:
    count: int  # number of layers seen so far (= index of the layer being parsed)
    source: str

    def absolute(self, ref: int, sec: RawSection) -> int:
        index = self.count + ref if ref < 0 else ref
        if not 0 <= index < self.count:
            raise DarknetFormatError(
                f"{self.source}:{sec.line}: [{sec.kind}] refers to layer {ref}, which does not exist "
                f"before layer {self.count}")
        return index


def _activation(sec: RawSection, source: str) -> str:
    act = sec.get("activation", "logistic" if sec.kind == "yolo" else "linear")
    if act not in ACTIVATIONS:
        raise DarknetFormatError(
            f"{source}:{sec.line}: unsupported activation '{act}' (supported: {', '.join(ACTIVATIONS)})")
    return act


def _at_least_one(sec: RawSection, source: str, **values: int) -> None:
    """A size, stride, group or filter count under 1 is a format error here, not a division by zero later."""
    for name, value in values.items():
        if value < 1:
            raise DarknetFormatError(f"{source}:{sec.line}: [{sec.kind}] {name}={value} must be 1 or more")


@section_parser("convolutional")
def _conv(sec: RawSection, index: int, ctx: _Context) -> Layer:
    size = sec.int("size", 1)
    pad = sec.int("pad", 0)
    padding = size // 2 if pad else sec.int("padding", 0)
    stride = sec.int("stride", 1)
    if sec.get("stride_x") or sec.get("stride_y") or sec.int("dilation", 1) != 1:
        raise DarknetFormatError(f"{ctx.source}:{sec.line}: stride_x/stride_y/dilation are not supported")
    filters, groups = sec.int("filters", 1), sec.int("groups", 1)
    _at_least_one(sec, ctx.source, size=size, stride=stride, groups=groups, filters=filters)
    return Convolutional(index, sec.line, filters=filters, size=size, stride=stride,
                         padding=padding, groups=groups,
                         batch_normalize=bool(sec.int("batch_normalize", 0)),
                         activation=_activation(sec, ctx.source))


@section_parser("maxpool")
def _maxpool(sec: RawSection, index: int, ctx: _Context) -> Layer:
    size = sec.int("size", 1)
    stride = sec.int("stride", 1)
    if sec.get("stride_x") or sec.get("stride_y") or sec.int("maxpool_depth", 0):
        raise DarknetFormatError(f"{ctx.source}:{sec.line}: stride_x/stride_y/maxpool_depth are not supported")
    _at_least_one(sec, ctx.source, size=size, stride=stride)
    return MaxPool(index, sec.line, size=size, stride=stride, padding=sec.int("padding", size - 1))


@section_parser("avgpool")
def _avgpool(sec: RawSection, index: int, ctx: _Context) -> Layer:
    return AvgPool(index, sec.line)


@section_parser("route")
def _route(sec: RawSection, index: int, ctx: _Context) -> Layer:
    refs = sec.ints("layers", _REQUIRED)
    if not refs:
        raise DarknetFormatError(f"{ctx.source}:{sec.line}: [route] without layers")
    groups = sec.int("groups", 1)
    group_id = sec.int("group_id", 0)
    if groups < 1 or not 0 <= group_id < groups:
        raise DarknetFormatError(f"{ctx.source}:{sec.line}: [route] groups={groups} group_id={group_id}")
    return Route(index, sec.line, layers=tuple(ctx.absolute(r, sec) for r in refs), groups=groups,
                 group_id=group_id)


@section_parser("shortcut")
def _shortcut(sec: RawSection, index: int, ctx: _Context) -> Layer:
    if sec.get("weights_type", "none") != "none":
        raise DarknetFormatError(f"{ctx.source}:{sec.line}: weighted [shortcut] is not supported")
    refs = sec.ints("from", _REQUIRED)
    return Shortcut(index, sec.line, sources=tuple(ctx.absolute(r, sec) for r in refs),
                    activation=_activation(sec, ctx.source))


@section_parser("upsample")
def _upsample(sec: RawSection, index: int, ctx: _Context) -> Layer:
    stride = sec.int("stride", 2)
    if stride < 1 or sec.float("scale", 1.0) != 1.0:
        raise DarknetFormatError(f"{ctx.source}:{sec.line}: [upsample] stride={stride} / scale unsupported")
    return Upsample(index, sec.line, stride=stride)


@section_parser("dropout")
def _dropout(sec: RawSection, index: int, ctx: _Context) -> Layer:
    return Dropout(index, sec.line, probability=sec.float("probability", 0.5))


@section_parser("yolo")
def _yolo(sec: RawSection, index: int, ctx: _Context) -> Layer:
    classes = sec.int("classes", 20)
    values = sec.floats("anchors", ())
    if len(values) % 2:
        raise DarknetFormatError(f"{ctx.source}:{sec.line}: [yolo] anchors must come in w,h pairs")
    anchors = tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))
    num = sec.int("num", len(anchors))
    mask = sec.ints("mask", tuple(range(num)))
    if any(not 0 <= m < len(anchors) for m in mask):
        raise DarknetFormatError(
            f"{ctx.source}:{sec.line}: [yolo] mask {list(mask)} refers to anchors that do not exist "
            f"({len(anchors)} anchors given)")
    if classes < 1:
        raise DarknetFormatError(f"{ctx.source}:{sec.line}: [yolo] classes={classes}")
    return Yolo(index, sec.line, mask=mask, anchors=anchors, classes=classes,
                scale_x_y=sec.float("scale_x_y", 1.0), new_coords=bool(sec.int("new_coords", 0)))


# --------------------------------------------------------------------------------------- shapes

def _out_shape(layer: Layer, shapes: Sequence[Shape], inp: Shape, source: str) -> Shape:
    where = f"{source}: {layer.describe()}"
    if isinstance(layer, Convolutional):
        if inp.channels % layer.groups or layer.filters % layer.groups:
            raise DarknetFormatError(
                f"{where}: groups={layer.groups} does not divide input channels {inp.channels} "
                f"and filters {layer.filters}")
        h = (inp.height + 2 * layer.padding - layer.size) // layer.stride + 1
        w = (inp.width + 2 * layer.padding - layer.size) // layer.stride + 1
        return Shape(h, w, layer.filters)
    if isinstance(layer, MaxPool):
        h = (inp.height + layer.padding - layer.size) // layer.stride + 1
        w = (inp.width + layer.padding - layer.size) // layer.stride + 1
        return Shape(h, w, inp.channels)
    if isinstance(layer, AvgPool):
        return Shape(1, 1, inp.channels)
    if isinstance(layer, Route):
        parts = [shapes[i] for i in layer.layers]
        if len({(s.height, s.width) for s in parts}) != 1:
            raise DarknetFormatError(
                f"{where}: routed layers {list(layer.layers)} have different sizes "
                f"{[(s.height, s.width) for s in parts]} (input size not a multiple of the stride?)")
        for s in parts:
            if s.channels % layer.groups:
                raise DarknetFormatError(f"{where}: {s.channels} channels do not split into {layer.groups}")
        return Shape(parts[0].height, parts[0].width, sum(s.channels // layer.groups for s in parts))
    if isinstance(layer, Shortcut):
        for i in layer.sources:
            if shapes[i] != inp:
                raise DarknetFormatError(
                    f"{where}: adds layer {i} of shape {tuple(dataclasses.astuple(shapes[i]))} to "
                    f"{tuple(dataclasses.astuple(inp))}; shapes must match")
        return inp
    if isinstance(layer, Upsample):
        return Shape(inp.height * layer.stride, inp.width * layer.stride, inp.channels)
    if isinstance(layer, (Dropout, Yolo)):
        return inp
    raise DarknetFormatError(f"{where}: no shape rule")  # pragma: no cover - registry and rules agree


def _finish(net: Net, layers: Sequence[Layer], source: str) -> DarknetCfg:
    if net.width <= 0 or net.height <= 0 or net.channels <= 0:
        raise DarknetFormatError(f"{source}: [net] needs positive width, height and channels")
    shapes: List[Shape] = []
    for layer in layers:
        inp = Shape(net.height, net.width, net.channels) if not shapes else shapes[-1]
        shape = _out_shape(layer, shapes, inp, source)
        if shape.height <= 0 or shape.width <= 0:
            raise DarknetFormatError(
                f"{source}: {layer.describe()} has an empty output for input {net.width}x{net.height}")
        shapes.append(shape)
        if isinstance(layer, Yolo):
            expected = len(layer.mask) * (layer.classes + 5)
            if inp.channels != expected:
                raise DarknetFormatError(
                    f"{source}: {layer.describe()} has classes={layer.classes} and {len(layer.mask)} "
                    f"anchors, so the convolution before it needs filters={expected}, "
                    f"but it has {inp.channels}")
            if net.height % inp.height or net.width % inp.width:
                raise DarknetFormatError(
                    f"{source}: input {net.width}x{net.height} is not a multiple of the stride of "
                    f"{layer.describe()}; use a multiple of 32")
    return DarknetCfg(net=net, layers=tuple(layers), shapes=tuple(shapes), source=source)


def parse_cfg(text: str, source: str = "<string>") -> DarknetCfg:
    """Parse cfg text; every problem raises ``DarknetFormatError`` naming the line."""
    sections = read_sections(text, source)
    if not sections or sections[0].kind != "net":
        raise DarknetFormatError(f"{source}: the first section must be [net]")
    head = sections[0]
    net = Net(width=head.int("width", 416), height=head.int("height", 416),
              channels=head.int("channels", 3), line=head.line, options=head.options)
    ctx = _Context(0, source)
    layers: List[Layer] = []
    for sec in sections[1:]:
        parser = SECTION_PARSERS.get(sec.kind)
        if parser is None:
            raise DarknetFormatError(
                f"{source}:{sec.line}: unknown section [{sec.kind}] (supported: "
                f"{', '.join(sorted(SECTION_PARSERS))})")
        layers.append(parser(sec, ctx.count, ctx))
        ctx.count += 1
    if not layers:
        raise DarknetFormatError(f"{source}: no layers after [net]")
    return _finish(net, layers, source)


def load_cfg(path: str | Path) -> DarknetCfg:
    path = Path(path)
    if not path.is_file():
        raise DarknetFormatError(f"cfg file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise DarknetFormatError(f"{path}: not a text file (is this a .weights file?)") from None
    return parse_cfg(text, source=str(path))


def options_dict(options: Sequence[Tuple[str, str]]) -> Mapping[str, str]:
    """First value of each key, as Darknet reads it."""
    out: Dict[str, str] = {}
    for k, v in options:
        out.setdefault(k, v)
    return out
