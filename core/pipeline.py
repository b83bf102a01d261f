"""The ALPR pipeline: detector + plate reader + plate analysis -> one typed ``FrameResult`` per frame.

``Pipeline`` is what detect.py and detect_video.py share. The reader is loaded once and every plate
of a frame is read in one batch; the EV flag comes from the plate's background colour.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from core.detector import Detector
from core.errors import AlprError
from core.plate_color import classify_plate_colors
from core.plate_reading import PLATE_PAD, read_plate_boxes
from core.results import FrameResult, PlateInfo, build_frame_result, plates_of
from core.tflite_runtime import usable_cores
from core.types import Detection
from lprnet.ctc import DECODERS

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "checkpoints"

# The models the product ships (see checkpoints/MODEL_CARD.md); detect.py and detect_video.py default to them.
DEFAULT_DETECTOR = {"tflite": CHECKPOINTS / "yolov4-tiny-3l-alpr-544-int8.tflite",
                    "tf": CHECKPOINTS / "yolov4-tiny-3l-alpr-544"}
DEFAULT_READER = {"kr": CHECKPOINTS / "lprnet-kr-int8.tflite", "cn": CHECKPOINTS / "lprnet-cn-int8.tflite"}
# each reader's checks (lprnet.province), run in this order: the Chinese reads' province, then the letter after it on
# two-line plates; the Korean reads' region, then the two digits after it on two-line plates, then the Hangul letter
# of one-line plates (on reads less sure than 0.97 only: its .json's read_confidence_below, model card session 43)
DEFAULT_PROVINCE = {"cn": (CHECKPOINTS / "lprnet-cn-province-int8.tflite",
                           CHECKPOINTS / "lprnet-cn-letter-int8.tflite"),
                    "kr": (CHECKPOINTS / "lprnet-kr-region-int8.tflite", CHECKPOINTS / "lprnet-kr-digits-int8.tflite",
                           CHECKPOINTS / "lprnet-kr-hangul-int8.tflite")}
NO_PROVINCE = "none"


def check_paths(spec: Union[None, str, Path, Sequence[Union[str, Path]]], charset_name: str) -> Tuple[Path, ...]:
    """The check models ``spec`` names: None the shipped ones of the charset (none where it has none),
    ``"none"`` none, a string a comma-separated list of paths, a path or a sequence of paths those."""
    if spec is None:
        return tuple(DEFAULT_PROVINCE.get(charset_name, ()))
    if isinstance(spec, Path):
        return (spec,)
    if isinstance(spec, str):
        if spec.strip().lower() == NO_PROVINCE:
            return ()
        spec = [p for p in (part.strip() for part in spec.split(",")) if p]
        if not spec:  # "" or ",": not a silent way to turn the checks off
            raise AlprError(f"no check model named (pass check .tflite files, or {NO_PROVINCE} for no check)")
    return tuple(Path(p) for p in spec)


def open_checks(charset: str, spec: Union[None, str, Path, Sequence[Union[str, Path]]] = None,
                num_threads: Optional[int] = None, min_probability: Optional[float] = None,
                home: Optional[Any] = None) -> Tuple[Any, ...]:
    """The ``lprnet.province.ProvinceReader`` checks for ``charset`` (a name, or a charset file, known by its
    stem), in order, as ``check_paths`` reads ``spec``. ``min_probability``: each model's own threshold when None.
    ``home``: a ``lprnet.home.HomeRegion`` the checks lean to."""
    from lprnet.charset import load_charset

    cs = load_charset(charset)
    paths = check_paths(spec, cs.name)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise AlprError(f"check model not found: {missing[0]} ({NO_PROVINCE} instead of the models reads without "
                        "the checks)")
    from lprnet.province import ProvinceReader

    checks = []
    for path in paths:
        check = ProvinceReader(path, num_threads=num_threads or 1, min_probability=min_probability, home=home)
        if not check.suits(cs):
            raise AlprError(f"check model {path} has classes or after-tokens outside charset {cs.name!r}")
        checks.append(check)
    return tuple(checks)


def open_plate_reader(path: str | Path, charset: str, num_threads: Optional[int] = None, decoder: str = DECODERS[0],
                      tta: bool = True, retry_cuts: bool = True,
                      province: Union[None, str, Path, Sequence[Union[str, Path]]] = None,
                      home_region: Optional[str] = None, home_weight: Optional[float] = None) -> Any:
    """A ``lprnet.reader.PlateReader`` with its charset's checks: the province and top-line letter (cn), the region,
    top-line digits and Hangul letter (kr) (``open_checks``, which takes ``province``); reader and checks lean to
    ``home_region`` (``lprnet.home.parse_home``: provinces (cn) or regions (kr), comma-separated; None: none) by
    ``home_weight`` (None: ``lprnet.home.HOME_WEIGHT``)."""
    from lprnet.charset import load_charset
    from lprnet.home import parse_home
    from lprnet.reader import PlateReader

    home = parse_home(home_region, load_charset(charset), home_weight)
    return PlateReader(path, charset, num_threads=num_threads, decoder=decoder, tta=tta, retry_cuts=retry_cuts,
                       province=open_checks(charset, province, num_threads, home=home), home=home)


@dataclass(frozen=True)
class PipelineOptions:
    score_threshold: Optional[float] = None  # None: the threshold stored with the detector
    iou_threshold: float = 0.45
    region: str = "kr"  # plate conventions for the EV colour rule: "kr" or "cn"
    plate_pad: float = PLATE_PAD
    # read weak reads again from a taller crop (core.plate_reading), and narrow ones with other line cuts
    retry_weak_reads: bool = True


class Pipeline:
    """``Pipeline(detector, reader)``; ``reader`` may be None (detection only, no --lpr)."""

    def __init__(self, detector: Detector, reader: Optional[Any] = None,
                 options: PipelineOptions = PipelineOptions()) -> None:
        if options.region not in ("kr", "cn"):
            raise AlprError(f"unknown plate region {options.region!r}: use kr or cn")
        self.detector = detector
        self.reader = reader
        self.options = options

    @classmethod
    def open(cls, detector_path: str | Path, reader_path: Optional[str | Path] = None, charset: str = "kr",
             num_threads: Optional[int] = None, class_names: Optional[str | Path] = None,
             options: Optional[PipelineOptions] = None, decoder: str = DECODERS[0],
             tta: bool = True, province: Union[None, str, Path, Sequence[Union[str, Path]]] = None,
             home_region: Optional[str] = None, home_weight: Optional[float] = None) -> Pipeline:
        """``province``: the reader's checks, as ``open_checks`` takes them; ``home_region``, ``home_weight``: the
        provinces or regions the reads lean to, and how much (``open_plate_reader``)."""
        if reader_path is not None and (home_region or home_weight is not None):  # a bad home fails before any
            from lprnet.charset import load_charset  # model loads
            from lprnet.home import parse_home

            parse_home(home_region, load_charset(charset), home_weight)
        # The runtime's own default is one thread; the detector is most of a frame's work and uses every
        # core (544 int8 on 2 cores: 12.7 vs 18.0 ms), while a batch of a few plates is fastest on one.
        detector = Detector.open(detector_path, num_threads=num_threads or usable_cores(), class_names=class_names)
        opts = options or PipelineOptions(region=charset)
        reader = None
        if reader_path is not None:
            if not Path(reader_path).is_file():
                raise AlprError(f"plate reader model not found: {reader_path}")
            # the reader's own retry of weak two-line reads (other line cuts) goes with the taller-crop one
            reader = open_plate_reader(reader_path, charset, num_threads or 1, decoder, tta, opts.retry_weak_reads,
                                       province, home_region, home_weight)
        return cls(detector, reader, opts)

    def read_plates(self, image: np.ndarray, plates: Sequence[Detection]) -> List[PlateInfo]:
        """Crop every plate, read them all in one batch (weak reads again from a taller crop:
        ``core.plate_reading``, and by a reader from ``open`` with other line cuts), and check their colour."""
        infos = [PlateInfo() for _ in plates]
        if self.reader is None or not plates:
            return infos
        crops, reads = read_plate_boxes(self.reader, image, [p.box for p in plates], self.options.plate_pad,
                                        self.options.retry_weak_reads)
        usable = [i for i, r in enumerate(reads) if r is not None]
        colors = classify_plate_colors([crops[i] for i in usable], self.options.region)
        for i, color in zip(usable, colors):
            read = reads[i]
            infos[i] = PlateInfo(text=read.text, confidence=float(read.confidence), valid=bool(read.valid),
                                 ev=bool(color.ev), color=color.color)
        return infos

    def process(self, image: np.ndarray) -> FrameResult:
        t0 = time.perf_counter()
        detections = self.detector.detect(image, self.options.score_threshold, self.options.iou_threshold)
        t1 = time.perf_counter()
        plate_info = None
        timing = {"detect": (t1 - t0) * 1e3}
        if self.reader is not None:
            plate_info = self.read_plates(image, plates_of(detections))
            timing["read"] = (time.perf_counter() - t1) * 1e3
        h, w = image.shape[:2]
        return build_frame_result(detections, (w, h), plate_info, timing)
