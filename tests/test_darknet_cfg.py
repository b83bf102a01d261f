"""cfg parser: syntax, typed sections, shapes, errors; generated cfgs vs the canonical Darknet ones."""
from __future__ import annotations

import dataclasses

import pytest

from core.darknet.cfg import Convolutional, MaxPool, Route, Shortcut, Yolo, load_cfg, parse_cfg
from core.darknet.weights import expected_nbytes
from core.errors import DarknetFormatError
from tests.paths import REPO, shared_path
from tools.make_cfg import ARCHITECTURES, make_cfg

TINY = """
# a comment
[net]
width = 64
height=64
; a whole-line comment
channels=3

[convolutional]
batch_normalize=1
filters=8
filters=99
size=3
stride=2
pad=1
activation=leaky

[conv]
filters=8
size=3
groups=8
pad=1
activation=mish

[maxpool]
size=2
stride=1

[route]
layers=-1,-3
groups=2
group_id=1

[convolutional]
filters=16
size=1
activation=linear

[yolo]
mask = 0 , 1
anchors = 10,14,  23,27, 37,58
classes=3
num=3
scale_x_y = 1.05
"""


def test_tiny_cfg_parses_into_typed_sections() -> None:
    cfg = parse_cfg(TINY)
    assert (cfg.net.width, cfg.net.height, cfg.net.channels) == (64, 64, 3)
    conv0, dw, pool, route, head, yolo = cfg.layers
    assert isinstance(conv0, Convolutional) and conv0.filters == 8  # first of repeated keys wins
    assert (conv0.stride, conv0.padding, conv0.batch_normalize, conv0.activation) == (2, 1, True, "leaky")
    assert isinstance(dw, Convolutional) and dw.groups == 8 and dw.activation == "mish"
    assert isinstance(pool, MaxPool) and pool.padding == 1  # Darknet default: size - 1
    assert isinstance(route, Route) and route.layers == (2, 0) and (route.groups, route.group_id) == (2, 1)
    assert isinstance(yolo, Yolo) and yolo.mask == (0, 1) and yolo.classes == 3
    assert yolo.anchors == ((10, 14), (23, 27), (37, 58)) and yolo.scale_x_y == pytest.approx(1.05)
    # shapes by hand: 64 -> conv s2 -> 32x32x8 -> dw -> 32x32x8 -> maxpool s1 -> 32x32x8
    # route of (maxpool, conv0) halves, group 1: 4 + 4 channels; 1x1 conv -> 16; yolo keeps it
    assert [(s.height, s.width, s.channels) for s in cfg.shapes] == [
        (32, 32, 8), (32, 32, 8), (32, 32, 8), (32, 32, 8), (32, 32, 16), (32, 32, 16)]


@pytest.mark.parametrize("mutation, message", [
    (lambda t: t.replace("[maxpool]", "[frobnicate]"), "unknown section [frobnicate]"),
    (lambda t: t.replace("layers=-1,-3", "layers=-1,-9"), "refers to layer -9"),
    (lambda t: t.replace("filters=16", "filters=17"), "needs filters=16"),
    (lambda t: t.replace("activation=mish", "activation=gelu"), "unsupported activation 'gelu'"),
    (lambda t: t.replace("size=3\ngroups=8", "size=x\ngroups=8"), "'size=x' is not an integer"),
    (lambda t: t.replace("[net]", "[convolutional]", 1), "first section must be [net]"),
    (lambda t: t.replace("mask = 0 , 1", "mask = 0,7"), "refers to anchors that do not exist"),
    (lambda t: "width=3\n" + t, "before any [section]"),
    # counts under 1: a format error, not a division by zero in the shapes (found by test_cfg_fuzz)
    (lambda t: t.replace("stride=2", "stride=0"), "[convolutional] stride=0 must be 1 or more"),
    (lambda t: t.replace("groups=8\npad", "groups=0\npad"), "groups=0 must be 1 or more"),
    (lambda t: t.replace("size=2\nstride=1", "size=2\nstride=0"), "[maxpool] stride=0 must be 1 or more"),
])
def test_bad_cfgs_name_the_problem(mutation, message) -> None:
    with pytest.raises(DarknetFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_cfg(mutation(TINY))


def test_input_size_must_divide() -> None:
    cfg = parse_cfg(TINY)
    assert cfg.with_input_size(96).shapes[-1].height == 48
    with pytest.raises(DarknetFormatError):
        parse_cfg(make_cfg("yolov4-tiny", 3)).with_input_size(400)  # route of 13x13 up to 26 vs 25


def test_missing_and_binary_cfg(tmp_path) -> None:
    with pytest.raises(DarknetFormatError, match="not found"):
        load_cfg(tmp_path / "nope.cfg")
    binary = tmp_path / "x.cfg"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(DarknetFormatError, match="not a text file"):
        load_cfg(binary)


def _layers(cfg):
    out = []
    for layer in cfg.layers:
        d = dataclasses.asdict(layer)
        d.pop("line")
        out.append((type(layer).__name__, d))
    return out


@pytest.mark.parametrize("name", ["yolov4", "yolov4-tiny"])
def test_generated_cfg_matches_canonical_darknet(name: str) -> None:
    canonical = load_cfg(shared_path("assets", "darknet", f"{name}.cfg"))
    assert _layers(parse_cfg(make_cfg(name, 80, 416))) == _layers(canonical)


# Published sizes of the official COCO weights files (bytes), an independent check of the
# generated architectures and of the byte accounting.
OFFICIAL_WEIGHTS_BYTES = {"yolov4": 257_717_640, "yolov4-tiny": 24_251_276, "yolov3": 248_007_048,
                          "yolov3-tiny": 35_434_956}


@pytest.mark.parametrize("name", sorted(OFFICIAL_WEIGHTS_BYTES))
def test_generated_cfgs_account_for_official_weight_sizes(name: str) -> None:
    assert expected_nbytes(parse_cfg(make_cfg(name, 80, 416))) == OFFICIAL_WEIGHTS_BYTES[name]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_shipped_cfgs_are_the_generated_3_class_ones(name: str) -> None:
    shipped = REPO / "data" / "cfg" / f"{name}.cfg"
    assert shipped.read_text(encoding="utf-8") == make_cfg(name, 3, 416)
    cfg = load_cfg(shipped)
    assert cfg.num_classes == 3
    assert all(cfg.shapes[y.index].channels == len(y.mask) * 8 for y in cfg.yolo_layers)
    assert any(isinstance(layer, (Route, Shortcut)) for layer in cfg.layers)
