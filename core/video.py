"""Video sources, a capture thread with a bounded queue, reconnection, output writers, signals, FPS.

``--video`` forms (``parse_source``):
- ``"0"``, ``"1"`` ... or ``/dev/videoN``: a camera (live);
- a URL (``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``): a network stream
  (live, reconnected when it drops);
- anything containing ``!``: a GStreamer pipeline (live unless it reads a ``filesrc``); ``csi_pipeline``
  builds the one for a Jetson CSI camera (``nvarguscamerasrc``);
- otherwise a file path (never live: every frame delivered, end of file ends).

``FrameReader`` runs the capture in a thread feeding a queue of ``queue_size`` frames. On a live source,
when inference falls behind, the oldest queued frame is dropped so the newest is always processed; on a
file the thread blocks instead, so nothing is lost. When a live source stops delivering frames the capture
is released and reopened with exponential backoff (``backoff_initial`` doubling up to ``backoff_max``
seconds, reset after a good frame; ``max_reconnects`` None = forever) until it comes back or ``stop()``.
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import stat
import threading
import time
from collections import deque
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, Sequence, Tuple, Union

import cv2
import numpy as np

from core.cli import atomic_path
from core.errors import AlprError

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


@dataclass(frozen=True)
class SourceSpec:
    """What ``--video`` names."""

    kind: str  # "file", "camera", "stream" or "gstreamer"
    target: Union[str, int]
    live: bool

    def describe(self) -> str:
        return f"{self.kind} {self.target}" if self.kind != "gstreamer" else "GStreamer pipeline"


def parse_source(video: str, check_file: bool = True) -> SourceSpec:
    """Classify a ``--video`` value (see the module docstring); a missing file is an ``AlprError``."""
    text = str(video).strip()
    if not text:
        raise AlprError("--video is empty: give a file, a camera index, a stream URL or a GStreamer pipeline")
    if "!" in text:
        return SourceSpec("gstreamer", text, live="filesrc" not in text)
    if text.isdigit():
        return SourceSpec("camera", int(text), live=True)
    if re.fullmatch(r"/dev/video\d+", text):
        return SourceSpec("camera", text, live=True)
    m = _URL.match(text)
    if m:
        scheme = m.group(1).lower()
        if scheme == "file":
            text = text[len("file://"):]
        elif scheme in STREAM_SCHEMES:
            return SourceSpec("stream", text, live=True)
        else:
            schemes = ", ".join(STREAM_SCHEMES)
            raise AlprError(f"unsupported video URL scheme {scheme!r} (use one of {schemes})")
    if check_file and not Path(text).is_file():
        raise AlprError(f"video file not found: {text}")
    return SourceSpec("file", text, live=False)


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0,
                 display_width: int | None = None, display_height: int | None = None) -> str:
    """GStreamer pipeline for a Jetson CSI camera (Argus) delivering BGR frames to OpenCV's appsink.

    ``flip`` is nvvidconv's flip-method (0 none, 2 rotate 180, 4/6 mirror ...); the output may be scaled
    to ``display_width`` x ``display_height`` (default: the capture size). The appsink keeps one buffer
    and drops older ones, so the camera never lags behind.
    """
    if not 0 <= int(flip) <= 7:
        raise AlprError(f"--flip must be 0..7 (nvvidconv flip-method), got {flip}")
    ow, oh = int(display_width or width), int(display_height or height)
    return (f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
            f"video/x-raw(memory:NVMM), width=(int){int(width)}, height=(int){int(height)}, "
            f"format=(string)NV12, framerate=(fraction){int(fps)}/1 ! "
            f"nvvidconv flip-method={int(flip)} ! "
            f"video/x-raw, width=(int){ow}, height=(int){oh}, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1")


def open_capture(spec: SourceSpec, timeout_ms: int = 5000) -> cv2.VideoCapture:
    """An OpenCV capture for ``spec`` (may be not opened: the caller checks ``isOpened``).

    Network streams get open and read timeouts (``timeout_ms``) where OpenCV supports them, so a dead
    server is noticed in seconds rather than after FFmpeg's default 30 s.
    """
    if spec.kind == "gstreamer":
        return cv2.VideoCapture(str(spec.target), cv2.CAP_GSTREAMER)
    if spec.kind == "stream":
        params = []
        for name in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
            if hasattr(cv2, name):
                params += [getattr(cv2, name), int(timeout_ms)]
        if params:
            return cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG)
    return cv2.VideoCapture(spec.target)


@dataclass(frozen=True)
class Frame:
    """One captured frame."""

    index: int  # position in the source: frames read from it, counting dropped ones, from 0
    image: np.ndarray
    timestamp: float  # seconds: position in a file; seconds since the reader started on a live source
    wall_time: float  # time.time() when captured


_END = object()


class FrameReader:
    """Capture thread + bounded queue + reconnection (see the module docstring). Iterate for frames."""

    def __init__(self, source: Union[str, SourceSpec], queue_size: int = 4,
                 capture_factory: Callable[[], Any] | None = None, live: bool | None = None,
                 backoff_initial: float = 0.5, backoff_max: float = 10.0, max_reconnects: int | None = None,
                 stop_event: threading.Event | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.spec = source if isinstance(source, SourceSpec) else parse_source(source)
        self.live = self.spec.live if live is None else bool(live)
        self._factory = capture_factory or (lambda: open_capture(self.spec))
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_size)))
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.max_reconnects = max_reconnects
        self._stop = stop_event or threading.Event()
        self._on_event = on_event or (lambda message: None)
        self._thread: threading.Thread | None = None
        self._cap: Any = None
        self._error: BaseException | None = None
        self._finished = False
        self.dropped = 0
        self.reconnects = 0
        self.frames_read = 0
        self.fps: float | None = None
        self.size: Tuple[int, int] | None = None  # (width, height) of the first frame

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> FrameReader:
        """Open the source (``AlprError`` when it cannot be opened) and start the capture thread."""
        if self._thread is not None:
            return self
        self._cap = self._open()
        if self._cap is None:
            raise AlprError(f"cannot open video source: {self.spec.describe()}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else None
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to stop, wait for it and release the capture."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                self._drain()
                self._thread.join(timeout=0.05)
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    close = stop

    def __enter__(self) -> FrameReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- consumer side -----------------------------------------------------------------------------------
    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None at the end of the stream (or after ``stop``). Raises the thread's error.

        With ``timeout`` (seconds) and no frame within it, raises ``queue.Empty``.
        """
        if self._finished:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                if self._stop.is_set() and (self._thread is None or not self._thread.is_alive()):
                    self._finished = True
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            if item is _END:
                self._finished = True
                if self._error is not None:
                    raise self._error
                return None
            return item

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is None:
            self.start()
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    # -- capture thread ----------------------------------------------------------------------------------
    def _open(self) -> Any:
        try:
            cap = self._factory()
        except Exception:  # a factory may raise on a refused connection
            return None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return None
        return cap

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _put(self, item: object) -> bool:
        """Queue an item: live sources replace the oldest frame; files block. False when stopping."""
        if self.live and item is not _END:
            while True:
                try:
                    self._queue.put_nowait(item)
                    return True
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _reconnect(self) -> bool:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        delay = self.backoff_initial
        attempts = 0
        while not self._stop.is_set():
            if self.max_reconnects is not None and attempts >= self.max_reconnects:
                return False
            attempts += 1
            self._on_event(f"source lost, reconnecting in {delay:g} s (attempt {attempts})")
            if self._stop.wait(delay):
                return False
            cap = self._open()
            if cap is not None:
                self._cap = cap
                self.reconnects += 1
                self._on_event(f"reconnected after {attempts} attempt(s)")
                return True
            delay = min(self.backoff_max, delay * 2.0)
        return False

    def _run(self) -> None:
        t0 = time.monotonic()
        index = 0
        try:
            while not self._stop.is_set():
                ok, image = self._cap.read() if self._cap is not None else (False, None)
                if not ok or image is None:
                    if self.live and self._reconnect():
                        continue
                    break
                if self.size is None:
                    self.size = (int(image.shape[1]), int(image.shape[0]))
                if self.live:
                    ts = time.monotonic() - t0
                elif self.fps:
                    ts = index / self.fps
                else:
                    ts = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
                frame = Frame(index, image, ts, time.time())
                index += 1
                self.frames_read = index
                if not self._put(frame):
                    break
        except BaseException as exc:  # surfaced to the consumer by read()
            self._error = exc
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self._queue.put(_END, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    self._drain()


def fourcc(code: str) -> int:
    """FourCC of a 4-character codec name (``mp4v``, ``XVID``, ``MJPG``, ``avc1`` ...)."""
    if len(code) != 4 or not code.isascii() or not code.isprintable():
        raise AlprError(f"--output_format must be a 4-character codec (mp4v, XVID, MJPG ...), got {code!r}")
    return cv2.VideoWriter_fourcc(*code)


class VideoWriter:
    """cv2.VideoWriter written to a temporary file beside ``path`` and renamed onto it by ``close()``.

    A run that is interrupted cleanly (Ctrl-C, SIGTERM: the caller closes) leaves a finished, playable file;
    one that crashes (``abort()`` or an exception in ``with``) leaves nothing. Frames of another size than
    the first are resized to it.
    """

    def __init__(self, path: Union[str, os.PathLike], fps: float, size: Tuple[int, int],
                 codec: str = "mp4v") -> None:
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.frames = 0
        self._stack = ExitStack()
        code = fourcc(codec)
        self._tmp = self._stack.enter_context(atomic_path(self.path, suffix=self.path.suffix or ".avi"))
        self._writer = cv2.VideoWriter(str(self._tmp), code, self.fps, self.size)
        if not self._writer.isOpened():
            self._writer.release()
            self._stack.__exit__(AlprError, AlprError("x"), None)
            raise AlprError(f"cannot write video {self.path} with codec {codec} "
                            f"(try --output_format MJPG or XVID with an .avi name)")
        self._closed = False

    def write(self, image: np.ndarray) -> None:
        if self._closed:
            raise AlprError(f"video {self.path} is already closed")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(image))
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it into place (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._writer.release()
        self._stack.close()

    def abort(self) -> None:
        """Drop the partial file."""
        if self._closed:
            return
        self._closed = True
        self._writer.release()
        self._stack.__exit__(AlprError, AlprError("aborted"), None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()


def _replaceable(fd: int) -> bool:
    """A regular file that is not this process's stdout or stderr (``/dev/stdout`` redirected to a log
    file must not be emptied); pipes and terminals cannot be truncated."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return False
    for std in (1, 2):
        try:
            if os.path.samestat(st, os.fstat(std)):
                return False
        except OSError:  # closed
            pass
    return True


class JsonlWriter:
    """JSON Lines file written one whole line at a time and flushed after each (``fsync`` optional).

    Opened at once, so that a path that cannot be written fails before any work (``AlprError``). Without
    ``append`` an earlier file of that name is emptied at the first write, not before: a run that writes
    nothing leaves it as it was, and ``discard`` removes a file that this writer created and left empty.
    """

    def __init__(self, path: Union[str, os.PathLike], append: bool = False, fsync: bool = False) -> None:
        self.path = Path(path)
        self.created = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise AlprError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        self._replace = not append
        self._fsync = fsync
        self.lines = 0

    def write(self, record: Dict[str, Any]) -> None:
        if self._replace:
            self._replace = False
            if _replaceable(self._fh.fileno()):
                self._fh.truncate(0)
        self._fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())
        self.lines += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()

    def discard(self) -> bool:
        """Close; remove the file when this writer created it and wrote nothing. True when removed."""
        self.close()
        if not self.created or self.lines:
            return False
        try:
            self.path.unlink()
        except OSError:
            return False
        return True

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StopFlag:
    """Set by a signal (or by hand); the main loop checks it and closes its outputs."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None

    def set(self, signum: int | None = None) -> None:
        if self.signal is None:
            self.signal = signum
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def __bool__(self) -> bool:
        return self.event.is_set()


@contextmanager
def stop_on_signals(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopFlag]:
    """Within the block, SIGINT/SIGTERM set the yielded flag instead of killing the process.

    A second SIGINT while the flag is already set raises ``KeyboardInterrupt`` (a stuck shutdown can still
    be forced). Previous handlers are restored on exit. Outside the main thread (where Python cannot
    install handlers) the flag is only set by hand.
    """
    flag = StopFlag()
    previous: Dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        if flag.signal is not None and signum == signal.SIGINT:  # a signal came before (not a reader's stop)
            raise KeyboardInterrupt
        flag.set(signum)

    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class FpsMeter:
    """Frames per second over the last ``window`` frames (moving average of the intervals)."""

    def __init__(self, window: int = 30) -> None:
        self._times: Deque[float] = deque(maxlen=max(2, int(window) + 1))
        self.count = 0

    def tick(self, now: float | None = None) -> float:
        """Record a frame (at ``now``, default ``time.monotonic()``) and return the current FPS."""
        self._times.append(time.monotonic() if now is None else float(now))
        self.count += 1
        return self.fps

    @property
    def fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0
