"""The Jetson edge bundle (tools/make_bundle.py): built, unpacked into an empty folder, run without TensorFlow.

The fast tests build the bundle from tiny models made here (a random-weight tiny YOLO cfg and a
random-weight LPRNet, both full-integer int8), so they assert that the pipeline runs end to end in
the unpacked bundle, not what it reads. With the shipped models present in checkpoints/,
``test_shipped_bundle_reads_the_demo_plates`` also asserts the plates of the bundled test image.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

from tests.paths import REPO
from tests.test_edge_runtime import BLOCKER

BUNDLE_DIR = "alpr-edge"
DETECTOR = "checkpoints/yolov4-tiny-3l-alpr-544-int8.tflite"
READER_KR = "checkpoints/lprnet-kr-int8.tflite"
PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")

# Runs a bundle script as __main__ and reports, at exit, peak RSS, TensorFlow modules and where core came from.
RUNNER = r'''
import atexit, json, os, resource, runpy, sys

def _peak_rss_kb():
    # VmHWM belongs to this process image; getrusage's ru_maxrss can carry the forking parent's peak over exec
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def _report():
    core = sys.modules.get("core")
    rep = {"peak_rss_kb": _peak_rss_kb(),
           "tf_loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")),
           "core_file": getattr(core, "__file__", None),
           "python": list(sys.version_info[:3])}
    print("RUNNER " + json.dumps(rep), file=sys.stderr)

atexit.register(_report)
script = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.dirname(script))  # as `python detect.py` would
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
'''


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_reader(path: Path) -> Path:
    """A random-weight LPRNet (68 classes, no STN) converted to full-integer int8."""
    from lprnet.export import convert_to_tflite
    from lprnet.model import build_lprnet

    model = build_lprnet(68, stn=False)
    calib = np.random.default_rng(0).random((8, 24, 94, 3)).astype(np.float32)
    return convert_to_tflite(model, path, "int8", calibration=calib)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Dict[str, Path]:
    from tests.test_tflite_export import tiny_models

    tiny = tiny_models()
    root = tmp_path_factory.mktemp("bundle_models")
    detector = root / "tiny-det-int8.tflite"
    shutil.copy(tiny["int8"], detector)
    shutil.copy(str(tiny["int8"]) + ".json", str(detector) + ".json")
    return {"detector": detector, "reader": _make_reader(root / "reader-kr-int8.tflite")}


def _unpack(archive: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    assert not any(dest.iterdir())
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert all(n == BUNDLE_DIR or n.startswith(BUNDLE_DIR + "/") for n in names)
        tar.extractall(dest)
    return dest / BUNDLE_DIR


@pytest.fixture(scope="module")
def bundle(models, tmp_path_factory):
    from tools.make_bundle import build_bundle

    out = tmp_path_factory.mktemp("bundle_out")
    archive = out / "alpr-edge.tar.gz"
    report = build_bundle(archive, models["detector"], models["reader"], version="test-1")
    root = _unpack(archive, tmp_path_factory.mktemp("unpacked"))
    return {"archive": archive, "report": report, "root": root, "out": out}


def _blocked_env(tmp: Path) -> Dict[str, str]:
    """PYTHONPATH = only a sitecustomize that makes tensorflow/keras unimportable (not the repository)."""
    site = tmp / "blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1")
    return env


def run_bundled_detect(root: Path, python: str, env: Dict[str, str], out: Path,
                       extra: Optional[List[str]] = None) -> Dict:
    """The bundle's detect.py on its test image; returns the JSON document and the runner's report."""
    runner = out.parent / f"runner_{out.name}.py"
    runner.write_text(RUNNER)
    cmd = [python, str(runner), "detect.py", "--images", "data/images/demo.jpg", "--lpr", "--json",
           "--dont_show", "--output", str(out)] + (extra or [])
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(next(ln for ln in proc.stderr.splitlines() if ln.startswith("RUNNER "))[7:])
    doc = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    return {"doc": doc, "report": rep, "stdout": proc.stdout}


def _plates(doc: Dict) -> List[Dict]:
    return [d for d in doc["detections"] if d["class"] == "license_plate"]


# ------------------------------------------------------------------------------------------ closure
def test_edge_closure_is_the_tf_free_runtime() -> None:
    from tools.make_bundle import edge_modules

    mods = set(edge_modules())
    assert {"core.app", "core.detector", "core.pipeline", "core.video", "core.tracking", "core.drawing",
            "core.tflite_runtime", "lprnet.reader", "lprnet.charset", "lprnet.ctc", "lprnet.preprocess",
            "lprnet.home"} <= mods
    assert not any(m.startswith("core.keras") for m in mods)
    assert not mods & {"lprnet.model", "lprnet.train", "lprnet.export", "lprnet.import_torch", "lprnet.evaluate",
                       "lprnet.benchmark", "lprnet.torch_reference", "core.evaluation"}


def test_build_fails_when_an_edge_module_imports_tensorflow(tmp_path: Path) -> None:
    from core.errors import AlprError
    from tools.make_bundle import edge_modules

    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "core" / "ok.py").write_text("import json\n")
    (tmp_path / "core" / "heavy.py").write_text("import tensorflow as tf\n")
    (tmp_path / "detect.py").write_text("from core import ok\n\ndef main():\n    import core.heavy\n")
    (tmp_path / "detect_video.py").write_text("import core.ok\n")
    with pytest.raises(AlprError, match=r"edge module core\.heavy does not import without TensorFlow"):
        edge_modules(tmp_path)
    (tmp_path / "core" / "heavy.py").write_text("def f():\n    import tensorflow\n")  # lazy: allowed
    assert edge_modules(tmp_path) == ["core", "core.heavy", "core.ok"]


# ------------------------------------------------------------------------------------------- build
def test_manifest_describes_the_models_and_every_file(bundle, models) -> None:
    root = bundle["root"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["version"] == "test-1"
    det, rd = manifest["models"]["detector"], manifest["models"]["reader_kr"]
    assert det["file"] == DETECTOR and rd["file"] == READER_KR
    assert det["sha256"] == _sha(models["detector"]) and det["size"] == models["detector"].stat().st_size
    assert rd["sha256"] == _sha(models["reader"]) and rd["size"] == models["reader"].stat().st_size
    assert det["input_size"] == [64, 64] and rd["input_size"] == [94, 24]
    assert det["quantization"] == rd["quantization"] == "int8"
    assert det["input_type"].startswith("int8") and rd["input_type"].startswith("int8")
    side = json.loads(Path(str(models["detector"]) + ".json").read_text())["source"]
    assert det["converted_with"]["tensorflow"] == side["tensorflow"]
    assert det["converted_with"]["keras"] == side["keras"]
    # every file in the archive (but the manifest) is listed with its real checksum
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(manifest["files"])
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == _sha(root / name), name
    assert (root / DETECTOR).read_bytes() == models["detector"].read_bytes()
    assert (root / (DETECTOR + ".json")).is_file()
    for must in ("detect.py", "detect_video.py", "requirements-edge.txt", "install.sh", "run.sh", "alpr.service",
                 "alpr.env", "README.md", "verify_bundle.py", "data/images/demo.jpg", "data/classes/custom.names",
                 "data/charsets/kr.txt", "data/charsets/cn.txt", "core/pipeline.py", "lprnet/reader.py"):
        assert must in on_disk, must
    assert not any(n.startswith("core/keras") or n in ("lprnet/model.py", "lprnet/train.py") for n in on_disk)
    assert (root / "requirements-edge.txt").read_text() == (REPO / "requirements-edge.txt").read_text()
    assert os.access(root / "install.sh", os.X_OK) and os.access(root / "run.sh", os.X_OK)
    assert bundle["report"].size_bytes == bundle["archive"].stat().st_size < 30e6
    print(f"\ntiny-model bundle: {bundle['report'].size_bytes / 1e6:.2f} MB, {len(on_disk)} files")


def test_failed_build_leaves_nothing(tmp_path: Path, models) -> None:
    from core.errors import AlprError
    from tools.make_bundle import build_bundle

    with pytest.raises(AlprError, match="reader \\(kr\\) model not found"):
        build_bundle(tmp_path / "b.tar.gz", models["detector"], tmp_path / "missing.tflite")
    assert list(tmp_path.iterdir()) == []
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "make_bundle.py"), "--detector",
                           str(tmp_path / "nope.tflite"), "--out", str(tmp_path / "b.tar.gz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: detector model not found: {tmp_path / 'nope.tflite'} "
                                                "(train/convert it first, or pass --detector)"]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ run the bundle
def test_bundled_detect_runs_without_tensorflow(bundle, tmp_path: Path) -> None:
    root = bundle["root"]
    env = _blocked_env(tmp_path)
    res = run_bundled_detect(root, sys.executable, env, tmp_path / "out", ["--score", "0.05"])
    rep, doc = res["report"], res["doc"]
    assert rep["tf_loaded"] == []
    assert Path(rep["core_file"]).resolve() == (root / "core" / "__init__.py").resolve()
    import cv2

    h, w = cv2.imread(str(REPO / "data/images/demo.jpg")).shape[:2]
    assert (doc["width"], doc["height"]) == (w, h)
    plates = _plates(doc)
    assert plates, "the tiny detector found no plate at score 0.05: the reader was not exercised"
    from lprnet.charset import load_charset

    alphabet = set("".join(load_charset("kr").tokens))
    read = [p for p in plates if "plate" in p]
    assert read, "no plate was read"
    for p in plates:
        x1, y1, x2, y2 = p["box"]
        if x2 - x1 >= 2 and y2 - y1 >= 2:  # random boxes may be flat (no pixels to crop): those are not read
            assert "plate" in p, p
    for p in read:
        assert set(p["plate"]["text"]) <= alphabet and 0.0 <= p["plate"]["confidence"] <= 1.0
    assert (tmp_path / "out" / "demo.jpg").is_file()
    print(f"\nbundled detect.py (tiny int8 models, TF blocked, {sys.version.split()[0]}): "
          f"peak RSS {rep['peak_rss_kb'] / 1024:.1f} MiB, {len(read)} of {len(plates)} plate(s) read")


def test_verify_bundle_passes_then_catches_a_corrupted_model(bundle, tmp_path: Path) -> None:
    root = tmp_path / BUNDLE_DIR
    shutil.copytree(bundle["root"], root)
    ok = subprocess.run([sys.executable, "verify_bundle.py"], cwd=root, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("bundle test-1: ") and "detector int8 64x64" in ok.stdout
    model = root / DETECTOR
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped, same size
    model.write_bytes(bytes(data))
    bad = subprocess.run([sys.executable, "verify_bundle.py"], cwd=root, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: model {DETECTOR} (detector) is corrupted: sha256 ")
    assert lines[0].endswith("does not match the manifest's " + _sha(bundle["root"] / DETECTOR)[:12]
                             + "...: copy the bundle again")
    # the service's launcher verifies before starting detect_video.py
    env = dict(os.environ, ALPR_PYTHON=sys.executable, ALPR_VIDEO="nothing.mp4", ALPR_EVENTS_DIR=str(tmp_path / "ev"))
    svc = subprocess.run(["bash", "run.sh"], cwd=root, capture_output=True, text=True, timeout=60, env=env)
    assert svc.returncode == 2 and "is corrupted" in svc.stderr and not (tmp_path / "ev").exists()
    # a truncated reader is reported by size
    model.write_bytes(bundle["root"].joinpath(DETECTOR).read_bytes())
    reader = root / READER_KR
    reader.write_bytes(reader.read_bytes()[:1000])
    bad = subprocess.run([sys.executable, "verify_bundle.py"], cwd=root, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (f"error: model {READER_KR} (reader_kr) is corrupted: 1000 bytes, the manifest "
                                  f"says {(bundle['root'] / READER_KR).stat().st_size}: copy the bundle again")


def test_bundle_python_is_38_compatible(bundle) -> None:
    vermin = shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (pip install vermin)")
    files = sorted(str(p) for p in bundle["root"].rglob("*.py"))
    assert len(files) > 20
    proc = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--eval-annotations", "--violations"] + files,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


def test_shipped_bundle_reads_the_demo_plates(tmp_path: Path) -> None:
    from core.pipeline import DEFAULT_DETECTOR, DEFAULT_READER
    from tools.make_bundle import build_bundle

    needed = [DEFAULT_DETECTOR["tflite"], DEFAULT_READER["kr"]]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"the shipped models are not there yet: {', '.join(missing)}")
    report = build_bundle(tmp_path / "alpr-edge.tar.gz", needed[0], needed[1])
    assert report.size_bytes < 30e6
    root = _unpack(tmp_path / "alpr-edge.tar.gz", tmp_path / "unpacked")
    res = run_bundled_detect(root, sys.executable, _blocked_env(tmp_path), tmp_path / "out")
    want = [ln.split()[5] for ln in (REPO / "data/images/demo.txt").read_text().splitlines() if len(ln.split()) > 5]
    got = [p.get("plate", {}).get("text") for p in _plates(res["doc"])]
    # The bundle reads exactly what the source tree reads with the same models ...
    ref = subprocess.run([sys.executable, str(REPO / "detect.py"), "--images", str(REPO / "data/images/demo.jpg"),
                          "--lpr", "--json", "--dont_show", "--output", str(tmp_path / "ref")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    ref_doc = json.loads((tmp_path / "ref" / "demo.json").read_text(encoding="utf-8"))
    assert got == [p.get("plate", {}).get("text") for p in _plates(ref_doc)]
    # ... and the shipped reader, a first small model (checkpoints/MODEL_CARD.md), gets at least 2 of the 3
    # labelled texts exactly (tests/test_shipped_models.py checks the same outside the bundle).
    assert sum(t in got for t in want) >= 2, got
    print(f"\nshipped bundle {report.size_bytes / 1e6:.2f} MB; plates {got}; "
          f"peak RSS {res['report']['peak_rss_kb'] / 1024:.1f} MiB")


# ------------------------------------------------------------------------------- fresh venv (slow)
def _fresh_venv_install(bundle, tmp_path: Path, python: str) -> None:
    """install.sh in a copy of the unpacked bundle: venv with only requirements-edge.txt, then detection."""
    root = tmp_path / BUNDLE_DIR
    shutil.copytree(bundle["root"], root)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(["bash", "install.sh", "--python", python], cwd=root, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "install: TFLite interpreter" in proc.stdout and "check: demo.jpg:" in proc.stdout
    print("\n" + "\n".join(ln for ln in (proc.stdout + proc.stderr).splitlines()
                            if ln.startswith(("install:", "check:", "bundle "))))
    vpy = root / ".venv" / "bin" / "python"
    cfg = (root / ".venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    gone = subprocess.run([str(vpy), "-c", "import tensorflow"], capture_output=True, text=True, env=env)
    assert gone.returncode != 0  # a venv of requirements-edge.txt alone has no TensorFlow
    freeze = subprocess.run([str(vpy), "-m", "pip", "freeze"], capture_output=True, text=True, env=env).stdout
    res = run_bundled_detect(root, str(vpy), env, tmp_path / "out", ["--score", "0.05"])
    assert res["report"]["tf_loaded"] == [] and _plates(res["doc"])
    print(f"\nfresh venv ({'.'.join(map(str, res['report']['python']))}): peak RSS "
          f"{res['report']['peak_rss_kb'] / 1024:.1f} MiB; packages: "
          + " ".join(ln for ln in freeze.split() if ln.split("==")[0].lower() in
                     ("numpy", "opencv-python-headless", "ai-edge-litert", "tflite-runtime", "absl-py")))


@pytest.mark.slow
def test_fresh_venv_install_and_detect(bundle, tmp_path: Path) -> None:
    _fresh_venv_install(bundle, tmp_path, sys.executable)


@pytest.mark.slow
def test_fresh_python38_venv_install_and_detect(bundle, tmp_path: Path) -> None:
    if not PY38.is_file():
        pytest.skip(f"no Python 3.8 interpreter at {PY38}")
    _fresh_venv_install(bundle, tmp_path, str(PY38))


def test_verify_check_runs_detection_and_compares_with_the_labels(bundle, tmp_path: Path) -> None:
    root = bundle["root"]
    env = _blocked_env(tmp_path)
    want = [ln.split()[5] for ln in (root / "data/images/demo.txt").read_text().splitlines() if len(ln.split()) > 5]
    assert want == ["45누7812", "123가4567", "38다2057"]
    ok = subprocess.run([sys.executable, "verify_bundle.py", "--quiet", "--check"], cwd=root, env=env,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    line = ok.stdout.strip().splitlines()[-1]
    # random-weight reader: it detects plates but reads none of the three labelled ones
    assert line.startswith("check: demo.jpg: ") and line.endswith(
        "; 0 of 3 expected plate(s) read (45누7812, 123가4567, 38다2057)")
    strict = subprocess.run([sys.executable, "verify_bundle.py", "--quiet", "--check", "--strict"], cwd=root,
                            env=env, capture_output=True, text=True, timeout=300)
    assert strict.returncode == 1
    assert strict.stderr.strip() == "error: expected plates not read: 45누7812, 123가4567, 38다2057"
