"""Darknet / YOLO txt datasets (TF-free, Python 3.8): read labels, report bad lines, never fail on one.

Label format: one ``.txt`` per image, same stem, beside the image (or in a sibling ``labels/``
folder when the image is under ``images/``, as Darknet looks for it), one object per line::

    class_id cx cy w h [TEXT]

``cx cy w h`` are the box centre and size divided by the image width / height (0..1). The optional
sixth token is this project's extension: the plate's text for a ``license_plate`` box
(e.g. ``1 0.5 0.8 0.1 0.03 12가3456``); Darknet itself ignores it. Blank lines and ``#`` comments
are skipped. A dataset is a folder of images or a list file (``train.txt``: one image path per
line, relative paths resolved against the list file's folder first, then the working directory).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple, Union

from core.cli import atomic_path
from core.errors import AlprError
from core.images import IMAGE_EXTENSIONS, read_image_list

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class YoloBox:
    """One labelled object; coordinates relative to the image size."""

    class_id: int
    cx: float
    cy: float
    w: float
    h: float
    text: str | None = None

    def to_xyxy(self, width: int, height: int) -> Tuple[float, float, float, float]:
        """Pixel corners (x1, y1, x2, y2), clipped to the image."""
        x1 = max(0.0, (self.cx - self.w / 2) * width)
        y1 = max(0.0, (self.cy - self.h / 2) * height)
        x2 = min(float(width), (self.cx + self.w / 2) * width)
        y2 = min(float(height), (self.cy + self.h / 2) * height)
        return x1, y1, x2, y2

    def to_line(self) -> str:
        """The box as a label line (6 decimals, text appended when present)."""
        line = f"{self.class_id} {self.cx:.6f} {self.cy:.6f} {self.w:.6f} {self.h:.6f}"
        return f"{line} {self.text}" if self.text else line


def box_from_xyxy(class_id: int, x1: float, y1: float, x2: float, y2: float, width: int, height: int,
                  text: str | None = None) -> YoloBox:
    """A YoloBox from pixel corners (clipped to the image first)."""
    x1, x2 = max(0.0, min(x1, x2)), min(float(width), max(x1, x2))
    y1, y2 = max(0.0, min(y1, y2)), min(float(height), max(y1, y2))
    return YoloBox(class_id, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width,
                   (y2 - y1) / height, text)


@dataclass(frozen=True)
class YoloSample:
    """An image and its boxes (``label`` is None when the image has no label file)."""

    image: Path
    label: Path | None
    boxes: Tuple[YoloBox, ...]


@dataclass
class YoloDataset:
    """Samples plus every problem found, as (where, reason) pairs: ``file:line`` for bad lines."""

    samples: List[YoloSample] = field(default_factory=list)
    problems: List[Tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a user: counts, and the first problem when there are any."""
        n_boxes = sum(len(s.boxes) for s in self.samples)
        unlabeled = sum(1 for s in self.samples if s.label is None)
        text = f"{len(self.samples)} images, {n_boxes} boxes"
        if unlabeled:
            text += f", {unlabeled} images without a label file"
        if self.problems:
            where, why = self.problems[0]
            text += f", {len(self.problems)} problems (first: {where}: {why})"
        return text


def parse_line(line: str, num_classes: int | None = None) -> YoloBox:
    """Parse one label line; ValueError with the reason when it is not a valid box."""
    parts = line.split()
    if len(parts) not in (5, 6):
        raise ValueError(f"expected 5 or 6 fields (class cx cy w h [text]), got {len(parts)}")
    try:
        class_id = int(parts[0])
    except ValueError:
        raise ValueError(f"class id {parts[0]!r} is not an integer") from None
    if class_id < 0 or (num_classes is not None and class_id >= num_classes):
        limit = f" (0..{num_classes - 1})" if num_classes is not None else ""
        raise ValueError(f"class id {class_id} out of range{limit}")
    try:
        cx, cy, w, h = (float(v) for v in parts[1:5])
    except ValueError:
        raise ValueError("box values are not numbers") from None
    if not all(math.isfinite(v) for v in (cx, cy, w, h)):
        raise ValueError("box values are not finite")
    eps = 1e-6
    if not (-eps <= cx <= 1 + eps and -eps <= cy <= 1 + eps):
        raise ValueError(f"box centre ({cx:g}, {cy:g}) outside 0..1")
    if not (0 < w <= 1 + eps and 0 < h <= 1 + eps):
        raise ValueError(f"box size ({w:g}, {h:g}) not in (0, 1]")
    return YoloBox(class_id, cx, cy, w, h, parts[5] if len(parts) == 6 else None)


Problems = List[Tuple[str, str]]


def read_labels(path: PathLike, num_classes: int | None = None) -> Tuple[List[YoloBox], Problems]:
    """Boxes of one label file and the problems found in it (bad lines are skipped)."""
    path = Path(path)
    boxes: List[YoloBox] = []
    problems: List[Tuple[str, str]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return boxes, [(str(path), "not UTF-8 text")]
    except OSError as exc:
        return boxes, [(str(path), f"cannot read: {exc.strerror or exc}")]
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            boxes.append(parse_line(stripped, num_classes))
        except ValueError as exc:
            problems.append((f"{path}:{number}", str(exc)))
    return boxes, problems


def label_path_for(image: PathLike) -> Path | None:
    """The label file of an image: beside it, else Darknet's images/ -> labels/ twin; None if absent."""
    image = Path(image)
    beside = image.with_suffix(".txt")
    if beside.is_file():
        return beside
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            twin = Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")
            if twin.is_file():
                return twin
            break
    return None


def read_names(path: PathLike) -> List[str]:
    """Class names, one per line (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise AlprError(f"class names file not found: {path}")
    return [n.strip() for n in path.read_text(encoding="utf-8").splitlines() if n.strip()]


def _images_from_list(list_file: Path) -> Tuple[List[Path], List[Tuple[str, str]]]:
    images: List[Path] = []
    problems: List[Tuple[str, str]] = []
    for number, path in read_image_list(list_file):
        if path.is_file():
            images.append(path)
        else:
            problems.append((f"{list_file}:{number}", f"image not found: {path}"))
    return images, problems


def load_dataset(source: PathLike, num_classes: int | None = None) -> YoloDataset:
    """All images of a folder (recursively) or of a list file, with their boxes and problems.

    AlprError only when the source does not exist or holds no image at all."""
    source = Path(source)
    dataset = YoloDataset()
    if source.is_dir():
        images = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    elif source.is_file():
        images, dataset.problems = _images_from_list(source)
    else:
        raise AlprError(f"dataset not found: {source} (a folder of images or a list file such as train.txt)")
    for image in images:
        label = label_path_for(image)
        boxes: Sequence[YoloBox] = ()
        if label is not None:
            boxes, problems = read_labels(label, num_classes)
            dataset.problems.extend(problems)
        dataset.samples.append(YoloSample(image, label, tuple(boxes)))
    if not dataset.samples:
        why = f" ({dataset.problems[0][0]}: {dataset.problems[0][1]})" if dataset.problems else ""
        raise AlprError(f"no images in {source}{why}")
    return dataset


def write_labels(path: PathLike, boxes: Sequence[YoloBox]) -> None:
    """Write a label file (one box per line), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(b.to_line() + "\n" for b in boxes), encoding="utf-8")
