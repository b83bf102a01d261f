"""Video sources, reader thread (no drop on files, drop on live), reconnection, writers, signals, FPS."""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from core.errors import AlprError
from core.video import (
    FpsMeter,
    FrameReader,
    JsonlWriter,
    SourceSpec,
    VideoWriter,
    csi_pipeline,
    parse_source,
    stop_on_signals,
)


def test_parse_source_kinds(tmp_path: Path) -> None:
    f = tmp_path / "v.mp4"
    f.write_bytes(b"x")
    assert parse_source("0") == SourceSpec("camera", 0, True)
    assert parse_source("2") == SourceSpec("camera", 2, True)
    assert parse_source("/dev/video1") == SourceSpec("camera", "/dev/video1", True)
    url = "rtsp://10.0.0.2:554/stream"
    assert parse_source(url) == SourceSpec("stream", url, True)
    assert parse_source("HTTP://cam/mjpg").kind == "stream"
    pipe = "videotestsrc ! videoconvert ! appsink"
    assert parse_source(pipe) == SourceSpec("gstreamer", pipe, True)
    assert parse_source("filesrc location=a.mp4 ! decodebin ! appsink").live is False
    assert parse_source(str(f)) == SourceSpec("file", str(f), False)
    assert parse_source("file://" + str(f)) == SourceSpec("file", str(f), False)
    with pytest.raises(AlprError, match="not found"):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(AlprError, match="scheme"):
        parse_source("ftp://host/x.mp4")
    with pytest.raises(AlprError):
        parse_source("  ")


def test_csi_pipeline() -> None:
    p = csi_pipeline(sensor_id=1, width=1920, height=1080, fps=30, flip=2, display_width=960,
                     display_height=540)
    assert p.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=(int)1920, height=(int)1080" in p and "framerate=(fraction)30/1" in p
    assert "nvvidconv flip-method=2" in p and "width=(int)960, height=(int)540" in p
    assert p.endswith("appsink drop=true max-buffers=1")
    assert parse_source(p).kind == "gstreamer"
    with pytest.raises(AlprError):
        csi_pipeline(flip=9)


def _write_video(path: Path, n: int, size=(64, 48), fps: float = 20.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), i * 5, np.uint8))  # frame i has brightness 5 i
    writer.release()


