"""tools.train_reader --refresh_night: the refresh stage's crops, and only those, are rendered with --night; the
stage's record holds it, so a folder does not resume under another share; without the flag cn takes 0.25 (the
command that made the shipped cn run 18, model card, session 46) and kr none, and a stage started by day goes on
by day; bad values are one-line errors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import pytest

from core.errors import AlprError


@pytest.fixture
def fake_steps(monkeypatch: pytest.MonkeyPatch):
    """The recipe with its subprocess steps recorded instead of run (training, rendering, mixing, export, scoring)."""
    from tools import train_reader as recipe

    commands: List[List[str]] = []

    def run_step(cmd: list, log: Path, show: bool = False) -> None:
        commands.append([str(c) for c in cmd])
        if "--json" in cmd:
            Path(cmd[cmd.index("--json") + 1]).write_text('{"sequence_accuracy": 1.0, "count": 1}')

    monkeypatch.setattr(recipe, "check_fonts", lambda charset, allow: ["face.ttf#0"])
    monkeypatch.setattr(recipe, "_train", lambda data, val, charset, run_dir, *a, **k: run_dir / "best.weights.h5")
    monkeypatch.setattr(recipe, "run_step", run_step)
    monkeypatch.setattr(recipe, "newer", lambda a, b: False)  # export every time

    def run(out: Path, night: Optional[float], refresh_epochs: int = 1, charset: str = "cn") -> None:
        recipe.train_reader(charset, out, epochs=1, scale=0.002, heldout="held.txt", learning_rate=1e-3,
                            batch_size=4, precision="float32", refresh_epochs=refresh_epochs, init_weights="none",
                            refresh_night=night)

    return run, commands


def _renders(commands: List[List[str]]) -> List[List[str]]:
    return [c for c in commands if "tools.synth.plates" in c]


def test_refresh_night_reaches_only_the_refresh_renders(fake_steps, tmp_path: Path) -> None:
    run, commands = fake_steps
    run(tmp_path / "r", 0.25)
    renders = _renders(commands)
    from tools.train_reader import RECIPES

    parts = len(RECIPES["cn"])
    assert len(renders) == 2 * parts + 1  # the main mix, the validation set, the refresh mix (held-out given)
    refresh = [c for c in renders if "/refresh/" in c[c.index("--out") + 1]]
    others = [c for c in renders if c not in refresh]
    assert len(refresh) == parts
    assert all(c[c.index("--night") + 1] == "0.25" for c in refresh)
    assert not any("--night" in c for c in others)
    # the int8 calibration stays on the main stage's day crops
    export = next(c for c in commands if "lprnet.export" in c and "int8" in c)
    assert "/refresh/" not in export[export.index("--calibration") + 1]
    assert json.loads((tmp_path / "r" / "refresh" / "recipe.json").read_text())["night"] == 0.25


def test_refresh_night_zero_renders_as_before_and_folders_keep_their_share(fake_steps, tmp_path: Path) -> None:
    run, commands = fake_steps
    run(tmp_path / "plain", 0.0)
    assert not any("--night" in c for c in _renders(commands))
    assert "night" not in json.loads((tmp_path / "plain" / "refresh" / "recipe.json").read_text())
    with pytest.raises(AlprError, match="holds a run with"):
        run(tmp_path / "plain", 0.25)  # a folder refreshed by day does not go on at night
    run(tmp_path / "lit", 0.25)
    with pytest.raises(AlprError, match="holds a run with"):
        run(tmp_path / "lit", 0.0)


@pytest.mark.parametrize("night, refresh_epochs, message", [
    (1.5, 1, "--refresh_night must be between 0 and 1"),
    (-0.1, 1, "--refresh_night must be between 0 and 1"),
    (0.25, 0, "--refresh_night needs a refresh stage"),
])
def test_refresh_night_bad_values(fake_steps, tmp_path: Path, night: float, refresh_epochs: int, message: str) -> None:
    run, commands = fake_steps
    with pytest.raises(AlprError, match=message):
        run(tmp_path / "r", night, refresh_epochs)
    assert commands == []  # refused before anything ran


def _refresh_nights(commands: List[List[str]]) -> List[str]:
    """The --night value of each refresh render ("" where it has none)."""
    refresh = [c for c in _renders(commands) if "/refresh/" in c[c.index("--out") + 1]]
    assert refresh
    return [c[c.index("--night") + 1] if "--night" in c else "" for c in refresh]


def test_default_share_cn_quarter_kr_none(fake_steps, tmp_path: Path) -> None:
    run, commands = fake_steps
    run(tmp_path / "cn", None)
    assert set(_refresh_nights(commands)) == {"0.25"}
    assert json.loads((tmp_path / "cn" / "refresh" / "recipe.json").read_text())["night"] == 0.25
    commands.clear()
    run(tmp_path / "kr", None, charset="kr")
    assert set(_refresh_nights(commands)) == {""}
    assert "night" not in json.loads((tmp_path / "kr" / "refresh" / "recipe.json").read_text())


def test_default_share_without_refresh_stage_is_no_error(fake_steps, tmp_path: Path) -> None:
    run, commands = fake_steps
    run(tmp_path / "r", None, refresh_epochs=0)  # the recipe's smoke run: no refresh stage, so no night
    assert commands and not any("--night" in c for c in commands)
    assert not (tmp_path / "r" / "refresh").exists()


def test_default_share_resumes_a_stage_started_by_day(fake_steps, tmp_path: Path, capsys) -> None:
    run, commands = fake_steps
    run(tmp_path / "old", 0.0)  # a cn folder refreshed before the default was 0.25
    recorded = (tmp_path / "old" / "refresh" / "recipe.json").read_text()
    commands.clear()
    run(tmp_path / "old", None)  # the plain command goes on as the folder began, and says so
    assert set(_refresh_nights(commands)) == {""}
    assert (tmp_path / "old" / "refresh" / "recipe.json").read_text() == recorded
    assert "started with --refresh_night 0" in capsys.readouterr().out
    run(tmp_path / "lit", 0.5)  # a share that is not the default is kept too
    capsys.readouterr()
    commands.clear()
    run(tmp_path / "lit", None)
    assert set(_refresh_nights(commands)) == {"0.5"}
    assert "started with --refresh_night 0.5" in capsys.readouterr().out


def test_default_share_refuses_a_bad_record(fake_steps, tmp_path: Path) -> None:
    run, commands = fake_steps
    refresh = tmp_path / "r" / "refresh"
    refresh.mkdir(parents=True)
    (refresh / "recipe.json").write_text(json.dumps({"epochs": 1, "learning_rate": 0.0003, "seed": 7111,
                                                     "night": None}))
    with pytest.raises(AlprError, match="records night None, not a share between 0 and 1"):
        run(tmp_path / "r", None)
    assert commands == []


def test_command_line_default_is_per_charset() -> None:
    """The flag's default is None, so that the charset's share (and a folder's record) apply; the shares are
    the shipped runs': cn 0.25 (run 18), kr none."""
    from absl import flags

    from tools.train_reader import RECIPES, REFRESH_NIGHT, define_flags, night_schedule

    assert set(REFRESH_NIGHT) == set(RECIPES)
    for args, charset, want in [([], "cn", 0.25), ([], "kr", 0.0), (["--refresh_night", "0"], "cn", 0.0),
                                (["--refresh_night", "0.5"], "kr", 0.5)]:
        fv = flags.FlagValues()
        define_flags(fv)
        fv(["train_reader", "--out", "x", "--charset", charset, *args])
        assert night_schedule(charset, fv.refresh_night, 3) == want
        assert night_schedule(charset, fv.refresh_night, 0) == (0.5 if want == 0.5 else 0.0)
