"""What detect.py and detect_video.py do, as library functions over ``core.pipeline.Pipeline``.

The front ends only parse flags into ``ImageJob`` / ``VideoJob`` and call ``run_images`` /
``run_video``; everything here is TF-free (the ``tf`` framework imports TensorFlow lazily in the
detector's SavedModel backend).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, TextIO

import numpy as np

from core.cli import atomic_path
from core.crops import encode_image, safe_name, save_crop
from core.errors import AlprError
from core.pipeline import DEFAULT_DETECTOR, DEFAULT_READER, Pipeline, PipelineOptions
from core.results import FrameResult
from core.tracking import EventFilter
from lprnet.ctc import DECODERS

STDOUT: TextIO = sys.stdout


@dataclass(frozen=True)
class ModelChoice:
    framework: str = "tflite"  # tflite | tf
    weights: Optional[str] = None  # detector: .tflite file or SavedModel folder; None: the shipped one
    classes: Optional[str] = None  # names file; None: the names stored with the model
    size: Optional[int] = None  # must agree with the model's input when given
    lpr: bool = False
    lpr_weights: Optional[str] = None
    lpr_province: Optional[str] = None  # None: the shipped checks of --charset; "none": none; else a comma list
    charset: str = "kr"
    score: Optional[float] = None
    iou: float = 0.45
    num_threads: Optional[int] = None
    decoder: str = DECODERS[0]
    lpr_tta: bool = True
    home_region: Optional[str] = None  # the provinces (cn) or regions (kr) the reads lean to; None: none
    home_weight: Optional[float] = None  # how much; None: lprnet.home.HOME_WEIGHT


def define_model_flags(flags, lpr_default: bool, tta_default: bool = True) -> None:
    """The detector/reader flags detect.py and detect_video.py share (tensorflow-yolov4-tflite names).
    ``tta_default``: video reads each plate in one pass, since the test-time zoom costs about a fifth of
    the frame rate and the next frames give the plate more chances (checkpoints/MODEL_CARD.md)."""
    flags.DEFINE_enum("framework", "tflite", ["tflite", "tf"], "tflite: a .tflite model; tf: a SavedModel folder")
    flags.DEFINE_string("weights", None, "detector model (default: the shipped yolov4-tiny for --framework)")
    flags.DEFINE_integer("size", None, "input size; must match the model's (models have a fixed input size)")
    flags.DEFINE_boolean("tiny", True, "kept for compatibility with tensorflow-yolov4-tflite")
    flags.DEFINE_string("model", "yolov4", "kept for compatibility with tensorflow-yolov4-tflite")
    flags.DEFINE_float("iou", 0.45, "IoU threshold of the per-class NMS")
    flags.DEFINE_float("score", None, "score threshold (default: the one stored with the model)")
    flags.DEFINE_boolean("dont_show", False, "do not open a window (a window opens only where a display exists)")
    flags.DEFINE_boolean("lpr", lpr_default, "read the plates" + (" (--nolpr: detection only)" if lpr_default else ""))
    flags.DEFINE_string("lpr_weights", None, "plate reader .tflite (default: the shipped one for --charset)")
    flags.DEFINE_string("lpr_province", None, "checks of the reads (lprnet.province: province and top-line "
                        "letter (cn), region, top-line digits and Hangul letter (kr); comma-separated "
                        ".tflite files with their .json, run in order; default: the shipped ones for --charset; "
                        "'none': no check)")
    flags.DEFINE_enum("charset", "kr", ["kr", "cn"], "plate alphabet and conventions")
    flags.DEFINE_string("classes", None, "class names file (default: the names stored with the model)")
    flags.DEFINE_integer("num_threads", None, "TFLite interpreter threads of the detector and the reader "
                         "(default: every core for the detector, one for the reader)")
    flags.DEFINE_enum("decoder", DECODERS[0], list(DECODERS), "CTC decoding of the plate reads: format (beam "
                      "search, the most probable label that fits the plate format), greedy (fastest) or beam")
    flags.DEFINE_boolean("lpr_tta", tta_default, "read each plate also zoomed in and out and average the three "
                         "passes (more accurate, three times the reader's model time)")
    flags.DEFINE_string("home_region", None, "the province (--charset cn, e.g. 皖) or region (kr, e.g. 서울) most "
                        "plates here come from, with --lpr: reads unsure of theirs lean to it (lprnet.home; a few "
                        "unsure plates from elsewhere are pulled to it too); several, comma-separated (皖,苏), "
                        "are leaned to alike (default: none)")
    flags.DEFINE_float("home_weight", None, "how many times more likely a home region is than the reader alone "
                       "says, at least 1 (default: 10, lprnet.home.HOME_WEIGHT, chosen in session 44; lower pulls "
                       "fewer plates from elsewhere, and fixes fewer home ones)")


def model_choice(values) -> ModelChoice:
    """``ModelChoice`` from the parsed values of ``define_model_flags`` (the front end passes its FLAGS)."""
    return ModelChoice(framework=values.framework, weights=values.weights, classes=values.classes, size=values.size,
                       lpr=values.lpr, lpr_weights=values.lpr_weights, lpr_province=values.lpr_province,
                       charset=values.charset, score=values.score, iou=values.iou, num_threads=values.num_threads,
                       decoder=values.decoder, lpr_tta=values.lpr_tta, home_region=values.home_region,
                       home_weight=values.home_weight)


def open_pipeline(choice: ModelChoice, retry_weak_reads: bool = True) -> Pipeline:
    """The pipeline of ``choice``. ``retry_weak_reads``: read weak plate reads again from a taller crop
    (``core.plate_reading``) and, for narrow crops, with other line cuts (``lprnet.reader.read_crops``);
    video turns it off, since the next frames give the plate more chances and the
    second read costs frame rate wherever the detector finds many weak plates."""
    if choice.framework not in DEFAULT_DETECTOR:
        raise AlprError(f"unknown --framework {choice.framework!r}: use tflite or tf")
    weights = Path(choice.weights) if choice.weights else DEFAULT_DETECTOR[choice.framework]
    if not choice.weights and choice.framework == "tf" and not weights.exists():
        # Only the Darknet weights and the TFLite model are shipped; the SavedModel is one command away.
        raise AlprError(f"no SavedModel at {weights}: create it with 'python save_model.py --cfg "
                        f"checkpoints/yolov4-tiny-3l-alpr.cfg --weights checkpoints/yolov4-tiny-3l-alpr.weights "
                        f"--input_size 544 --output {weights}'")
    if choice.framework == "tflite" and weights.is_dir():
        raise AlprError(f"{weights} is a folder (a SavedModel?): use --framework tf, or give a .tflite file")
    if choice.framework == "tf" and weights.is_file():
        raise AlprError(f"{weights} is a file: --framework tf wants a SavedModel folder from save_model.py")
    reader_path = None
    if (choice.home_region or choice.home_weight is not None) and not choice.lpr:
        raise AlprError("--home_region and --home_weight lean the plate reads: they need --lpr")
    if choice.lpr:
        if choice.charset not in DEFAULT_READER:
            raise AlprError(f"unknown --charset {choice.charset!r}: use kr or cn")
        reader_path = Path(choice.lpr_weights) if choice.lpr_weights else DEFAULT_READER[choice.charset]
    options = PipelineOptions(score_threshold=choice.score, iou_threshold=choice.iou, region=choice.charset,
                              retry_weak_reads=retry_weak_reads)
    pipeline = Pipeline.open(weights, reader_path, choice.charset, choice.num_threads, choice.classes, options,
                             decoder=choice.decoder, tta=choice.lpr_tta, province=choice.lpr_province,
                             home_region=choice.home_region, home_weight=choice.home_weight)
    if choice.size and tuple(pipeline.detector.input_size) != (choice.size, choice.size):
        w, h = pipeline.detector.input_size
        raise AlprError(f"--size {choice.size} does not match the model's input {w}x{h}: convert the model at "
                        f"{choice.size} (save_model.py --input_size) or drop --size")
    return pipeline


def describe(frame: FrameResult, info: bool) -> List[str]:
    """Human-readable lines for stdout: plates read, and every detection with --info."""
    lines = []
    for plate in frame.plates:
        if plate.read:
            tags = ["valid" if plate.valid else "invalid format"]
            if plate.ev:
                tags.append("EV")
            owner = f", vehicle {plate.vehicle}" if plate.vehicle is not None else ""
            lines.append(f"  plate {plate.text or '(empty)'}  conf {plate.confidence:.2f}  "
                         f"{', '.join(tags)}{owner}")
    for i, sticker in enumerate(frame.stickers):
        if sticker.vehicle is not None:
            lines.append(f"  disabled sticker {i} on vehicle {sticker.vehicle}")
    if info:
        for det in frame.detections():
            x1, y1, x2, y2 = det.box
            lines.append(f"  {det.class_name}: score {det.score:.3f} box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})")
    return lines


def counts_line(frame: FrameResult) -> str:
    counts = frame.counts()
    return ", ".join(f"{n} {name}" for name, n in counts.items()) if counts else "nothing detected"


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# --------------------------------------------------------------------------------------------- images

@dataclass(frozen=True)
class ImageJob:
    images: Sequence[str]
    output: str = "./detections"
    models: ModelChoice = field(default_factory=ModelChoice)
    count: bool = False
    info: bool = False
    show: bool = False
    crop: bool = False
    crop_classes: Sequence[str] = ("license_plate",)
    json: bool = False
    save_images: bool = True


def _unique_stem(path: str, used: Dict[str, int]) -> str:
    stem = safe_name(Path(path).stem)
    n = used.get(stem, 0)
    used[stem] = n + 1
    return stem if n == 0 else f"{stem}_{n}"


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def run_images(job: ImageJob, out: TextIO = STDOUT, err: TextIO = sys.stderr) -> int:
    """Process every image; returns the exit code (non-zero only if nothing could be processed)."""
    from core.drawing import draw_frame
    from core.images import expand_image_args, read_image

    listing = expand_image_args(list(job.images))
    for missing in listing.missing:
        print(f"warning: {missing}: no such file, folder or match", file=err)
    for skipped in listing.skipped:
        print(f"warning: {skipped}: skipped, not an image file name", file=err)
    if not listing.images:
        raise AlprError("no images to process (check --images)")
    pipeline = open_pipeline(job.models)
    output = Path(job.output)
    output.mkdir(parents=True, exist_ok=True)
    used: Dict[str, int] = {}
    done, failed = 0, len(listing.skipped) + len(listing.missing)
    progress = _progress(listing.images)
    for path in progress:
        try:
            image = read_image(path)
        except AlprError as exc:
            print(f"warning: {exc}", file=err)
            failed += 1
            continue
        frame = pipeline.process(image)
        stem = _unique_stem(path, used)
        print(f"{path}: {counts_line(frame)}" if job.count else f"{path}:", file=out)
        for line in describe(frame, job.info):
            print(line, file=out)
        if job.json:
            doc = frame.to_json_dict(image=str(path), include_timing=True)
            _write_bytes(output / f"{stem}.json", (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode())
        if job.crop:
            _save_crops(image, frame, output, path, job.crop_classes)
        if job.save_images or job.show:
            annotated = draw_frame(image.copy(), frame)
            if job.save_images:
                _write_bytes(output / f"{stem}.jpg", encode_image(annotated, ".jpg"))
            if job.show and display_available():
                import cv2

                cv2.imshow("alpr", annotated)
                cv2.waitKey(0)
        done += 1
    print(f"processed {done} image(s), {failed} could not be processed; results in {output}", file=out)
    return 0 if done else 1


def _progress(items: Sequence[str]):
    if len(items) < 20:
        return items
    from tqdm import tqdm

    return tqdm(items, unit="img", file=sys.stderr)


def _save_crops(image: np.ndarray, frame: FrameResult, output: Path, image_path: str,
                classes: Sequence[str]) -> List[Path]:
    written = []
    wanted = set(classes)
    for i, plate in enumerate(frame.plates):
        if plate.detection.class_name in wanted:
            p = save_crop(image, plate.detection.box, output, image_path, plate.detection.class_name, i,
                          text=plate.text)
            if p is not None:
                written.append(p)
    others = [d for d in frame.detections() if d.class_name in wanted and d.class_name != "license_plate"]
    for i, det in enumerate(others):
        p = save_crop(image, det.box, output, image_path, det.class_name, i)
        if p is not None:
            written.append(p)
    return written


# ---------------------------------------------------------------------------------------------- video

@dataclass(frozen=True)
class VideoJob:
    video: str
    models: ModelChoice = field(default_factory=lambda: ModelChoice(lpr=True, lpr_tta=False))  # as detect_video.py
    output: Optional[str] = None  # annotated video file
    output_format: str = "mp4v"
    events: Optional[str] = None  # JSON Lines file of plate events (one per tracked vehicle)
    frames_json: Optional[str] = None  # JSON Lines file with every frame's result
    show: bool = False
    max_frames: Optional[int] = None
    report_after: Optional[int] = None  # report a track's plate after N frames instead of when it ends
    event_filter: EventFilter = field(default_factory=EventFilter)  # which voted plates are reported
    log_every: float = 2.0  # seconds between FPS lines on stdout
    queue_size: int = 4


def run_video(job: VideoJob, out: TextIO = STDOUT, err: TextIO = sys.stderr) -> int:
    from core.drawing import draw_frame
    from core.tracking import IouTracker, track_inputs
    from core.video import FpsMeter, FrameReader, JsonlWriter, VideoWriter, parse_source, stop_on_signals

    spec = parse_source(job.video)
    pipeline = open_pipeline(job.models, retry_weak_reads=False)
    tracker = IouTracker(report_after=job.report_after, early_filter=job.event_filter)
    meter = FpsMeter()
    writer: Optional[VideoWriter] = None
    events = JsonlWriter(job.events, append=True) if job.events else None  # an event log survives restarts
    try:
        frames_out = JsonlWriter(job.frames_json) if job.frames_json else None
    except AlprError:
        if events is not None:
            events.discard()
        raise
    show = job.show and display_available()
    n_frames, n_events, n_held, last_log = 0, 0, 0, time.monotonic()
    t_start = time.monotonic()

    def emit(evs) -> None:
        nonlocal n_events, n_held
        for ev in evs:
            if not job.event_filter.keeps(ev):
                n_held += 1
                continue
            record = ev.to_json_dict()
            record["source"] = spec.describe()
            if events is not None:
                events.write(record)
            n_events += 1
            tags = " EV" if ev.ev else ""
            print(f"event: track {ev.track_id} {ev.label} plate {ev.text} conf {ev.confidence:.2f}"
                  f"{tags} ({ev.votes} votes, {ev.first_seen:.2f}-{ev.last_seen:.2f} s)", file=out)

    def on_reader_event(message: str) -> None:
        print(f"video: {message}", file=err)

    clean = stopped = read_any = False
    try:
        # The reader shares the stop flag: a signal also ends a reconnection wait on a lost live source.
        with stop_on_signals() as stop, FrameReader(spec, queue_size=job.queue_size, stop_event=stop.event,
                                                   on_event=on_reader_event) as reader:
            for frame in reader:
                read_any = True
                if stop:
                    break
                result = pipeline.process(frame.image)
                timestamp = frame.wall_time if reader.live else frame.timestamp
                boxes, labels, reads = track_inputs(result)
                ids, evs = tracker.update(boxes, timestamp, labels, reads)
                emit(evs)
                fps = meter.tick()
                if frames_out is not None:
                    doc = result.to_json_dict(image=f"{spec.describe()}#{frame.index}", include_timing=True)
                    doc["timestamp"] = round(float(timestamp), 3)
                    frames_out.write(doc)
                if job.output or show:
                    annotated = draw_frame(frame.image.copy(), result, fps=fps,
                                           track_ids=ids[:len(result.vehicles)])
                    if job.output:
                        if writer is None:
                            h, w = annotated.shape[:2]
                            writer = VideoWriter(job.output, reader.fps or 25.0, (w, h), job.output_format)
                        writer.write(annotated)
                    if show:
                        import cv2

                        cv2.imshow("alpr", annotated)
                        if cv2.waitKey(1) & 0xFF == ord("q"):
                            break
                n_frames += 1
                now = time.monotonic()
                if now - last_log >= job.log_every:
                    print(f"frames {n_frames}  fps {meter.fps:.1f}  events {n_events}", file=out)
                    last_log = now
                if job.max_frames and n_frames >= job.max_frames:
                    break
            stopped = stop.is_set()
        clean = True
    finally:
        emit(tracker.flush())
        if writer is not None:
            writer.close() if clean or n_frames else writer.abort()
        for log in (events, frames_out):
            if log is not None:  # a run that processed no frame leaves no new empty file behind
                log.close() if n_frames else log.discard()
    if not read_any and not stopped:  # opened, yet nothing decoded: a corrupt file, or not a video
        raise AlprError(f"no frame could be read from {spec.describe()} (not a video, or corrupt)")
    elapsed = max(time.monotonic() - t_start, 1e-9)
    print(f"done: {n_frames} frames in {elapsed:.1f} s ({n_frames / elapsed:.1f} FPS end to end), "
          f"{n_events} plate event(s)"
          + (f" ({n_held} held back: {job.event_filter.describe()})" if n_held else "")
          + (f"; video {job.output}" if writer is not None else "")
          + (f"; events {job.events}" if events is not None and events.path.exists() else ""), file=out)
    return 0 if n_frames else 1
