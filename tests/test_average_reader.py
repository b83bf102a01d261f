"""tools.average_reader: the weight-by-weight mean of two readers, and its errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import AlprError
from tests.paths import REPO
from tools.average_reader import average_arrays

pytest.importorskip("tensorflow")


def _random_reader(path: Path, stn: bool, seed: int) -> list:
    """A reader whose every array (batch-norm statistics included) is random and positive, saved to ``path``."""
    from lprnet.model import build_lprnet

    model = build_lprnet(68, stn=stn)
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(0.5, 2.0, w.shape).astype(w.dtype) for w in model.get_weights()]
    model.set_weights(arrays)
    model.save_weights(str(path))
    return arrays


def test_cli_writes_the_weighted_mean_of_every_array(tmp_path: Path) -> None:
    a = _random_reader(tmp_path / "a.weights.h5", True, 1)
    b = _random_reader(tmp_path / "b.weights.h5", True, 2)
    out = tmp_path / "avg.weights.h5"
    proc = subprocess.run([sys.executable, "-m", "tools.average_reader", "--base", str(tmp_path / "a.weights.h5"),
                           "--tuned", str(tmp_path / "b.weights.h5"), "--share", "0.25", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from lprnet.model import load_keras_model

    got = load_keras_model(str(out)).get_weights()
    assert len(got) == len(a) > 10
    for g, x, y in zip(got, a, b):
        np.testing.assert_allclose(g, 0.75 * x + 0.25 * y, rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_mismatched_readers_and_bad_share_fail_in_one_line(tmp_path: Path) -> None:
    _random_reader(tmp_path / "stn.weights.h5", True, 3)
    _random_reader(tmp_path / "plain.weights.h5", False, 4)
    out = tmp_path / "avg.weights.h5"
    proc = subprocess.run([sys.executable, "-m", "tools.average_reader", "--base", str(tmp_path / "stn.weights.h5"),
                           "--tuned", str(tmp_path / "plain.weights.h5"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the models differ")
    assert not out.exists()
    with pytest.raises(AlprError, match="--share"):
        average_arrays([np.zeros(2)], [np.ones(2)], 1.5)
    with pytest.raises(AlprError, match="shape"):
        average_arrays([np.zeros(2)], [np.ones(3)], 0.5)
    # share 0 and 1 give back the two inputs exactly (hand values)
    assert average_arrays([np.float32([2.0])], [np.float32([4.0])], 0.0)[0][0] == 2.0
    assert average_arrays([np.float32([2.0])], [np.float32([4.0])], 1.0)[0][0] == 4.0
    assert average_arrays([np.float32([2.0])], [np.float32([4.0])], 0.3)[0][0] == pytest.approx(2.6)
