"""tools.graft_weights: growing yolov4-tiny into yolov4-tiny-3l keeps what the two-head model had learned."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from core.darknet.cfg import load_cfg
from core.darknet.weights import WeightsHeader, random_weights, read_weights, write_weights
from tests.paths import REPO

TINY = REPO / "data" / "cfg" / "yolov4-tiny.cfg"
TINY_3L = REPO / "data" / "cfg" / "yolov4-tiny-3l.cfg"


def _grafted():
    from tools.graft_weights import graft

    small, big = load_cfg(TINY).with_input_size(96), load_cfg(TINY_3L).with_input_size(96)
    src = random_weights(small, seed=3, head_gain=2.0)
    return small, big, src, graft(big, small, src, seed=0)


def test_the_shared_trunk_and_both_old_heads_are_copied_and_only_the_stride_8_head_is_new():
    small, big, src, (weights, copied, fresh) = _grafted()
    # the 3l cfg appends route -3, conv 64, upsample, route -1,15, conv 128, conv, yolo after layer 37
    assert fresh == [39, 42, 43]
    assert copied == sorted(src)
    for i in copied:
        for a, b in zip(weights[i].arrays(), src[i].arrays()):
            np.testing.assert_array_equal(a, b)
    head = weights[43].bias.reshape(3, 8)  # 3 anchors x (4 box + objectness + 3 classes)
    np.testing.assert_allclose(head[:, 4], math.log(0.01 / 0.99), rtol=1e-6)
    assert not np.any(head[:, [0, 1, 2, 3, 5, 6, 7]])
    gamma, mean, var = weights[42].bn
    assert np.all(gamma == 1) and np.all(mean == 0) and np.all(var == 1)


def test_the_grown_network_gives_the_old_heads_outputs_exactly():
    pytest.importorskip("tensorflow")
    from core.keras.builder import build_model
    from core.keras.darknet_io import load_darknet_weights

    small, big, src, (weights, _, _) = _grafted()
    old, new = build_model(small), build_model(big)
    load_darknet_weights(old, small, src)
    load_darknet_weights(new, big, weights)
    x = np.random.default_rng(1).uniform(0, 1, (1, 96, 96, 3)).astype(np.float32)
    a, b = old(x), new(x)
    assert len(a) == 2 and len(b) == 3
    for i in range(2):
        np.testing.assert_allclose(np.asarray(b[i]), np.asarray(a[i]), atol=1e-5)
    assert tuple(b[2].shape[1:3]) == (12, 12)  # stride 8


def test_cli_writes_a_file_the_big_cfg_reads_and_reports_bad_weights_in_one_line(tmp_path):
    small = load_cfg(TINY)
    write_weights(tmp_path / "tiny.weights", small, random_weights(small, seed=0), WeightsHeader(seen=1234))
    out = tmp_path / "3l.weights"
    cmd = [sys.executable, "-m", "tools.graft_weights", "--cfg", str(TINY_3L), "--from_cfg", str(TINY),
           "--out", str(out)]
    proc = subprocess.run(cmd + ["--from_weights", str(tmp_path / "tiny.weights")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 new (39, 42, 43)" in proc.stdout
    header, _ = read_weights(out, load_cfg(TINY_3L))
    assert header.seen == 0
    (tmp_path / "bad.weights").write_bytes(b"\0" * 100)
    bad = subprocess.run(cmd[:-1] + [str(tmp_path / "x.weights"), "--from_weights", str(tmp_path / "bad.weights")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and "truncated" in bad.stderr
    assert not (tmp_path / "x.weights").exists()
