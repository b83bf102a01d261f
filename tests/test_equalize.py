"""core.keras.equalize: the heads' input channels rescaled so int8 keeps them, the float network unchanged."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.darknet.cfg import load_cfg
from core.darknet.weights import random_weights, write_weights
from tests.paths import REPO

pytest.importorskip("tensorflow")

TINY = REPO / "data" / "cfg" / "yolov4-tiny.cfg"
TINY_3L = REPO / "data" / "cfg" / "yolov4-tiny-3l.cfg"
SIZE = 96
OUTLIERS = (3, 17, 40, 77)  # channels of layer 42 made 40x wider than the rest
OUTLIER_GAIN = 40.0


def test_only_convs_read_by_nothing_but_a_head_conv_are_chosen():
    from core.keras.equalize import head_input_layers

    # yolov4-tiny: yolo 30 reads conv 29, which reads conv 28; yolo 37 reads 36, which reads 35; the route
    # after yolo 30 (layers=-4) reads 27, so both 28 and 35 qualify
    assert head_input_layers(load_cfg(TINY)) == [28, 35]
    # yolov4-tiny-3l adds a route (layers=-3) after yolo 37 that reads 35 for the stride-8 branch; its
    # yolo 44 reads 43, which reads 42
    assert head_input_layers(load_cfg(TINY_3L)) == [28, 42]


def _model_with_outliers():
    from core.keras.builder import build_model
    from core.keras.darknet_io import load_darknet_weights

    cfg = load_cfg(TINY_3L).with_input_size(SIZE)
    weights = random_weights(cfg, seed=5, head_gain=3.0)
    gamma, mean, var = weights[42].bn
    gamma = gamma.copy()
    gamma[list(OUTLIERS)] *= OUTLIER_GAIN
    weights[42] = type(weights[42])(bias=weights[42].bias, kernel=weights[42].kernel, bn=(gamma, mean, var))
    model = build_model(cfg)
    load_darknet_weights(model, cfg, weights)
    return cfg, weights, model


def _images(n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    # smooth random images: noise blurred, so the activations look more like a photo's than white noise's
    return [cv2.GaussianBlur(rng.uniform(0, 1, (SIZE, SIZE, 3)).astype(np.float32), (7, 7), 2.0)[None]
            for _ in range(n)]


def test_equalizing_keeps_every_output_and_evens_the_channel_ranges():
    from core.keras.equalize import RANGE_FLOOR, channel_ranges, equalize

    cfg, _, model = _model_with_outliers()
    images = _images(6, seed=1)
    before = [[np.asarray(o) for o in model(x)] for x in images]
    ranges = channel_ranges(model, cfg, [28, 42], images)
    r = ranges[42]
    assert np.median(r[list(OUTLIERS)]) > 10 * np.median(r)  # the outliers are there to be evened

    done = equalize(model, cfg, ranges)
    assert [e.layer for e in done] == [28, 42]
    for x, want in zip(images, before):
        for got, w in zip(model(x), want):
            np.testing.assert_allclose(np.asarray(got), w, rtol=1e-4, atol=1e-4 * np.abs(w).max())

    # after: every channel of layer 42 spans the widest channel's range, those under the floor
    # (RANGE_FLOOR of the widest) excepted, which grow by widest / floor
    after = channel_ranges(model, cfg, [42], images)[42]
    widest = r.max()
    big = r >= RANGE_FLOOR * widest
    np.testing.assert_allclose(after[big], widest, rtol=1e-4)
    np.testing.assert_allclose(after[~big], r[~big] / RANGE_FLOOR, rtol=1e-4)


def test_a_head_input_conv_without_batch_norm_is_scaled_through_its_kernel_and_bias(tmp_path):
    """A conv with its own bias (batch_normalize=0) before a head: its output channel i is kernel_i * x + b_i,
    so the factor goes on both (the batch-norm path puts it on gamma and beta); the float outputs stay."""
    from core.darknet.cfg import parse_cfg
    from core.keras.builder import build_model
    from core.keras.darknet_io import load_darknet_weights
    from core.keras.equalize import RANGE_FLOOR, channel_ranges, equalize, head_input_layers

    lines = TINY.read_text(encoding="utf-8").splitlines()
    plain = parse_cfg("\n".join(lines), str(TINY))
    start = plain.layers[28].line  # the [convolutional] line of layer 28, which feeds yolo 30's conv
    at = next(i for i in range(start, start + 8) if lines[i].strip() == "batch_normalize=1")
    lines[at] = "batch_normalize=0"
    cfg = parse_cfg("\n".join(lines), "tiny-no-bn-28").with_input_size(SIZE)
    assert not cfg.layers[28].batch_normalize and cfg.layers[35].batch_normalize
    assert head_input_layers(cfg) == [28, 35]
    weights = random_weights(cfg, seed=2, head_gain=3.0)
    w28 = weights[28]
    kernel, bias = w28.kernel.copy(), w28.bias.copy()
    kernel[list(OUTLIERS)] *= OUTLIER_GAIN  # darknet kernel order [out, in, h, w]
    bias[list(OUTLIERS)] *= OUTLIER_GAIN
    weights[28] = type(w28)(bias=bias, kernel=kernel, bn=None)
    model = build_model(cfg)
    load_darknet_weights(model, cfg, weights)
    images = _images(4, seed=3)
    before = [[np.asarray(o) for o in model(x)] for x in images]
    r = channel_ranges(model, cfg, [28], images)[28]
    assert np.median(r[list(OUTLIERS)]) > 10 * np.median(r)
    kernel_before = model.get_layer("conv_28").get_weights()[0].copy()

    done = equalize(model, cfg, {28: r})
    assert [e.layer for e in done] == [28] and done[0].largest_factor > 10
    for x, want in zip(images, before):
        for got, w in zip(model(x), want):
            np.testing.assert_allclose(np.asarray(got), w, rtol=1e-4, atol=1e-4 * np.abs(w).max())
    # every channel now spans the widest one's range, except those under the floor, which grow by 1 / floor
    after = channel_ranges(model, cfg, [28], images)[28]
    big = r >= RANGE_FLOOR * r.max()
    np.testing.assert_allclose(after[big], r.max(), rtol=1e-4)
    np.testing.assert_allclose(after[~big], r[~big] / RANGE_FLOOR, rtol=1e-4)
    # the outlier channels' own kernel was not scaled (they are the widest), a narrow one's was
    k_after = model.get_layer("conv_28").get_weights()[0]
    narrow = int(np.argmin(np.where(big, r, np.inf)))
    np.testing.assert_allclose(k_after[..., narrow], kernel_before[..., narrow] * r.max() / r[narrow], rtol=1e-5)


def _write_images(folder: Path, images: list) -> None:
    folder.mkdir()
    for i, x in enumerate(images):
        cv2.imwrite(str(folder / f"{i}.png"), np.round(x[0] * 255).astype(np.uint8)[:, :, ::-1])


def test_int8_follows_the_float_heads_closer_after_equalizing(tmp_path):
    """The point of it: int8 error of the stride-8 head with the outliers in its input, with and without."""
    from core.detector import Detector
    from core.keras.convert import convert_darknet
    from core.keras.tflite_export import convert_saved_model

    cfg, weights, _ = _model_with_outliers()
    wpath = tmp_path / "m.weights"
    write_weights(wpath, cfg, weights)
    calib = tmp_path / "calib"
    _write_images(calib, _images(24, seed=2))
    test_x = _images(4, seed=3)
    errors, floats = {}, {}
    for name, dataset in (("plain", None), ("equalized", str(calib))):
        sm = tmp_path / f"sm_{name}"
        convert_darknet(str(TINY_3L), str(wpath), str(sm), input_size=SIZE, framework="tflite",
                        classes=None, equalize_dataset=dataset, verify=False)
        out = tmp_path / f"{name}.tflite"
        convert_saved_model(sm, out, quantize_mode="int8", dataset=str(calib), calib_count=24, verify=False)
        q, f = Detector.open(out), Detector.open(sm)
        floats[name] = [f.run_float(x) for x in test_x]
        # the stride-8 head (a 12x12 grid at 96), clamped below at the int8 export's logit floor (-8)
        key = next(k for k, v in floats[name][0].items() if v.shape[1] == SIZE // 8)
        d = [q.run_float(x)[key] - np.maximum(fl[key], -8.0) for x, fl in zip(test_x, floats[name])]
        errors[name] = float(np.sqrt(np.mean(np.square(d))))
    # the float SavedModels agree (equalizing changes nothing in float) ...
    for plain, equalized in zip(floats["plain"], floats["equalized"]):
        for k in plain:
            np.testing.assert_allclose(equalized[k], plain[k], rtol=1e-4, atol=1e-4 * np.abs(plain[k]).max())
    # ... and the int8 model made from the equalized one follows its float model's stride-8 head closer
    # (the int8 error of every layer before the head's input is the same in both, so not by 2x: measured
    # 0.68 against 0.86 RMS logits here)
    assert errors["equalized"] < 0.85 * errors["plain"], errors


def test_save_model_reports_bad_equalize_input_in_one_line(tmp_path):
    cfg = load_cfg(TINY_3L).with_input_size(SIZE)
    wpath = tmp_path / "m.weights"
    write_weights(wpath, cfg, random_weights(cfg, seed=1))
    r = subprocess.run([sys.executable, str(REPO / "save_model.py"), "--cfg", str(TINY_3L), "--weights", str(wpath),
                        "--input_size", str(SIZE), "--framework", "tflite", "--output", str(tmp_path / "sm"),
                        "--equalize_dataset", str(tmp_path / "nowhere")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == f"error: calibration dataset not found: {tmp_path / 'nowhere'}"
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "sm").exists()
    r = subprocess.run([sys.executable, str(REPO / "save_model.py"), "--cfg", str(TINY_3L), "--weights", str(wpath),
                        "--input_size", str(SIZE), "--framework", "tflite", "--output", str(tmp_path / "sm"),
                        "--equalize_dataset", str(tmp_path), "--equalize_count", "0"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == "error: --equalize_count must be at least 1 (got 0)"
    assert not (tmp_path / "sm").exists()
