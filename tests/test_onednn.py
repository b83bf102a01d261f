"""The training programs ask TensorFlow for its oneDNN kernels before TensorFlow is imported
(core.keras.enable_onednn / set_onednn), leave a user's own TF_ENABLE_ONEDNN_OPTS alone, and the recipes
leave it to them (their export and scoring steps keep TensorFlow's default)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import List, Optional

import pytest

from tests.paths import REPO

# Runs a program as __main__ with --help (absl prints the usage and exits before main), then says, at exit,
# what TF_ENABLE_ONEDNN_OPTS was and whether TensorFlow had been imported by then.
PROBE = """import atexit, os, runpy, sys
atexit.register(lambda: print("probe", os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "tensorflow" in sys.modules))
kind, name = sys.argv[1], sys.argv[2]
sys.argv = [name, "--help"]
if kind == "path":
    runpy.run_path(name, run_name="__main__")
else:
    runpy.run_module(name, run_name="__main__", alter_sys=True)
"""


def _env(value: Optional[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = value
    return env


def _probe(kind: str, name: str, value: Optional[str]) -> List[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, kind, name], cwd=REPO, env=_env(value),
                          capture_output=True, text=True, timeout=120)
    lines = [line.split() for line in proc.stdout.splitlines() if line.startswith("probe ")]
    assert lines, f"{name}: no probe line; stderr: {proc.stderr[-1500:]}"
    return lines[-1][1:]


@pytest.mark.parametrize("name", ["train.py", "train_lprnet.py"])
def test_trainers_ask_for_onednn_before_importing_tensorflow(name: str) -> None:
    assert _probe("path", name, None) == ["1", "False"]
    assert _probe("path", name, "0") == ["0", "False"]  # the user's setting is kept


@pytest.mark.parametrize("name", ["tools.train_reader", "tools.train_detector"])
def test_recipes_leave_it_to_their_training_steps(name: str) -> None:
    """The recipes run train_lprnet.py / train.py, which set it; their export and scoring children inherit
    the recipe's environment and so keep TensorFlow's default."""
    assert _probe("module", name, None) == ["None", "False"]


def test_set_onednn_in_a_given_environment_only() -> None:
    from core.keras import set_onednn

    before = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    env = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    set_onednn(None, env)
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    set_onednn(True, env)
    assert env == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    empty: dict = {}
    set_onednn(None, empty)
    assert empty == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    set_onednn(False, empty)
    assert empty == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == before


CHOOSE_THEN_IMPORT = ("import sys\n"
                      "from core.keras import set_onednn\n"
                      "set_onednn({'none': None, 'on': True, 'off': False}[sys.argv[1]])\n"
                      "from core.keras.layers import onednn_enabled\n"
                      "print(onednn_enabled())\n")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="TensorFlow's x86-64 builds have the oneDNN kernels; others may not")
@pytest.mark.parametrize("choice,user,expected", [("none", None, "True"), ("none", "0", "False"),
                                                  ("on", "0", "True"), ("off", None, "False"),
                                                  ("off", "1", "False")])
def test_tensorflow_reports_the_choice(choice: str, user: Optional[str], expected: str) -> None:
    """TensorFlow's own report (IsMklEnabled) after set_onednn, whatever this CPU's default is."""
    pytest.importorskip("tensorflow")
    env = _env(user)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-c", CHOOSE_THEN_IMPORT, choice], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == expected
