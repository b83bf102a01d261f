"""The edge runtime needs no TensorFlow: detection with TFLite in a process where ``import tensorflow`` fails."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.paths import REPO
from tests.test_tflite_export import tiny_models

BLOCKER = '''
import sys


class _NoTensorFlow:
    """Refuse TensorFlow and Keras, as on a device with only tflite-runtime installed."""

    BLOCKED = ("tensorflow", "keras", "tf_keras")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError("blocked for the edge-runtime test: " + name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
'''

CHILD = r'''
import importlib, json, sys
from pathlib import Path

import cv2

try:
    import tensorflow  # noqa: F401
    sys.exit("tensorflow was importable")
except ImportError:
    pass
repo = Path(sys.argv[1])
modules = []
for path in sorted((repo / "core").rglob("*.py")):
    rel = path.relative_to(repo).with_suffix("")
    if rel.parts[1] == "keras":
        continue
    name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    importlib.import_module(name)
    modules.append(name)
from core.detector import Detector

image = cv2.imread(sys.argv[2])
out = {"modules": modules}
for model in sys.argv[3:]:
    det = Detector.open(model, num_threads=1)
    dets = det.detect(image, score_threshold=0.5)
    out[model] = [[d.class_id, d.score] + list(d.box) for d in dets]
out["tf_loaded"] = any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def tiny():
    return tiny_models()


def test_tflite_detection_without_tensorflow(tiny, tmp_path):
    from core.detector import Detector

    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    image = sorted(tiny["calib"].glob("*.png"))[3]
    models = [str(tiny["float32"]), str(tiny["int8"])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    proc = subprocess.run([sys.executable, str(script), str(REPO), str(image)] + models, capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not out["tf_loaded"]
    expected_modules = {"core.detector", "core.yolo", "core.metrics", "core.tflite_runtime", "core.model_info",
                        "core.darknet.cfg", "core.darknet.weights"}
    assert expected_modules <= set(out["modules"])
    assert not any(m.startswith("core.keras") for m in out["modules"])
    # the same detections as in this process (where TensorFlow is available)
    img = cv2.imread(str(image))
    for model in models:
        got = np.array(out[model], np.float64).reshape(-1, 6)
        want = [[d.class_id, d.score] + list(d.box) for d in Detector.open(model).detect(img, 0.5)]
        assert len(got) >= 3
        assert np.allclose(got, np.array(want), atol=1e-3)


def test_blocker_really_blocks(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 1 and "blocked for the edge-runtime test: tensorflow" in proc.stderr


def test_pipeline_thread_defaults(monkeypatch):
    """Without --num_threads the detector gets every usable core and the reader one (the runtime's own
    default is a single thread); an explicit count goes to both."""
    import lprnet.reader
    from core import pipeline as pl
    from core.tflite_runtime import usable_cores

    seen = {}
    monkeypatch.setattr(pl.Detector, "open", classmethod(
        lambda cls, path, num_threads=None, class_names=None: seen.setdefault("det", []).append(num_threads)))

    class FakeReader:
        def __init__(self, path, charset, num_threads=None, decoder=None, tta=None, retry_cuts=None, province=None,
                     home=None):
            seen.setdefault("province", []).append(province)
            seen.setdefault("home", []).append(home)
            seen.setdefault("reader", []).append(num_threads)
            seen.setdefault("decoder", []).append(decoder)
            seen.setdefault("tta", []).append(tta)
            seen.setdefault("retry_cuts", []).append(retry_cuts)

    monkeypatch.setattr(lprnet.reader, "PlateReader", FakeReader)
    reader_file = REPO / "data" / "classes" / "custom.names"  # any existing file: the fake does not read it
    pl.Pipeline.open("detector.tflite", reader_file, "kr")
    pl.Pipeline.open("detector.tflite", reader_file, "kr", num_threads=3)
    # video's options: no weak-read retries, so the reader does not retry other line cuts either
    pl.Pipeline.open("detector.tflite", reader_file, "kr", options=pl.PipelineOptions(retry_weak_reads=False))
    checks = seen.pop("province")  # the default region, digits and Hangul checks of Korean reads
    assert seen.pop("home") == [None] * 3  # no home region unless asked for
    assert seen == {"det": [usable_cores(), 3, usable_cores()], "reader": [1, 3, 1],
                    "decoder": ["format"] * 3, "tta": [True] * 3, "retry_cuts": [True, True, False]}
    from lprnet.charset import KR_HANGUL, KR_REGIONS
    from lprnet.province import DIGIT_PAIRS

    assert [[c.classes for c in cs] for cs in checks] == [[KR_REGIONS, DIGIT_PAIRS, tuple(KR_HANGUL)]] * 3
    assert usable_cores() == len(os.sched_getaffinity(0))
