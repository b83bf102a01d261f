"""detect.py and detect_video.py run as a user would (subprocess, fresh output folder).

The detector here is the real Yolo-Fastest COCO model from ../shared converted by our own tools
(SavedModel for --framework tf, TFLite for --framework tflite), except where a test needs plates read
(the shipped models); their accuracy is tested in tests/test_shipped_models.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.yolo import iou_matrix
from tests.fixtures.mjpeg_server import free_port
from tests.fixtures.mjpeg_server import serve as serve_mjpeg
from tests.paths import REPO, shared_path

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def yolo_fastest(tmp_path_factory):
    """(tflite path, SavedModel dir) of the real Yolo-Fastest, converted with our tools."""
    from core.keras.convert import export_saved_model, load_darknet, model_info_for
    from core.keras.tflite_export import convert_saved_model
    from core.model_info import read_class_names

    darknet = shared_path("assets", "darknet")
    out = tmp_path_factory.mktemp("yf")
    converted = load_darknet(darknet / "yolo-fastest-1.1.cfg", darknet / "yolo-fastest-1.1.weights")
    names = read_class_names(darknet / "coco.names")
    export_saved_model(converted.model, model_info_for(converted.cfg, names, output="raw"), out / "raw")
    export_saved_model(converted.model, model_info_for(converted.cfg, names, output="decoded"), out / "tf")
    convert_saved_model(out / "raw", out / "yf.tflite", "float32", verify=False)
    return out / "yf.tflite", out / "tf"


def run(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                          env=ENV, cwd=REPO, timeout=timeout)


def _load_jsons(folder: Path) -> dict:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}


def test_detect_on_photos_tflite_and_tf_agree(yolo_fastest, tmp_path) -> None:
    tflite, saved_model = yolo_fastest
    scenes = shared_path("data", "scenes")
    r1 = run("detect.py", "--weights", str(tflite), "--images", str(scenes), "--output", str(tmp_path / "a"),
             "--json", "--count", "--dont_show", "--score", "0.3")
    assert r1.returncode == 0, r1.stderr
    lite = _load_jsons(tmp_path / "a")
    assert sorted(lite) == ["car", "car2", "car3", "car4"]
    # the photos show a car each; car.jpg's is cut by the frame and not found at 0.3 by this tiny model
    for name in ("car2", "car3", "car4"):
        classes = [d["class"] for d in lite[name]["detections"]]
        assert "car" in classes, (name, classes)
        assert lite[name]["width"] == cv2.imread(str(scenes / f"{name}.jpg")).shape[1]
    assert "car3.jpg: 1 car" in r1.stdout
    assert (tmp_path / "a" / "car3.jpg").is_file()
    assert "LICENSE" in r1.stderr  # the licence file in the folder is reported, not fatal

    r2 = run("detect.py", "--framework", "tf", "--weights", str(saved_model), "--images", str(scenes),
             "--output", str(tmp_path / "b"), "--json", "--dont_show", "--score", "0.3")
    assert r2.returncode == 0, r2.stderr
    full = _load_jsons(tmp_path / "b")
    for name in lite:
        a, b = lite[name]["detections"], full[name]["detections"]
        assert [d["class"] for d in a] == [d["class"] for d in b]
        if a:
            iou = iou_matrix(np.array([d["box"] for d in a]), np.array([d["box"] for d in b]))
            assert np.all(np.diag(iou) >= 0.99)
            assert np.allclose([d["score"] for d in a], [d["score"] for d in b], atol=1e-3)


def test_bad_files_are_reported_and_skipped(yolo_fastest, tmp_path) -> None:
    tflite, _ = yolo_fastest
    folder = tmp_path / "in"
    folder.mkdir()
    good = shared_path("data", "scenes", "car3.jpg").read_bytes()
    (folder / "good1.jpg").write_bytes(good)
    (folder / "good2.jpg").write_bytes(good)
    (folder / "corrupt.jpg").write_bytes(good[: len(good) // 50])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "text.png").write_text("this is text named like an image")
    r = run("detect.py", "--weights", str(tflite), "--images", str(folder), "--output", str(tmp_path / "o"),
            "--dont_show", "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    for bad in ("corrupt.jpg", "empty.jpg", "notes.txt", "text.png"):
        assert sum(bad in line for line in warnings) == 1, (bad, warnings)
    assert sorted(p.name for p in (tmp_path / "o").glob("*.json")) == ["good1.json", "good2.json"]
    assert "processed 2 image(s)" in r.stdout

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "empty.jpg").write_bytes(b"")
    r = run("detect.py", "--weights", str(tflite), "--images", str(only_bad), "--output", str(tmp_path / "p"),
            "--dont_show")
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_detect_one_line_errors(yolo_fastest, tmp_path) -> None:
    tflite, saved_model = yolo_fastest
    cases = [
        (["--weights", str(tmp_path / "missing.tflite")], "not found"),
        (["--framework", "tf", "--weights", str(tflite)], "SavedModel"),
        (["--weights", str(tflite), "--size", "416"], "does not match the model's input 320x320"),
        (["--weights", str(tflite), "--classes", str(REPO / "data" / "classes" / "custom.names")], "3 names"),
        (["--weights", str(tflite), "--lpr", "--lpr_weights", str(tmp_path / "nope.tflite")], "not found"),
        (["--weights", str(tflite), "--lpr", "--home_region", "皖"], "not a region of charset 'kr'"),
    ]
    not_tflite = tmp_path / "x.tflite"
    not_tflite.write_bytes(b"hello world, not a flatbuffer")
    cases.append((["--weights", str(not_tflite)], "not a TFLite model"))
    # the home region is checked before any model loads (a broken detector would be the error otherwise)
    cases.append((["--weights", str(not_tflite), "--lpr", "--home_region", "皖"], "not a region of charset 'kr'"))
    cases.append((["--weights", str(tflite), "--home_region", "서울"], "they need --lpr"))
    cases.append((["--weights", str(tflite), "--home_weight", "3"], "they need --lpr"))
    cases.append((["--weights", str(not_tflite), "--lpr", "--home_weight", "3"], "give a home region too"))
    cases.append((["--weights", str(not_tflite), "--lpr", "--home_region", "서울", "--home_weight", "0.5"],
                  "weight must be a finite number >= 1"))
    for args, needle in cases:
        r = run("detect.py", *args, "--images", str(shared_path("data", "scenes", "car3.jpg")),
                "--output", str(tmp_path / "o"), "--dont_show")
        errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
        assert r.returncode == 2 and len(errors) == 1 and needle in errors[0], (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_detect_video_file(yolo_fastest, tmp_path) -> None:
    tflite, _ = yolo_fastest
    video = shared_path("data", "video", "license_plate.mp4")
    out = tmp_path / "out.avi"
    frames = tmp_path / "frames.jsonl"
    r = run("detect_video.py", "--weights", str(tflite), "--nolpr", "--video", str(video), "--output", str(out),
            "--output_format", "MJPG", "--frames_json", str(frames), "--max_frames", "40", "--dont_show")
    assert r.returncode == 0, r.stderr
    assert "40 frames" in r.stdout and "FPS" in r.stdout
    records = [json.loads(line) for line in frames.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 40
    assert sum(any(d["class"] == "car" for d in rec["detections"]) for rec in records) >= 30
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 40


def test_detect_video_unreadable_file_is_one_error(yolo_fastest, tmp_path) -> None:
    """A file that is no video, and one cut after 3 kB: one error line, exit 2, no output files created,
    and earlier --events / --frames_json files of the same names kept as they were."""
    tflite, _ = yolo_fastest
    garbage = tmp_path / "garbage.jpg"  # OpenCV opens it (an image sequence) and then decodes no frame
    garbage.write_bytes(b"not a video at all")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(shared_path("data", "video", "license_plate.mp4").read_bytes()[:3000])
    earlier = '{"event": "plate", "text": "12가3456"}\n'
    for video, needle, existing in ((garbage, "no frame could be read", False),
                                    (cut, "cannot open video source", True)):
        video_out, frames, events = (tmp_path / f"{video.stem}{suffix}" for suffix in
                                     (".avi", "-frames.jsonl", "-events.jsonl"))
        if existing:
            frames.write_text(earlier, encoding="utf-8")
            events.write_text(earlier, encoding="utf-8")
        r = run("detect_video.py", "--weights", str(tflite), "--nolpr", "--video", str(video),
                "--output", str(video_out), "--output_format", "MJPG", "--frames_json", str(frames),
                "--events", str(events), "--dont_show")
        errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
        assert r.returncode == 2 and len(errors) == 1 and needle in errors[0], r.stderr
        assert "Traceback" not in r.stderr and "done:" not in r.stdout
        assert not video_out.exists()
        if existing:
            assert frames.read_text(encoding="utf-8") == earlier == events.read_text(encoding="utf-8")
        else:
            assert not frames.exists() and not events.exists()
    # a --frames_json that cannot be written: one error, and the new --events file is not left behind
    events = tmp_path / "new-events.jsonl"
    r = run("detect_video.py", "--weights", str(tflite), "--nolpr", "--video", str(cut), "--events", str(events),
            "--frames_json", str(garbage / "frames.jsonl"), "--dont_show")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 2 and len(errors) == 1 and "cannot write" in errors[0], r.stderr
    assert not events.exists()


def test_detect_video_sigterm_while_reconnecting(yolo_fastest, tmp_path) -> None:
    """SIGTERM while a lost live stream is being reconnected ends the run at once, outputs closed (it used to
    wait for a frame that never came, until systemd's SIGKILL)."""
    import signal

    tflite, _ = yolo_fastest
    port = free_port()
    server = serve_mjpeg(port, "--start", "0")
    out = tmp_path / "live.avi"
    frames = tmp_path / "frames.jsonl"
    app = subprocess.Popen([sys.executable, str(REPO / "detect_video.py"), "--weights", str(tflite), "--nolpr",
                            "--video", f"http://127.0.0.1:{port}/stream.mjpg", "--output", str(out),
                            "--output_format", "MJPG", "--frames_json", str(frames), "--dont_show"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not frames.exists() or len(frames.read_text().splitlines()) < 5):
            time.sleep(0.1)
        server.kill()
        server.wait()
        time.sleep(3.0)  # the reader has lost the stream and waits between attempts (0.5, 1, 2 ... s)
        written = len(frames.read_text().splitlines())
        app.send_signal(signal.SIGTERM)
        stdout, stderr = app.communicate(timeout=20)
    finally:
        app.kill()
        server.kill()
        server.wait()
    assert app.returncode == 0 and "Traceback" not in stderr, stderr
    assert "reconnecting" in stderr and written >= 5
    assert len(frames.read_text().splitlines()) == written
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == written


def test_detect_video_live_stream_reconnects(yolo_fastest, tmp_path) -> None:
    """A local MJPEG-over-HTTP stream killed and restarted mid-run: the run goes on and its video plays."""
    tflite, _ = yolo_fastest
    port = free_port()
    video = str(shared_path("data", "video", "license_plate.mp4"))

    def serve() -> subprocess.Popen:
        return serve_mjpeg(port, "--video", video)

    server = serve()
    out = tmp_path / "live.avi"
    frames = tmp_path / "frames.jsonl"
    app = subprocess.Popen([sys.executable, str(REPO / "detect_video.py"), "--weights", str(tflite), "--nolpr",
                            "--video", f"http://127.0.0.1:{port}/stream.mjpg", "--output", str(out),
                            "--output_format", "MJPG", "--frames_json", str(frames), "--max_frames", "60",
                            "--dont_show"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                           cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not frames.exists() or
                                               len(frames.read_text().splitlines()) < 15):
            time.sleep(0.2)
        before = len(frames.read_text().splitlines())
        server.kill()
        server.wait()
        time.sleep(1.5)
        server = serve()
        stdout, stderr = app.communicate(timeout=180)
    finally:
        app.kill()
        server.kill()
        server.wait()
    assert app.returncode == 0, stderr
    assert before >= 15 and "reconnect" in stderr.lower()
    assert len(frames.read_text().splitlines()) == 60  # it kept going after the restart
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 60


def test_detect_video_sigterm_closes_outputs(yolo_fastest, tmp_path) -> None:
    tflite, _ = yolo_fastest
    import signal

    out = tmp_path / "stopped.avi"
    frames = tmp_path / "frames.jsonl"
    app = subprocess.Popen([sys.executable, str(REPO / "detect_video.py"), "--weights", str(tflite), "--nolpr",
                            "--video", str(shared_path("data", "video", "road.mp4")), "--output", str(out),
                            "--output_format", "MJPG", "--frames_json", str(frames), "--dont_show"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not frames.exists() or len(frames.read_text().splitlines()) < 5):
        time.sleep(0.1)
    app.send_signal(signal.SIGTERM)
    stdout, stderr = app.communicate(timeout=60)
    assert "Traceback" not in stderr
    written = len(frames.read_text().splitlines())
    assert 5 <= written < 38  # stopped early (road.mp4 has 38 frames)
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == written


def _events(path: Path) -> list:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def _demo_then_road(path: Path) -> set:
    """A video: 8 frames of the bundled demo scene (three Korean plates, drifting 2 px a frame), then
    road.mp4's 38 frames (a street without Korean or Chinese plates) at the same size. Returns the demo's
    plate texts, from its label file."""
    from core.yolo_dataset import read_labels

    demo = cv2.imread(str(REPO / "data" / "images" / "demo.jpg"))
    h, w = demo.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for f in range(8):
        writer.write(cv2.warpAffine(demo, np.float32([[1, 0, 2 * f], [0, 1, 0]]), (w, h),
                                    borderMode=cv2.BORDER_REPLICATE))
    cap = cv2.VideoCapture(str(shared_path("data", "video", "road.mp4")))
    ok, frame = cap.read()
    while ok:
        writer.write(cv2.resize(frame, (w, h)))
        ok, frame = cap.read()
    writer.release()
    boxes, _ = read_labels(REPO / "data" / "images" / "demo.txt", num_classes=3)
    return {b.text for b in boxes if b.text}


def test_detect_video_event_filter(tmp_path) -> None:
    """With the shipped models, the default events are exactly the unfiltered run's format-valid ones with a
    mean confidence of at least 0.1 (the documented default), in the same order: here the demo's three
    plates, while the reader's guesses on road.mp4 are counted as held back. --event_min_conf alone keeps
    format-invalid reads when asked."""
    video = tmp_path / "demo_then_road.mp4"
    demo_plates = _demo_then_road(video)
    assert len(demo_plates) == 3
    every, default, confident = tmp_path / "every.jsonl", tmp_path / "default.jsonl", tmp_path / "confident.jsonl"
    r = run("detect_video.py", "--video", str(video), "--dont_show", "--events", str(every), "--event_invalid",
            "--event_min_conf", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "held back" not in r.stdout
    unfiltered = _events(every)
    assert {e["text"] for e in unfiltered} >= demo_plates
    # the filter has both kinds of junk to hold back, and no confidence sits where the JSON's 4-decimal
    # rounding could put it on the other side of 0.1
    assert any(not e["valid"] for e in unfiltered) and any(e["confidence"] < 0.1 for e in unfiltered)
    assert all(abs(e["confidence"] - 0.1) > 1e-4 for e in unfiltered)

    r = run("detect_video.py", "--video", str(video), "--dont_show", "--events", str(default))
    assert r.returncode == 0, r.stderr[-2000:]
    kept = [e for e in unfiltered if e["valid"] and e["confidence"] >= 0.1]
    assert {e["text"] for e in kept} == demo_plates
    assert _events(default) == kept
    assert (f"{len(kept)} plate event(s) ({len(unfiltered) - len(kept)} held back: not a valid plate format or "
            "confidence under 0.1)") in r.stdout

    assert any(not e["valid"] and e["confidence"] >= 0.1 for e in unfiltered)  # what --event_invalid adds
    r = run("detect_video.py", "--video", str(video), "--dont_show", "--events", str(confident),
            "--event_invalid", "--event_min_conf", "0.1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _events(confident) == [e for e in unfiltered if e["confidence"] >= 0.1]

    r = run("detect_video.py", "--video", str(video), "--dont_show", "--event_min_conf", "1.5")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "error: --event_min_conf must be in [0, 1], got 1.5"
