"""The training entry points ask TensorFlow for its oneDNN kernels before TensorFlow is imported
(core.keras.enable_onednn), and leave a user's own TF_ENABLE_ONEDNN_OPTS alone."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.paths import REPO

pytest.importorskip("tensorflow")

# (how to start it, name): the five programs that train or time training
ENTRY_POINTS = [("path", "train.py"), ("path", "train_lprnet.py"), ("module", "tools.train_reader"),
                ("module", "tools.train_detector"), ("module", "tools.train_step_benchmark")]

# Runs an entry point as __main__ with --help (absl prints the usage and exits before main), then says, at
# exit, what TF_ENABLE_ONEDNN_OPTS was and whether TensorFlow had been imported by then.
PROBE = """import atexit, os, runpy, sys
atexit.register(lambda: print("probe", os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "tensorflow" in sys.modules))
kind, name = sys.argv[1], sys.argv[2]
sys.argv = [name, "--help"]
if kind == "path":
    runpy.run_path(name, run_name="__main__")
else:
    runpy.run_module(name, run_name="__main__", alter_sys=True)
"""


def _env(value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = value
    return env


def _probe(kind: str, name: str, value: str | None) -> list:
    proc = subprocess.run([sys.executable, "-c", PROBE, kind, name], cwd=REPO, env=_env(value),
                          capture_output=True, text=True, timeout=120)
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("probe ")]
    assert lines, f"{name}: no probe line; stderr: {proc.stderr[-1500:]}"
    return lines[-1][1:]


@pytest.mark.parametrize("kind,name", ENTRY_POINTS)
def test_entry_points_ask_for_onednn_before_importing_tensorflow(kind: str, name: str) -> None:
    assert _probe(kind, name, None) == ["1", "False"]


def test_a_users_setting_is_kept() -> None:
    assert _probe("path", "train_lprnet.py", "0") == ["0", "False"]


def _run(script: str, value: str | None) -> str:
    env = _env(value)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()[-1]


ENABLE_THEN_IMPORT = ("from core.keras import enable_onednn\n"
                      "early = enable_onednn()\n"
                      "from core.keras.layers import onednn_enabled\n"
                      "print(f'{early}/{onednn_enabled()}')\n")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="TensorFlow's x86-64 builds have the oneDNN kernels; others may not")
def test_enable_before_import_turns_onednn_on() -> None:
    """TensorFlow's own report (IsMklEnabled), on any x86-64 CPU: on after enable_onednn, whatever its default."""
    assert _run(ENABLE_THEN_IMPORT, None) == "True/True"
    assert _run(ENABLE_THEN_IMPORT, "0") == "True/False"  # the user's 0 stays 0


def test_enable_after_import_says_it_is_too_late() -> None:
    assert _run("import tensorflow\nfrom core.keras import enable_onednn\nprint(enable_onednn())", "1") == "False"
