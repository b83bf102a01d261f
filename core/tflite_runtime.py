"""Load a TFLite interpreter without requiring TensorFlow.

Order: ``tflite_runtime`` (the one pip package on a Jetson), then ``ai_edge_litert`` (its
successor), then ``tf.lite`` as a last resort on a workstation.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Optional

from core.errors import AlprError

_INSTALL_HINT = (
    "no TFLite interpreter found: install one with 'pip install tflite-runtime' "
    "(or 'pip install ai-edge-litert'; full TensorFlow also works)"
)


def interpreter_class() -> Any:
    """Return the first available ``Interpreter`` class."""
    for module_name in ("tflite_runtime.interpreter", "ai_edge_litert.interpreter"):
        try:
            return importlib.import_module(module_name).Interpreter
        except ImportError:
            continue
    try:
        tf = importlib.import_module("tensorflow")
    except ImportError:
        raise AlprError(_INSTALL_HINT) from None
    return tf.lite.Interpreter


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one, e.g. in a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def load_interpreter(path: str | Path, num_threads: Optional[int] = None) -> Any:
    """Load and allocate a TFLite model; bad files give a one-line AlprError."""
    path = Path(path)
    if not path.is_file():
        raise AlprError(f"TFLite model not found: {path}")
    data = path.read_bytes()
    # A FlatBuffer TFLite model carries the identifier 'TFL3' at byte 4.
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise AlprError(f"not a TFLite model (no TFL3 identifier): {path}")
    cls = interpreter_class()
    try:
        interp = cls(model_content=data, num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AlprError(f"cannot load TFLite model {path}: {first}") from None
    return interp
