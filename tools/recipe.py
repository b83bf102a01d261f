"""Shared steps of the one-command training recipes (``tools.train_reader``, ``tools.train_detector``).

A recipe is a chain of subprocess steps, each skipped when its output exists, so the same command
continues after an interruption. Every step prints its command and its duration; the output of a step
goes to the recipe's log unless the step shows it (training: its progress bar and epochs). On a virtual
machine the duration also says how much of the CPU the hypervisor gave to others ("steal"), since the
recipes' times are compared against a 2-hour limit on machines whose cores are shared.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from core.cli import atomic_path, fail
from core.errors import AlprError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALPR_SHARED", REPO.parent / "shared"))
PROC_STAT = Path("/proc/stat")
STEAL_REPORTED = 0.02  # below this share the duration is printed alone


def cpu_ticks(path: Path = PROC_STAT) -> Optional[Tuple[int, int]]:
    """(steal, total) CPU ticks of all cores from Linux's ``/proc/stat``; None where it cannot be read.

    The total is user + nice + system + idle + iowait + irq + softirq + steal (the guest columns are
    already counted in user and nice)."""
    try:
        with open(path, encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu" or not all(f.isdigit() for f in fields[1:9]):
        return None
    ticks = [int(f) for f in fields[1:9]]
    return ticks[7], sum(ticks)


def steal_share(before: Optional[Tuple[int, int]], after: Optional[Tuple[int, int]]) -> Optional[float]:
    """The share of CPU time stolen between two ``cpu_ticks`` readings; None when unknown."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def duration(seconds: float, steal: Optional[float]) -> str:
    """``N.N min``, with the stolen share of the CPU when it is large enough to matter."""
    text = f"{seconds / 60:.1f} min"
    if steal is not None and steal >= STEAL_REPORTED:
        text += f", {steal:.0%} of the CPU taken by the hypervisor (steal)"
    return text


Reading = Tuple[float, Optional[Tuple[int, int]]]


def clock() -> Reading:
    """Wall time and CPU ticks now: the start of a span that ``since`` reports."""
    return time.time(), cpu_ticks()


def since(start: Reading) -> str:
    """``duration`` of the span from ``start`` (a ``clock`` reading) to now."""
    return duration(time.time() - start[0], steal_share(start[1], cpu_ticks()))


def run_step(cmd: Sequence[str], log: Path, show: bool = False) -> None:
    """Run one step in the repository root; its output goes to ``log`` unless ``show``."""
    print("$ " + " ".join(cmd), flush=True)
    start = clock()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        sink = None if show else fh
        proc = subprocess.run(list(cmd), stdout=sink, stderr=sink, cwd=REPO)
    if proc.returncode != 0:
        where = "its messages are above" if show else f"see {log}"
        raise AlprError(f"step failed (exit {proc.returncode}): {' '.join(cmd)}; {where}")
    print(f"  ({since(start)})", flush=True)


def newer(path: Path, than: Path) -> bool:
    """``path`` exists and is at least as new as ``than`` (an export is up to date with its weights)."""
    return path.is_file() and path.stat().st_mtime >= than.stat().st_mtime


def as_recorded(value: Any) -> Any:
    """``value`` as recipe.json reads it back: tuples become lists, keys strings."""
    return json.loads(json.dumps(value))


def recorded(out: Path) -> Optional[Dict[str, Any]]:
    """What ``out/recipe.json`` holds (the run a folder was started with), None where there is none."""
    path = out / "recipe.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def check_recipe(out: Path, want: Dict[str, Any]) -> None:
    """One folder, one recipe: refuse to mix another recipe's data or run into ``out``."""
    want = as_recorded(want)
    have = recorded(out)
    if have is not None:
        if have != want:
            raise AlprError(f"{out} holds a run with {have}, not {want}: use another --out")
        return
    with atomic_path(out / "recipe.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(want), encoding="utf-8")


def scaled(count: int, scale: float, least: int = 2) -> int:
    """``count`` shrunk by ``scale`` (a smoke run), never under ``least``."""
    return max(least, round(count * scale))


def run_recipe(recipe: Callable[[], None]) -> None:
    """A recipe's ``main``: its errors as one line, and an interruption says how to go on; at the end, the
    wall time of this invocation (a resumed run's earlier steps are not in it)."""
    start = clock()
    try:
        recipe()
    except (AlprError, OSError, ValueError, KeyError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted: run the same command again to continue", 130)
    print(f"recipe done in {since(start)} (this run; steps skipped as done before are not counted)",
          flush=True)
