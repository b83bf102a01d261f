"""Shared steps of the one-command training recipes (``tools.train_reader``, ``tools.train_detector``).

A recipe is a chain of subprocess steps, each skipped when its output exists, so the same command
continues after an interruption. Every step prints its command and its duration; the output of a step
goes to the recipe's log unless the step shows it (training: its progress bar and epochs).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, Sequence

from core.cli import atomic_path, fail
from core.errors import AlprError

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ALPR_SHARED", REPO.parent / "shared"))


def run_step(cmd: Sequence[str], log: Path, show: bool = False) -> None:
    """Run one step in the repository root; its output goes to ``log`` unless ``show``."""
    print("$ " + " ".join(cmd), flush=True)
    start = time.time()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        sink = None if show else fh
        proc = subprocess.run(list(cmd), stdout=sink, stderr=sink, cwd=REPO)
    if proc.returncode != 0:
        where = "its messages are above" if show else f"see {log}"
        raise AlprError(f"step failed (exit {proc.returncode}): {' '.join(cmd)}; {where}")
    print(f"  ({(time.time() - start) / 60:.1f} min)", flush=True)


def newer(path: Path, than: Path) -> bool:
    """``path`` exists and is at least as new as ``than`` (an export is up to date with its weights)."""
    return path.is_file() and path.stat().st_mtime >= than.stat().st_mtime


def check_recipe(out: Path, want: Dict[str, Any]) -> None:
    """One folder, one recipe: refuse to mix another recipe's data or run into ``out``."""
    path = out / "recipe.json"
    want = json.loads(json.dumps(want))  # as it reads back: tuples become lists, keys strings
    if path.is_file():
        have = json.loads(path.read_text(encoding="utf-8"))
        if have != want:
            raise AlprError(f"{out} holds a run with {have}, not {want}: use another --out")
        return
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(want), encoding="utf-8")


def scaled(count: int, scale: float, least: int = 2) -> int:
    """``count`` shrunk by ``scale`` (a smoke run), never under ``least``."""
    return max(least, round(count * scale))


def run_recipe(recipe: Callable[[], None]) -> None:
    """A recipe's ``main``: its errors as one line, and an interruption says how to go on."""
    try:
        recipe()
    except (AlprError, OSError, ValueError, KeyError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted: run the same command again to continue", 130)
