"""Plate-crop datasets (TF-free): a folder of crops named by their text, or a label file.

- Folder: ``京PL3N67.jpg``, ``01주6939-2.jpg`` (a ``-N`` or ``_N`` suffix after the text marks a
  duplicate and is not text).
- Label file: one ``filename<TAB>text`` per line, file names relative to the label file's folder;
  blank lines and ``#`` comments are skipped.

Bad entries (unreadable or corrupt image, text outside the charset, malformed line) are collected in
``skipped`` with a reason, never fatal; only a source with no usable sample at all is an error.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import cv2
import numpy as np

from core.errors import AlprError
from core.images import IMAGE_EXTENSIONS
from lprnet.charset import Charset
from lprnet.preprocess import layout_input, may_be_two_lines, straightens

_DUPLICATE_SUFFIX = re.compile(r"^(.+?)[-_][0-9]+$")


@dataclass(frozen=True)
class Sample:
    path: Path
    text: str
    lines: int = 0  # 1 or 2 when the label file says so (the plate renderer does), 0 when unknown
    kind: str = ""  # plate kind from the label file's third column (e.g. kr_yellow2), "" when unknown
    # height in px of the smallest character at the crop's lowest resolution (the renderer's sixth
    # column, see tools.synth.plates), 0 when unknown
    char_px: float = 0.0


@dataclass
class Listing:
    """Usable samples, plus (path, reason) for each entry left out."""

    samples: List[Sample] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    # crops labelled two-line but too wide for the runtime to stitch (``may_be_two_lines``), e.g.
    # rendered straight at 94x24: training stitches them, the runtime reads them as one line
    wide_two_line: int = 0
    # the charset the samples were listed for: it decides whether two-line stitches are straightened
    # (``lprnet.preprocess.straightens``), in training as in the runtime
    charset: str = ""

    def summary(self) -> str:
        """One line: counts of used and skipped entries, by reason."""
        if not self.skipped:
            return f"{len(self.samples)} samples"
        reasons = Counter(reason.split(":")[0] for _, reason in self.skipped)
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        first = self.skipped[0]
        return f"{len(self.samples)} samples, {len(self.skipped)} skipped ({detail}; first: {first[0]})"


def text_from_filename(path: Union[str, Path]) -> str:
    """``01주6939-2.jpg`` -> ``01주6939``; the plate text is the stem without a duplicate marker."""
    stem = Path(path).stem
    match = _DUPLICATE_SUFFIX.match(stem)
    return match.group(1) if match else stem


def _check_text(text: str, charset: Charset) -> str:
    if not text:
        return "bad label: empty text"
    try:
        charset.encode(text)
    except AlprError as exc:
        return f"bad label: {exc}"
    return ""


def _add(listing: Listing, path: Path, text: str, charset: Charset, lines: int = 0, kind: str = "",
         char_px: float = 0.0) -> None:
    """A sample, or a skipped entry saying why its label is unusable."""
    problem = _check_text(text, charset)
    if problem:
        listing.skipped.append((str(path), problem))
    else:
        listing.samples.append(Sample(path, text, lines, kind, char_px))


def _positive_float(text: str) -> float:
    """A column's number, or 0.0 (unknown) when it is missing or not a positive number."""
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if value > 0 and math.isfinite(value) else 0.0


def list_folder(folder: Union[str, Path], charset: Charset) -> Listing:
    folder = Path(folder)
    if not folder.is_dir():
        raise AlprError(f"crop folder not found: {folder}")
    listing = Listing(charset=charset.name)
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        _add(listing, path, text_from_filename(path), charset)
    return listing


def list_label_file(label_file: Union[str, Path], charset: Charset) -> Listing:
    label_file = Path(label_file)
    if not label_file.is_file():
        raise AlprError(f"label file not found: {label_file}")
    try:
        lines = label_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise AlprError(f"label file {label_file} is not UTF-8 text") from None
    listing = Listing(charset=charset.name)
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rstrip("\r\n").split("\t")
        # filename<TAB>text, optionally followed by more columns (the plate renderer adds kind, ev, lines,
        # char_px)
        if len(parts) < 2 or not parts[0].strip():
            listing.skipped.append((f"{label_file}:{number}", "malformed line: expected filename<TAB>text[<TAB>...]"))
            continue
        lines = parts[4].strip() if len(parts) > 4 else ""
        kind = parts[2].strip() if len(parts) > 2 else ""
        _add(listing, label_file.parent / parts[0].strip(), parts[1].strip(), charset,
             int(lines) if lines in ("1", "2") else 0, kind, _positive_float(parts[5]) if len(parts) > 5 else 0.0)
    return listing


def list_samples(source: Union[str, Path], charset: Charset) -> Listing:
    """A folder of crops or a label file; AlprError when nothing usable is found."""
    source = Path(source)
    if source.is_dir():
        listing = list_folder(source, charset)
    elif source.is_file():
        listing = list_label_file(source, charset)
    else:
        raise AlprError(f"plate data not found: {source} (a folder of crops or a label file)")
    if not listing.samples:
        why = f"; {listing.summary()}" if listing.skipped else ""
        raise AlprError(f"no usable plate crops in {source}{why}")
    return listing


def read_image(path: Union[str, Path]) -> np.ndarray:
    """BGR uint8 image; AlprError when missing or not decodable (works with non-ASCII paths)."""
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        raise AlprError(f"cannot read image: {path}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise AlprError(f"corrupt or unsupported image: {path}")
    return image


def _load(listing: Listing, progress: bool, transform) -> Tuple[List[np.ndarray], List[str]]:
    images: List[np.ndarray] = []
    texts: List[str] = []
    kept: List[Sample] = []
    items: Sequence[Sample] = listing.samples
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="loading crops", unit="crop", leave=False)
    for sample in items:
        try:
            images.append(transform(read_image(sample.path), sample))
        except AlprError as exc:
            listing.skipped.append((str(sample.path), f"bad image: {exc}"))
            continue
        texts.append(sample.text)
        kept.append(sample)
    listing.samples = kept
    if not images:
        raise AlprError(f"no readable plate crops ({listing.summary()})")
    return images, texts


def load_crops(listing: Listing, progress: bool = False) -> Tuple[np.ndarray, List[str]]:
    """Model inputs for training: uint8 [N, 24, 94, 3], two-line plates stitched when the label file
    says a crop has two lines (``lprnet.preprocess.layout_input``; straightened first for the charsets the
    runtime straightens, ``listing.charset``); corrupt images move to ``skipped``."""
    straighten = straightens(listing.charset)

    def layout(img: np.ndarray, sample: Sample) -> np.ndarray:
        if sample.lines == 2 and not may_be_two_lines(img):
            listing.wide_two_line += 1
        return layout_input(img, sample.lines, straighten)

    listing.wide_two_line = 0
    images, texts = _load(listing, progress, layout)
    return np.stack(images), texts


def load_originals(listing: Listing, progress: bool = False) -> Tuple[List[np.ndarray], List[str]]:
    """The crops as they are (BGR, any size), for reading them as the runtime does."""
    return _load(listing, progress, lambda img, sample: img)
