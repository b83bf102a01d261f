"""tools.train_detector, the detector's one-command recipe: a two-stage miniature of the chain (a two-head
stage from random weights, then a grafted three-head one) renders, trains, converts and scores; a rerun
skips what is done, and trains again what starts from weights that changed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import AlprError
from tests.paths import REPO


def _commands(text: str) -> list:
    return [line for line in text.splitlines() if line.startswith("$ ")]


def test_two_stage_chain_renders_trains_grafts_converts_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    pytest.importorskip("tensorflow")
    from core.darknet.cfg import load_cfg
    from core.darknet.weights import read_weights
    from tools import train_detector as recipe

    stages = [recipe.Stage("a", recipe.TWO_HEAD, (1,), 256, 3, 1e-3, 1, 1, 10),
              recipe.Stage("b", recipe.THREE_HEAD, (1, 2), 288, 1, 3e-4, 1, 1, 10)]
    monkeypatch.setattr(recipe, "STAGES", stages)
    monkeypatch.setattr(recipe, "SCENES", {1: 6, 2: 4})
    monkeypatch.setattr(recipe, "HELDOUT", {99: 3})
    monkeypatch.setattr(recipe, "EXPORT_SIZE", 320)
    monkeypatch.setattr(recipe, "CALIBRATION_SEEDS", (2,))
    out = tmp_path / "det"
    recipe.train_detector(out, scale=1.0, max_steps=1, batch_size=2, workers=1)
    first = capfd.readouterr().out

    scenes = out / "scenes"
    # seed 1: 6 scenes, round(5 % of 6) = 0 but the split keeps one for validation; seed 2: 4, all training
    assert len((scenes / "s1" / "valid.txt").read_text().split()) == 1
    mix = (scenes / "mix_1_2" / "train.txt").read_text().split()
    assert len(mix) == 5 + 4 and all((scenes / "mix_1_2" / p).is_file() for p in mix)

    commands = _commands(first)
    stage_a = next(c for c in commands if f"--out_dir {out / 'train' / 'a'} " in c)
    stage_b = next(c for c in commands if f"--out_dir {out / 'train' / 'b'} " in c)
    assert "--weights" not in stage_a and "--input_size 256 " in stage_a and f"--train {scenes / 'mix_1'}" in stage_a
    assert f"--weights {out / 'stages' / 'b-init.weights'}" in stage_b and "--input_size 288 " in stage_b
    assert "--input_size 320 " in next(c for c in commands if "save_model.py" in c)

    two, three = load_cfg(REPO / recipe.TWO_HEAD), load_cfg(REPO / recipe.THREE_HEAD)
    _, trained_a = read_weights(out / "stages" / "a.weights", two)
    _, init_b = read_weights(out / "stages" / "b-init.weights", three)  # raises unless it fits the 3l cfg
    _, trained_b = read_weights(out / "stages" / "b.weights", three)
    np.testing.assert_array_equal(init_b[0].kernel, trained_a[0].kernel)  # the shared layers carry over
    # and stage b trained them (its one step has lr 0 in the burn-in, but batch norm's running stats move)
    assert not np.array_equal(trained_b[0].bn[2], init_b[0].bn[2])
    final = out / "yolov4-tiny-3l-alpr.weights"
    assert final.read_bytes() == (out / "stages" / "b.weights").read_bytes()

    tflite = out / "yolov4-tiny-3l-alpr-320-int8.tflite"
    info = json.loads(Path(str(tflite) + ".json").read_text())
    assert info["input_size"] == [320, 320] and len(info["heads"]) == 3
    quant = info["source"]["quantization"]  # the shipped file's conversion, as the model card gives it
    assert (quant["quantize_mode"], quant["activation_ranges"], quant["head_logit_floor"],
            quant["head_logit_ceiling"]) == ("int8", "percentile 99.9999", -8.0, 12.0)
    # save_model.py equalized the inputs of the heads' convs that only the head reads (28 and 42: the
    # 3l cfg's route after yolo 37 also reads 35) on the calibration scenes, seed 2's four
    assert info["source"]["equalized"] == {"layers": [28, 42], "images": 4}
    assert json.loads((out / "eval-int8-s99.json").read_text())["images"] == 3
    assert "int8 held-out s99 (3 scenes) AP@0.5: car " in first

    recipe.train_detector(out, scale=1.0, max_steps=1, batch_size=2, workers=1)
    rerun = _commands(capfd.readouterr().out)
    assert len(rerun) == 1 and "evaluate.py" in rerun[0]  # rendering, training, grafting, conversion skipped

    later = (out / "stages" / "b.weights").stat().st_mtime + 10
    os.utime(out / "stages" / "a.weights", (later, later))  # as if stage a had been trained again
    recipe.train_detector(out, scale=1.0, max_steps=1, batch_size=2, workers=1)
    again = capfd.readouterr().out
    rerun = _commands(again)
    steps = ["tools.graft_weights", "train.py", "save_model.py", "convert_tflite.py", "evaluate.py"]
    assert len(rerun) == len(steps) and all(step in c for step, c in zip(steps, rerun)), rerun
    assert "resumed from" not in again  # stage b starts from the new graft, not from its old checkpoint

    with pytest.raises(AlprError, match="holds a run with"):
        recipe.train_detector(out, scale=1.0, max_steps=2, batch_size=2, workers=1)


@pytest.mark.parametrize("args, message", [
    (["--scale", "0"], "error: --scale must be in (0, 1]"),
    (["--max_steps", "0"], "error: --max_steps must be at least 1"),
    (["--batch_size", "0"], "error: --batch_size must be at least 1"),
    (["--workers", "-1"], "error: --workers must be 0 (one per core) or more"),
    (["--schedule", "long"], "error: --schedule must be card, short, short416, short544, bf16 or bf16hr, not 'long'"),
])
def test_bad_arguments_are_one_line_errors(tmp_path: Path, args: list, message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "tools.train_detector", "--out", str(tmp_path / "d"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == message
    assert not (tmp_path / "d").exists()


def test_stages_are_the_model_cards_commands() -> None:
    """Every stage of the recipe is one of the card's train.py commands, with the same arguments."""
    from tools.train_detector import STAGES

    card = (REPO / "checkpoints" / "MODEL_CARD.md").read_text(encoding="utf-8")
    block = card.split("### Command (2-core machine)")[1].split("```")[1].replace("\\\n", " ")
    commands = [c.split() for c in block.splitlines() if c.startswith("python train.py")]
    assert len(commands) == len(STAGES)
    for stage, words in zip(STAGES, commands):
        args = dict(zip(words[2::2], words[3::2]))
        assert args["--cfg"] == stage.cfg
        assert int(args["--input_size"]) == stage.size and int(args["--epochs"]) == stage.epochs
        assert float(args.get("--lr", "1e-3")) == stage.lr  # train.py's default lr and burn-in: 1e-3, 200
        assert int(args.get("--warmup_steps", "200")) == stage.warmup
        assert int(args["--eval_every"]) == stage.eval_every and int(args["--eval_max_images"]) == stage.eval_images


