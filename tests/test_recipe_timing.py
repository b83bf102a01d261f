"""tools.recipe's durations: the wall time of each step and of the whole recipe, with the CPU share the
hypervisor took ("steal", Linux's /proc/stat), since the recipes' times are held against a 2-hour limit."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tools import recipe


def test_cpu_ticks_reads_the_aggregate_line(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice; per-core lines after it
    stat.write_text("cpu  100 5 20 300 10 0 5 60 7 0\ncpu0 50 2 10 150 5 0 2 30 3 0\nintr 1 2 3\n")
    # steal is the 8th number; the total adds the first eight (guest is already inside user)
    assert recipe.cpu_ticks(stat) == (60, 100 + 5 + 20 + 300 + 10 + 0 + 5 + 60)


@pytest.mark.parametrize("text", ["", "cpu 1 2 3\n", "cpu0 1 2 3 4 5 6 7 8\n", "cpu  1 2 x 4 5 6 7 8\n"])
def test_cpu_ticks_unreadable_is_none(tmp_path: Path, text: str) -> None:
    stat = tmp_path / "stat"
    stat.write_text(text)
    assert recipe.cpu_ticks(stat) is None
    assert recipe.cpu_ticks(tmp_path / "missing") is None


def test_steal_share_and_duration_text() -> None:
    assert recipe.steal_share((60, 500), (160, 1500)) == pytest.approx(0.1)
    assert recipe.steal_share(None, (1, 2)) is None and recipe.steal_share((1, 2), None) is None
    assert recipe.steal_share((5, 100), (5, 100)) is None  # no time passed: unknown, not 0/0
    assert recipe.duration(90, 0.1) == "1.5 min, 10% of the CPU taken by the hypervisor (steal)"
    assert recipe.duration(90, 0.01) == "1.5 min"  # under STEAL_REPORTED (2%)
    assert recipe.duration(90, None) == "1.5 min"


def test_step_and_recipe_print_their_steal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    readings = iter([(0, 1000), (0, 1000), (300, 2000), (400, 3000)])  # recipe, step start, step end, recipe
    monkeypatch.setattr(recipe, "cpu_ticks", lambda: next(readings))
    recipe.run_recipe(lambda: recipe.run_step([sys.executable, "-c", "pass"], tmp_path / "log"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].endswith(", 30% of the CPU taken by the hypervisor (steal))")  # 300 of 1000 ticks
    assert lines[-1].startswith("recipe done in ")
    assert ", 20% of the CPU taken by the hypervisor (steal) (this run;" in lines[-1]  # 400 of 2000


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="no /proc/stat (not Linux)")
def test_this_machine_has_cpu_ticks() -> None:
    ticks = recipe.cpu_ticks()
    assert ticks is not None and 0 <= ticks[0] <= ticks[1] and ticks[1] > 0
