"""Parity of the cfg -> Keras converter with OpenCV DNN, the independent Darknet implementation."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from core.darknet.cfg import load_cfg
from core.darknet.weights import random_weights, read_weights, write_weights
from core.keras.builder import build_model
from core.keras.convert import model_info_for, run_keras
from core.keras.darknet_io import extract_darknet_weights, load_darknet_weights
from core.model_info import read_class_names
from core.yolo import decode_heads, filter_and_nms, iou_matrix, letterbox_image, to_input_tensor
from tests.paths import REPO, shared_path
from tools.opencv_reference import opencv_detections, opencv_heads, opencv_net

TOL = 1e-3
# Deep residual cfgs (yolov4, yolov3) explode with He-scaled random kernels (yolov4 reaches 6e5 at
# scale 1.0); these scales keep activations O(1), and a gain on the head convolutions gives logits
# in a realistic range (|x| up to ~10), so that an absolute tolerance of 1e-3 is meaningful.
WEIGHT_SCALE = {"yolov4": 0.8, "yolov3": 0.6}


def _random_input(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (1, size, size, 3)).astype(np.float32)


def _check_random_weights(cfg_path, size: int, tmp_path) -> None:
    name = cfg_path.stem
    cfg = load_cfg(cfg_path).with_input_size(size)
    weights = random_weights(cfg, seed=7, scale=WEIGHT_SCALE.get(name, 1.0), head_gain=8.0)
    wpath = tmp_path / f"{name}.weights"
    write_weights(wpath, cfg, weights)
    model = build_model(cfg)
    load_darknet_weights(model, cfg, weights)
    x = _random_input(size)
    ours = run_keras(model, x)
    # OpenCV reads the cfg at its own [net] size: give it a copy at the test size.
    sized_cfg = tmp_path / f"{name}-{size}.cfg"
    text = cfg_path.read_text(encoding="utf-8")
    sized_cfg.write_text(_with_size(text, size), encoding="utf-8")
    ref = opencv_heads(opencv_net(sized_cfg, wpath), cfg, x)
    for o, r in zip(ours, ref):
        assert o.shape == r.shape
        assert np.abs(r).max() > 1.0, "random weights too weak for a meaningful comparison"
        assert np.abs(o - r).max() <= TOL


def _with_size(text: str, size: int) -> str:
    lines = []
    in_net = False
    for line in text.splitlines():
        stripped = line.replace(" ", "")
        if stripped.startswith("["):
            in_net = stripped.lower() in ("[net]", "[network]")
        if in_net and (stripped.startswith("width=") or stripped.startswith("height=")):
            line = stripped.split("=")[0] + f"={size}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov3-tiny", "yolov4-tiny-3l", "yolov4", "yolov3"])
def test_shipped_cfgs_match_opencv_random_weights(name: str, tmp_path) -> None:
    _check_random_weights(REPO / "data" / "cfg" / f"{name}.cfg", 416, tmp_path)


@pytest.mark.parametrize("name, size", [("yolov4-tiny", 416), ("yolov4-tiny", 608), ("yolov4", 416),
                                        ("yolov4", 320)])
def test_canonical_cfgs_match_opencv_random_weights(name: str, size: int, tmp_path) -> None:
    _check_random_weights(shared_path("assets", "darknet", f"{name}.cfg"), size, tmp_path)


@functools.lru_cache(maxsize=1)
def _yolo_fastest():
    cfg_path = shared_path("assets", "darknet", "yolo-fastest-1.1.cfg")
    weights_path = shared_path("assets", "darknet", "yolo-fastest-1.1.weights")
    cfg = load_cfg(cfg_path)
    header, weights = read_weights(weights_path, cfg)
    model = build_model(cfg)
    load_darknet_weights(model, cfg, weights)
    names = read_class_names(shared_path("assets", "darknet", "coco.names"))
    return cfg, model, weights, opencv_net(cfg_path, weights_path), model_info_for(cfg, names)


SCENES = ["car.jpg", "car2.jpg", "car3.jpg", "car4.jpg"]


@pytest.mark.parametrize("scene", SCENES)
def test_yolo_fastest_real_weights_match_opencv_on_photos(scene: str) -> None:
    import cv2

    cfg, model, _, net, info = _yolo_fastest()
    image = cv2.imread(str(shared_path("data", "scenes", scene)))
    rgb, _ = letterbox_image(image, 320, 320)
    x = to_input_tensor(rgb)
    ours = run_keras(model, x)
    for o, r in zip(ours, opencv_heads(net, cfg, x)):
        assert np.abs(o - r).max() <= TOL

    boxes, scores = decode_heads([o[0] for o in ours], info.heads, info.num_classes, 320, 320)
    # OpenCV's yolo layer zeroes class scores <= 0.2 (its internal threshold), so compare at 0.2,
    # the lowest threshold where both sides see every candidate (car.jpg has none at 0.25).
    b, s, c = filter_and_nms(boxes, scores, 0.2, 0.45)
    rb, rs, rc = opencv_detections(net, x, 0.2, 0.45)
    assert len(b) == len(rb) and len(b) > 0
    iou = iou_matrix(b, rb)
    for i in range(len(b)):
        j = int(np.argmax(np.where(rc == c[i], iou[i], -1)))
        assert rc[j] == c[i] and iou[i, j] >= 0.99 and abs(rs[j] - s[i]) <= TOL


def test_yolo_fastest_finds_cars_in_the_photos() -> None:
    import cv2

    _, model, _, _, info = _yolo_fastest()
    car = info.class_names.index("car")
    found = 0
    for scene in SCENES:
        rgb, _ = letterbox_image(cv2.imread(str(shared_path("data", "scenes", scene))), 320, 320)
        outs = run_keras(model, to_input_tensor(rgb))
        boxes, scores = decode_heads([o[0] for o in outs], info.heads, info.num_classes, 320, 320)
        _, _, classes = filter_and_nms(boxes, scores, 0.25, 0.45)
        found += int(car in classes.tolist())
    assert found >= 3


def test_round_trip_weights_keras_weights_is_byte_identical(tmp_path) -> None:
    from core.keras.convert import save_darknet_weights

    cfg, model, _, _, _ = _yolo_fastest()
    source = shared_path("assets", "darknet", "yolo-fastest-1.1.weights")
    header, _ = read_weights(source, cfg)
    out = tmp_path / "back.weights"
    save_darknet_weights(model, cfg, out, header)
    assert out.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov3-tiny", "yolov4-tiny-3l"])
def test_round_trip_shipped_cfgs(name: str, tmp_path) -> None:
    from core.darknet.weights import WeightsHeader, serialize_weights

    cfg = load_cfg(REPO / "data" / "cfg" / f"{name}.cfg").with_input_size(128)
    weights = random_weights(cfg, seed=1)
    model = build_model(cfg)
    load_darknet_weights(model, cfg, weights)
    header = WeightsHeader(0, 2, 5, 32013312)
    assert serialize_weights(cfg, extract_darknet_weights(model, cfg), header) == \
        serialize_weights(cfg, weights, header)