def test_file_reader_delivers_every_frame_in_order(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    _write_video(path, 40)
    got: List[int] = []
    with FrameReader(str(path), queue_size=2) as reader:
        assert not reader.live and reader.fps == pytest.approx(20.0)
        for k, frame in enumerate(reader):
            if k < 5:
                time.sleep(0.03)  # a slow consumer: the reader must block, not drop
            got.append(int(round(float(frame.image.mean()) / 5)))
            assert frame.index == k and frame.timestamp == pytest.approx(k / 20.0)
        assert reader.dropped == 0 and reader.size == (64, 48)
    assert got == list(range(40))
    assert reader.read() is None


class FakeCapture:
    """A capture that yields ``n`` numbered frames (then fails), optionally slowly."""

    def __init__(self, start: int, n: int, delay: float = 0.0, opened: bool = True) -> None:
        self.next, self.end, self.delay, self.opened = start, start + n, delay, opened
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opened

    def read(self):
        if self.delay:
            time.sleep(self.delay)
        if self.next >= self.end:
            return False, None
        img = np.full((4, 4, 3), self.next % 256, np.uint8)
        self.next += 1
        return True, img

    def get(self, prop: int) -> float:
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released = True


def test_reconnect_with_backoff_then_recovers() -> None:
    plan = [FakeCapture(0, 3), FakeCapture(0, 0, opened=False), None, FakeCapture(100, 3)]
    calls = {"n": 0}

    def factory() -> FakeCapture | None:
        i = calls["n"]
        calls["n"] += 1
        if i < len(plan):
            if plan[i] is None:
                raise ConnectionRefusedError("refused")
            return plan[i]
        return FakeCapture(0, 0, opened=False)  # gone for good

    messages: List[str] = []
    reader = FrameReader(SourceSpec("stream", "rtsp://fake", True), queue_size=16, capture_factory=factory,
                         backoff_initial=0.01, backoff_max=0.04, max_reconnects=4, on_event=messages.append)
    values = [int(f.image[0, 0, 0]) for f in reader]
    reader.stop()
    assert values == [0, 1, 2, 100, 101, 102]
    assert reader.reconnects == 1
    delays = [float(m) for m in re.findall(r"reconnecting in ([0-9.]+) s", " ".join(messages))]
    # first outage: 2 failed attempts then success (0.01, 0.02, 0.04); second: 4 attempts capped at 0.04
    assert delays == [0.01, 0.02, 0.04, 0.01, 0.02, 0.04, 0.04]
    assert plan[0].released and plan[3].released
    assert calls["n"] == 1 + 3 + 4


def test_file_source_does_not_reconnect() -> None:
    calls = {"n": 0}

    def factory() -> FakeCapture:
        calls["n"] += 1
        return FakeCapture(0, 5)

    reader = FrameReader(SourceSpec("file", "x.mp4", False), capture_factory=factory)
    assert len(list(reader)) == 5 and calls["n"] == 1 and reader.reconnects == 0


def test_live_source_drops_stale_frames() -> None:
    fake = FakeCapture(0, 200, delay=0.001)
    reader = FrameReader(SourceSpec("camera", 0, True), queue_size=2, capture_factory=lambda: fake,
                         max_reconnects=0)
    got = []
    for frame in reader:
        got.append(frame.index)
        time.sleep(0.01)  # inference slower than the camera
    reader.stop()
    assert got == sorted(got) and len(set(got)) == len(got)
    assert reader.dropped > 0 and len(got) + reader.dropped == 200
    assert got[-1] == 199  # the newest frame is never the one dropped


def test_unopenable_source_is_one_line_error() -> None:
    reader = FrameReader(SourceSpec("stream", "rtsp://nowhere", True),
                         capture_factory=lambda: FakeCapture(0, 0, opened=False))
    with pytest.raises(AlprError, match="cannot open video source"):
        reader.start()


def test_stop_from_another_thread_ends_iteration() -> None:
    reader = FrameReader(SourceSpec("camera", 0, True), capture_factory=lambda: FakeCapture(0, 10**9),
                         queue_size=2)
    timer = threading.Timer(0.2, reader.stop)
    timer.start()
    n = sum(1 for _ in reader)
    timer.join()
    assert n > 0 and reader.read() is None


def test_video_writer_atomic_and_playable(tmp_path: Path) -> None:
    out = tmp_path / "out" / "result.avi"
    with VideoWriter(out, 10, (32, 24), "MJPG") as writer:
        for i in range(10):
            writer.write(np.full((24, 32, 3), i * 20, np.uint8))
        writer.write(np.zeros((48, 64, 3), np.uint8))  # another size: resized
        assert not out.exists()  # only a temporary file while writing
    assert out.exists()
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 11
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.avi"]


def test_video_writer_abort_and_bad_codec(tmp_path: Path) -> None:
    out = tmp_path / "x.avi"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 10, (32, 24), "MJPG") as writer:
            writer.write(np.zeros((24, 32, 3), np.uint8))
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AlprError, match="4-character"):
        VideoWriter(out, 10, (32, 24), "H26")
    assert list(tmp_path.iterdir()) == []


def test_jsonl_writer_flushes_each_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = JsonlWriter(path)
    writer.write({"event": "plate", "text": "12가3456"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"event": "plate", "text": "12가3456"}
    writer.write({"n": 2})
    writer.close()
    writer.close()
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()][1] == {"n": 2}


def test_jsonl_writer_replaces_only_at_the_first_line(tmp_path: Path) -> None:
    """An earlier file survives a writer that writes nothing; the first line replaces it; append keeps it."""
    path = tmp_path / "frames.jsonl"
    path.write_text('{"old": 1}\n', encoding="utf-8")
    idle = JsonlWriter(path)
    assert not idle.discard()  # not created by it: kept
    assert path.read_text(encoding="utf-8") == '{"old": 1}\n'
    with JsonlWriter(path) as writer:
        writer.write({"new": 2})
    assert path.read_text(encoding="utf-8") == '{"new":2}\n'
    with JsonlWriter(path, append=True) as writer:
        writer.write({"more": 3})
    assert path.read_text(encoding="utf-8").splitlines() == ['{"new":2}', '{"more":3}']


