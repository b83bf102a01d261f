"""weights reader/writer: header versions, byte accounting, errors, Keras round trip."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.darknet.cfg import parse_cfg
from core.darknet.weights import (
    WeightsHeader,
    conv_layers,
    expected_nbytes,
    parse_weights,
    random_weights,
    read_weights,
    serialize_weights,
)
from core.errors import AlprError, DarknetFormatError
from tests.paths import shared_path

SMALL = """[net]
width=32
height=32
channels=3
[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky
[convolutional]
filters=14
size=1
activation=linear
[yolo]
mask=0,1
anchors=4,4, 8,8
classes=2
"""


def _small():
    return parse_cfg(SMALL)


def test_byte_layout_by_hand() -> None:
    cfg = _small()
    # header 20 (int64 seen) + conv0: 4 x 4 bn/bias floats + 4*3*3*3 kernel; conv1: 14 bias + 14*4 kernel
    assert expected_nbytes(cfg) == 20 + 4 * (16 + 108) + 4 * (14 + 56)
    w = random_weights(cfg, seed=3)
    data = serialize_weights(cfg, w, WeightsHeader(0, 2, 5, 123456))
    assert struct.unpack_from("<iiiq", data, 0) == (0, 2, 5, 123456)
    # beta first, then gamma, mean, variance, then kernel in [filters, in, size, size] order
    floats = np.frombuffer(data, "<f4", offset=20)
    np.testing.assert_array_equal(floats[:4], w[0].bias)
    np.testing.assert_array_equal(floats[4:8], w[0].bn[0])
    np.testing.assert_array_equal(floats[16:16 + 108].reshape(4, 3, 3, 3), w[0].kernel)


def test_old_header_has_int32_seen() -> None:
    cfg = _small()
    data = serialize_weights(cfg, random_weights(cfg), WeightsHeader(0, 1, 0, 77))
    assert len(data) == expected_nbytes(cfg) - 4
    header, _ = parse_weights(data, cfg)
    assert header == WeightsHeader(0, 1, 0, 77) and header.nbytes == 16


def test_truncated_and_extra_bytes_name_the_layer_and_cause() -> None:
    cfg = _small()
    data = serialize_weights(cfg, random_weights(cfg))
    with pytest.raises(DarknetFormatError, match=r"truncated at layer 1 \[convolutional\].*needs 280 bytes"
                                                 r".*found 276.*classes=2"):
        parse_weights(data[:-4], cfg)
    with pytest.raises(DarknetFormatError, match=r"1 bytes left after the last layer"):
        parse_weights(data + b"\0", cfg)


def test_class_count_mismatch_is_caught_by_size() -> None:
    cfg = _small()
    data = serialize_weights(cfg, random_weights(cfg))
    wrong = parse_cfg(SMALL.replace("filters=14", "filters=16").replace("classes=2", "classes=3"))
    with pytest.raises(DarknetFormatError, match="classes=3"):
        parse_weights(data, wrong)


def test_not_a_weights_file(tmp_path) -> None:
    cfg = _small()
    with pytest.raises(DarknetFormatError, match="not found"):
        read_weights(tmp_path / "missing.weights", cfg)
    with pytest.raises(DarknetFormatError, match="not a Darknet weights file"):
        parse_weights(b"[net]\nwidth=416\nheight=416\n" * 4, cfg)


def test_real_yolo_fastest_weights_are_fully_accounted_for() -> None:
    from core.darknet.cfg import load_cfg

    cfg = load_cfg(shared_path("assets", "darknet", "yolo-fastest-1.1.cfg"))
    path = shared_path("assets", "darknet", "yolo-fastest-1.1.weights")
    header, weights = read_weights(path, cfg)
    assert len(weights) == len(conv_layers(cfg)) == 84
    assert serialize_weights(cfg, weights, header) == path.read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_fuzz_weights_reader_random_bytes(data: bytes) -> None:
    try:
        parse_weights(data, _small())
    except AlprError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3000), st.integers(0, 255), st.integers(-8, 8))
def test_fuzz_weights_reader_edits(pos: int, value: int, resize: int) -> None:
    cfg = _small()
    data = bytearray(serialize_weights(cfg, random_weights(cfg)))
    if pos < len(data):
        data[pos] = value
    data = data[:len(data) + resize] if resize < 0 else data + bytes(resize)
    try:
        parse_weights(bytes(data), cfg)
    except AlprError:
        pass
