"""save_model.py end to end: SavedModel export, reload parity, and one-line errors with exit code 2."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from core.darknet.cfg import load_cfg
from core.darknet.weights import random_weights, write_weights
from core.model_info import load_model_info
from tests.paths import REPO, shared_path

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))


def run_save_model(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "save_model.py"), *args], capture_output=True, text=True,
                          env=ENV, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Random weights for the shipped 3-class yolov4-tiny (the cfg does not depend on input size)."""
    path = tmp_path_factory.mktemp("w") / "tiny.weights"
    cfg = load_cfg(REPO / "data" / "cfg" / "yolov4-tiny.cfg")
    write_weights(path, cfg, random_weights(cfg, seed=2, head_gain=8.0))
    return path


def _reload_and_compare(out_dir, cfg_path, weights_path, size: int) -> None:
    import tensorflow as tf

    from core.keras.convert import load_darknet, model_info_for, serving_function

    info = load_model_info(out_dir)
    assert info is not None and info.input_size == (size, size)
    converted = load_darknet(cfg_path, weights_path, size)
    x = np.random.default_rng(5).uniform(0, 1, (2, size, size, 3)).astype(np.float32)
    got = {k: v.numpy() for k, v in tf.saved_model.load(str(out_dir)).signatures["serving_default"](
        images=tf.constant(x)).items()}
    want = {k: v.numpy() for k, v in serving_function(
        converted.model, model_info_for(converted.cfg, info.class_names, output=info.output))(x).items()}
    assert set(got) == set(want)
    for k in got:
        assert got[k].shape == want[k].shape
        assert np.abs(got[k] - want[k]).max() <= 1e-4


def test_save_model_yolov4_tiny_decoded(tiny_weights, tmp_path) -> None:
    out = tmp_path / "sm"
    r = run_save_model("--model", "yolov4", "--tiny", "--weights", str(tiny_weights), "--input_size", "160",
                       "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout
    info = load_model_info(out)
    assert info.class_names == ("car", "license_plate", "disabled_sticker") and info.output == "decoded"
    assert info.num_candidates == 3 * (5 * 5 + 10 * 10)
    _reload_and_compare(out, REPO / "data" / "cfg" / "yolov4-tiny.cfg", tiny_weights, 160)


def test_save_model_yolo_fastest_raw_heads(tmp_path) -> None:
    cfg = shared_path("assets", "darknet", "yolo-fastest-1.1.cfg")
    weights = shared_path("assets", "darknet", "yolo-fastest-1.1.weights")
    out = tmp_path / "yf"
    r = run_save_model("--cfg", str(cfg), "--weights", str(weights), "--classes",
                       str(shared_path("assets", "darknet", "coco.names")), "--framework", "tflite",
                       "--output", str(out))
    assert r.returncode == 0, r.stderr
    info = load_model_info(out)
    assert info.output == "raw" and len(info.class_names) == 80 and info.input_size == (320, 320)
    _reload_and_compare(out, cfg, weights, 320)


def _assert_one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in errors[0]


def test_errors_truncated_extra_missing(tiny_weights, tmp_path) -> None:
    cfg = str(REPO / "data" / "cfg" / "yolov4-tiny.cfg")
    data = tiny_weights.read_bytes()
    short = tmp_path / "short.weights"
    short.write_bytes(data[:-8])
    _assert_one_line_error(run_save_model("--cfg", cfg, "--weights", str(short), "--output", str(tmp_path / "o")),
                           "truncated at layer 36", "classes=3")
    long = tmp_path / "long.weights"
    long.write_bytes(data + b"\0")
    _assert_one_line_error(run_save_model("--cfg", cfg, "--weights", str(long), "--output", str(tmp_path / "o")),
                           "1 bytes left after the last layer")
    _assert_one_line_error(run_save_model("--cfg", cfg, "--weights", str(tmp_path / "nope.weights")),
                           "not found", "nope.weights")
    assert not (tmp_path / "o").exists()


def test_errors_unknown_section_and_class_mismatch(tiny_weights, tmp_path) -> None:
    text = (REPO / "data" / "cfg" / "yolov4-tiny.cfg").read_text(encoding="utf-8")
    bad = tmp_path / "bad.cfg"
    bad.write_text(text.replace("[upsample]", "[sam]", 1), encoding="utf-8")
    _assert_one_line_error(run_save_model("--cfg", str(bad), "--weights", str(tiny_weights)), "unknown section [sam]")
    names = tmp_path / "four.names"
    names.write_text("a\nb\nc\nd\n", encoding="utf-8")
    _assert_one_line_error(run_save_model("--model", "yolov4", "--tiny", "--weights", str(tiny_weights),
                                          "--classes", str(names), "--output", str(tmp_path / "o")),
                           "4 names", "classes=3")