def test_jsonl_writer_discards_only_a_file_it_created_empty(tmp_path: Path) -> None:
    fresh = tmp_path / "sub" / "events.jsonl"
    assert JsonlWriter(fresh, append=True).discard() and not fresh.exists()
    used = JsonlWriter(fresh, append=True)
    used.write({"n": 1})
    assert not used.discard() and fresh.read_text(encoding="utf-8") == '{"n":1}\n'


def test_jsonl_writer_unwritable_path_is_one_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(AlprError, match="cannot write"):
        JsonlWriter(blocker / "events.jsonl")  # its folder would have to be a file


def test_first_sigint_after_a_readers_stop_only_sets_the_flag() -> None:
    """FrameReader shares the flag's event and sets it when it closes: a Ctrl-C then is still the first."""
    with stop_on_signals() as flag:
        flag.event.set()  # what FrameReader.stop() does
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 2
        while flag.signal is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert flag.signal == signal.SIGINT


def test_jsonl_writer_never_empties_stdout_or_a_pipe(tmp_path: Path) -> None:
    from core.video import _replaceable

    regular = tmp_path / "f"
    regular.write_text("x", encoding="utf-8")
    with open(regular, "a", encoding="utf-8") as fh:
        assert _replaceable(fh.fileno())
    read_end, write_end = os.pipe()
    try:
        assert not _replaceable(write_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    # fd 1 is a regular temporary file under pytest's capture, a terminal or a pipe otherwise: never emptied
    assert not _replaceable(1)


def test_signals_set_the_flag_and_restore_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as flag:
        assert not flag
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 2
        while not flag and time.monotonic() < deadline:
            time.sleep(0.01)
        assert flag.is_set() and flag.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a second SIGINT forces the stop
            for _ in range(200):
                time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) == before


def test_fps_meter_moving_average() -> None:
    meter = FpsMeter(window=4)
    assert meter.tick(0.0) == 0.0
    assert meter.tick(0.1) == pytest.approx(10.0)
    for t in (0.2, 0.3, 0.4):
        meter.tick(t)
    assert meter.fps == pytest.approx(10.0)
    # the window keeps the last 4 intervals: 0.4 -> 0.5 -> 0.6 -> 0.7 -> 1.1 = 4 frames in 0.7 s
    for t in (0.5, 0.6, 0.7, 1.1):
        meter.tick(t)
    assert meter.fps == pytest.approx(4 / 0.7)
    assert meter.count == 9


def test_http_stream_killed_and_restarted_reconnects(tmp_path: Path) -> None:
    """A real MJPEG-over-HTTP server on 127.0.0.1, killed mid-run and restarted: the reader goes on."""
    from tests.fixtures.mjpeg_server import free_port, serve

    port = free_port()

    server = serve(port, "--start", "0", timeout=10)
    messages: List[str] = []
    reader = FrameReader(f"http://127.0.0.1:{port}/stream.mjpg", queue_size=4, backoff_initial=0.2,
                         backoff_max=0.8, max_reconnects=30, on_event=messages.append)
    values: List[int] = []
    try:
        reader.start()
        for frame in reader:
            values.append(int(round(float(frame.image.mean()))))
            if len(values) == 10:
                server.kill()
                server.wait()
                time.sleep(0.5)
                server = serve(port, "--start", "200", timeout=10)  # the restarted stream counts from 200
            if values[-1] >= 205:
                break
    finally:
        reader.stop()
        server.kill()
        server.wait()
    assert reader.reconnects >= 1 and any("reconnected" in m for m in messages)
    first = values[:10]
    assert first == sorted(first) and first[0] < 10 and max(values) >= 205


def test_real_video_file_every_frame(tmp_path: Path) -> None:
    """../shared/data/video/license_plate.mp4 (theAIGuysCode, MIT): the reader yields what OpenCV decodes."""
    from tests.paths import shared_path

    path = shared_path("data", "video", "license_plate.mp4")
    cap = cv2.VideoCapture(str(path))
    expected = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        expected.append(int(img[::16, ::16].sum()))
    cap.release()
    with FrameReader(str(path), queue_size=2) as reader:
        got = [int(f.image[::16, ::16].sum()) for f in reader]
        assert reader.dropped == 0 and reader.size == (1280, 720)
    assert len(expected) > 100 and got == expected
