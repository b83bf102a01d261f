"""tools.train_detector, the detector's one-command recipe: a two-stage miniature of the chain (a two-head
stage, then a grafted three-head one) renders, trains, converts and scores; a rerun skips what is done."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from core.darknet.cfg import load_cfg  # noqa: E402
from core.darknet.weights import read_weights  # noqa: E402
from tests.paths import REPO  # noqa: E402


def test_two_stage_chain_renders_trains_grafts_converts_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from tools import train_detector as recipe

    stages = [recipe.Stage("a", recipe.TWO_HEAD, (1,), 320, 3, 1e-3, 1, 1, 10),
              recipe.Stage("b", recipe.THREE_HEAD, (1, 2), 320, 1, 3e-4, 1, 1, 10)]
    monkeypatch.setattr(recipe, "STAGES", stages)
    monkeypatch.setattr(recipe, "SCENES", {1: 6, 2: 4})
    monkeypatch.setattr(recipe, "HELDOUT", {99: 3})
    monkeypatch.setattr(recipe, "EXPORT_SIZE", 320)
    monkeypatch.setattr(recipe, "CALIBRATION_SEEDS", (2,))
    out = tmp_path / "det"
    recipe.train_detector(out, scale=1.0, max_steps=1, batch_size=2, workers=1)

    scenes = out / "scenes"
    # seed 1: 6 scenes, max(5 %, 1/6) of them (one) for validation; seed 2: 4, all for training
    assert len((scenes / "s1" / "valid.txt").read_text().split()) == 1
    mix = (scenes / "mix_1_2" / "train.txt").read_text().split()
    assert len(mix) == 5 + 4 and all((scenes / "mix_1_2" / p).is_file() for p in mix)

    two, three = load_cfg(REPO / recipe.TWO_HEAD), load_cfg(REPO / recipe.THREE_HEAD)
    _, trained_a = read_weights(out / "stages" / "a.weights", two)
    _, init_b = read_weights(out / "stages" / "b-init.weights", three)  # raises unless it fits the 3l cfg
    np.testing.assert_array_equal(init_b[0].kernel, trained_a[0].kernel)  # shared layers carry over
    read_weights(out / "yolov4-tiny-3l-alpr.weights", three)
    log = (out / "steps.log").read_text()
    stage_b = next(line for line in log.splitlines() if f"--out_dir {out / 'train' / 'b'} " in line)
    assert "--weights " + str(out / "stages" / "b-init.weights") in stage_b and "--input_size 320" in stage_b

    assert (out / "yolov4-tiny-3l-alpr-320-int8.tflite").read_bytes()[4:8] == b"TFL3"
    scores = json.loads((out / "eval-int8-s99.json").read_text())
    assert scores["images"] == 3
    assert set(scores["map50"]) >= {"car", "license_plate", "disabled_sticker"}
    first = capsys.readouterr().out
    assert "int8 held-out s99 (3 scenes) AP@0.5: car" in first

    recipe.train_detector(out, scale=1.0, max_steps=1, batch_size=2, workers=1)
    rerun = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
    assert len(rerun) == 1 and "evaluate.py" in rerun[0]  # rendering, training, grafting, conversion skipped

    with pytest.raises(Exception, match="holds a run with"):
        recipe.train_detector(out, scale=1.0, max_steps=2, batch_size=2, workers=1)


@pytest.mark.parametrize("args, message", [
    (["--scale", "0"], "error: --scale must be in (0, 1]"),
    (["--max_steps", "0"], "error: --max_steps must be at least 1"),
])
def test_bad_arguments_are_one_line_errors(tmp_path: Path, args: list, message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "tools.train_detector", "--out", str(tmp_path / "d"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == message
    assert not (tmp_path / "d").exists()