@pytest.mark.parametrize("schedule,cfgs,budgets,precision", [
    ("short", ["two", "three"], ["3500", "1500"], None),
    ("short416", ["two", "three", "three"], ["3000", "2200", "250"], None),
    ("short544", ["two", "three", "three"], ["2800", "1400", "700"], None),
    ("bf16", ["two", "three", "three"], ["4400", "1000", "1150"], "mixed_bfloat16"),
    ("bf16hr", ["two", "two", "three"], ["4400", "1500", "1600"], "mixed_bfloat16"),
])
def test_short_schedule_stages_end_on_their_step_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture, schedule: str, cfgs: list,
                                                        budgets: list, precision: str) -> None:
    """The 2-hour chains: their stages' step budgets, not their epoch counts, end them at batch 8 (so the
    cosine schedule runs to its end), every seed they train on is rendered, and each train.py command
    carries its stage's budget, or the smaller --max_steps of a smoke run, and its precision (no flag:
    train.py's float32 default)."""
    pytest.importorskip("tensorflow")  # core.keras.layers: the machine's bfloat16 hardware
    from tools import train_detector as recipe

    stages, scenes, calibration = recipe.schedule_of(schedule)
    heads = {"two": recipe.TWO_HEAD, "three": recipe.THREE_HEAD}
    assert [s.cfg for s in stages] == [heads[c] for c in cfgs]
    for stage in stages:
        train_scenes = sum(scenes[s] - (round(scenes[s] * recipe.VALID_FRACTION) if s == recipe.VALID_SEED else 0)
                           for s in stage.seeds)
        assert stage.steps is not None and stage.steps <= stage.epochs * (train_scenes // 8)
        assert (stage.epochs - 1) * (train_scenes // 8) < stage.steps  # no epoch count far beyond the budget
    assert set(calibration) <= set(scenes) and recipe.VALID_SEED in scenes

    commands: list = []

    def run_step(cmd: list, log: Path, show: bool = False) -> None:
        commands.append(cmd)
        if "evaluate.py" in cmd:
            Path(cmd[cmd.index("--json") + 1]).write_text('{"map50": {}, "images": 0}')

    monkeypatch.setattr(recipe, "run_step", run_step)
    monkeypatch.setattr(recipe, "_render", lambda folder, *a: folder)
    monkeypatch.setattr(recipe, "_mix", lambda scenes, seeds: scenes / "mix.txt")
    monkeypatch.setattr(recipe, "newer", lambda a, b: True)  # nothing to convert: only the training commands
    from core.keras import layers

    monkeypatch.setattr(layers, "bfloat16_hardware", lambda: True)
    for cap, expected in ((None, budgets), (2, ["2"] * len(budgets))):
        commands.clear()
        recipe.train_detector(tmp_path / f"d{cap}", scale=1.0, max_steps=cap, batch_size=8, workers=1,
                              schedule=schedule)
        train = [c for c in commands if "train.py" in c]
        assert [c[c.index("--max_steps") + 1] for c in train] == expected
        assert [c[c.index("--precision") + 1] if "--precision" in c else None for c in train] == \
            [precision] * len(budgets)
    # without bfloat16 hardware every stage trains in float32 (emulated bfloat16 is slower), unless forced
    monkeypatch.setattr(layers, "bfloat16_hardware", lambda: False)
    for forced, want in ((None, None), ("mixed_bfloat16", "mixed_bfloat16")):
        commands.clear()
        recipe.train_detector(tmp_path / f"host{forced}", scale=1.0, max_steps=None, batch_size=8, workers=1,
                              schedule=schedule, precision=forced)
        train = [c for c in commands if "train.py" in c]
        assert [c[c.index("--max_steps") + 1] for c in train] == budgets
        assert [c[c.index("--precision") + 1] if "--precision" in c else None for c in train] == [want] * len(budgets)
        said = "so its bfloat16 stages train in float32" in capsys.readouterr().out
        assert said == (precision is not None and forced is None)  # only where a stage fell back
    # the same command goes on at the precision a folder was started with, on either kind of machine
    for folder, hardware, want in (("dNone", False, precision), ("hostNone", True, None)):
        monkeypatch.setattr(layers, "bfloat16_hardware", lambda hardware=hardware: hardware)
        commands.clear()
        recipe.train_detector(tmp_path / folder, scale=1.0, max_steps=None, batch_size=8, workers=1,
                              schedule=schedule)
        train = [c for c in commands if "train.py" in c]
        assert [c[c.index("--precision") + 1] if "--precision" in c else None for c in train] == [want] * len(budgets)
    assert "emulated" not in capsys.readouterr().out
    # and refuses another one
    if precision is not None:
        with pytest.raises(AlprError, match="holds a run with"):
            recipe.train_detector(tmp_path / "hostNone", scale=1.0, max_steps=None, batch_size=8, workers=1,
                                  schedule=schedule, precision="mixed_bfloat16")
