"""CCPD (Chinese City Parking Dataset) to a YOLO txt dataset or to 94x24 plate crops.

CCPD keeps every label in the image's file name: seven ``-``-separated fields, e.g.
``025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg``:

1. plate area / image area (percent), 2. horizontal_vertical tilt (degrees),
3. box ``x1&y1_x2&y2`` (top-left, bottom-right), 4. the four corners, starting at the bottom-right
   one and going clockwise (bottom-right, bottom-left, top-left, top-right),
5. the plate as indices: the first into ``PROVINCES``, the second into ``ALPHABETS``, the rest into
   ``ADS`` (seven for blue plates, eight for CCPD2020's green new-energy ones), 6. brightness, 7. blurriness.

``O`` in the tables means "no character"; such plates, and the ``警``/``学`` provinces that are not in
the reader's charset, keep their box but get no text.

Commands::

    python -m tools.ccpd --images CCPD2019/ccpd_base --out runs/ccpd_yolo [--valid_fraction 0.1]
    python -m tools.ccpd --images CCPD2019/ccpd_base --out runs/ccpd_crops --crops [--size 94x24]

YOLO output (see ``tools.synth.yolo_io``): class 1 ``license_plate`` boxes with the plate text as the
sixth token, images hard-linked (else copied) into ``OUT/images``. Crops output: perspective-
rectified crops named by their text (``_N`` for duplicates) and ``labels.txt`` with
``filename<TAB>text<TAB>kind<TAB>ev<TAB>lines`` (kind ``cn_green`` with ev 1 for 8-character plates,
else ``cn_blue``). A file whose name or image cannot be used is skipped and reported in one line.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from core.errors import AlprError
from core.images import IMAGE_EXTENSIONS
from core.yolo_dataset import box_from_xyxy
from tools.synth.charsets import validate
from tools.synth.yolo_io import CLASS_IDS, building_folder, split, write_dataset_files

PROVINCES = (
    "皖", "沪", "津", "渝", "冀", "晋", "蒙", "辽", "吉", "黑", "苏", "浙", "京", "闽", "赣", "鲁", "豫",
    "鄂", "湘", "粤", "桂", "琼", "川", "贵", "云", "藏", "陕", "甘", "青", "宁", "新", "警", "学", "O",
)
ALPHABETS = (
    "A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "Q", "R", "S", "T", "U",
    "V", "W", "X", "Y", "Z", "O",
)
ADS = (
    "A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "Q", "R", "S", "T", "U",
    "V", "W", "X", "Y", "Z", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "O",
)


@dataclass(frozen=True)
class CcpdLabel:
    """Everything a CCPD file name says about its plate."""

    box: Tuple[int, int, int, int]  # x1, y1, x2, y2
    corners: Tuple[Tuple[int, int], ...]  # top-left, top-right, bottom-right, bottom-left
    text: str  # decoded plate, "O" where CCPD has no character
    area: int
    tilt: Tuple[int, int]
    brightness: int
    blur: int


def _pair(s: str) -> Tuple[int, int]:
    x, y = s.split("&")
    return int(x), int(y)


def decode_plate(indices: Sequence[int]) -> str:
    """CCPD plate indices to text (IndexError on an index outside the tables)."""
    if len(indices) < 7:
        raise ValueError(f"plate has {len(indices)} indices, expected 7 or 8")
    return PROVINCES[indices[0]] + ALPHABETS[indices[1]] + "".join(ADS[i] for i in indices[2:])


def parse_name(name: str) -> CcpdLabel:
    """Parse a CCPD file name (with or without folder / extension); ValueError when it is not one."""
    stem = Path(name).stem
    fields = stem.split("-")
    if len(fields) != 7:
        raise ValueError(f"not a CCPD name: {len(fields)} '-'-separated fields, expected 7")
    try:
        area = int(fields[0])
        tilt = _pair(fields[1].replace("_", "&"))
        p1, p2 = (_pair(p) for p in fields[2].split("_"))
        pts = [_pair(p) for p in fields[3].split("_")]
        indices = [int(i) for i in fields[4].split("_")]
        brightness, blur = int(fields[5]), int(fields[6])
    except ValueError:
        raise ValueError("not a CCPD name: a field is not made of integers as expected") from None
    if len(pts) != 4:
        raise ValueError(f"not a CCPD name: {len(pts)} corners, expected 4")
    try:
        text = decode_plate(indices)
    except IndexError:
        raise ValueError("plate index outside the CCPD tables") from None
    br, bl, tl, tr = pts
    box = (min(p1[0], p2[0]), min(p1[1], p2[1]), max(p1[0], p2[0]), max(p1[1], p2[1]))
    return CcpdLabel(box, (tl, tr, br, bl), text, area, tilt, brightness, blur)


def usable_text(label: CcpdLabel) -> bool:
    """True when the plate text is complete and in the reader's ``cn`` charset and format."""
    return validate(label.text, "cn")


def rectify(image: np.ndarray, corners: Sequence[Tuple[float, float]],
            size: Tuple[int, int] = (94, 24)) -> np.ndarray:
    """Warp the quadrilateral ``corners`` (TL, TR, BR, BL) of ``image`` to a ``size`` (w, h) crop."""
    w, h = size
    src = np.float32(corners)
    dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _image_size(path: Path) -> Tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _list_images(images: str | os.PathLike) -> List[Path]:
    root = Path(images)
    if not root.is_dir():
        raise AlprError(f"--images must be a folder of CCPD images: {root}")
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not found:
        raise AlprError(f"no images in {root}")
    return found


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@dataclass
class Report:
    """What a conversion did: files written, plates without usable text, files skipped and why."""

    written: int = 0
    without_text: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.written} written"
        if self.without_text:
            text += f", {self.without_text} plates without usable text"
        if self.skipped:
            where, why = self.skipped[0]
            text += f", {len(self.skipped)} files skipped (first: {where}: {why})"
        return text


def to_yolo(images: str | os.PathLike, out: str | os.PathLike, valid_fraction: float = 0.1,
            seed: int = 0, progress: bool = True) -> Report:
    """CCPD folder -> YOLO dataset folder ``out`` (license_plate boxes with their text)."""
    from tqdm import tqdm

    from core.yolo_dataset import write_labels

    files = _list_images(images)
    report = Report()
    kept: List[str] = []
    with building_folder(out) as tmp:
        (tmp / "images").mkdir()
        used: Dict[str, int] = {}
        for path in tqdm(files, desc="ccpd -> yolo", unit="img", disable=not progress):
            try:
                label = parse_name(path.name)
                width, height = _image_size(path)
            except (ValueError, OSError) as exc:
                report.skipped.append((str(path), str(exc)))
                continue
            text = label.text if usable_text(label) else None
            report.without_text += text is None
            x1, y1, x2, y2 = label.box
            box = box_from_xyxy(CLASS_IDS["license_plate"], x1, y1, x2, y2, width, height, text)
            if box.w <= 0 or box.h <= 0:
                report.skipped.append((str(path), "empty box"))
                continue
            n = used.get(path.name, 0)
            used[path.name] = n + 1
            name = path.name if n == 0 else f"{n}_{path.name}"
            _link_or_copy(path, tmp / "images" / name)
            write_labels(tmp / "images" / (Path(name).stem + ".txt"), [box])
            kept.append("images/" + name)
            report.written += 1
        if not kept:
            raise AlprError(f"no usable CCPD image in {images}: {report.line()}")
        train, valid = split(kept, valid_fraction, seed)
        write_dataset_files(tmp, train, valid)
    return report


def _imread(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ValueError("cannot decode the image")
    return img


def to_crops(images: str | os.PathLike, out: str | os.PathLike, size: Tuple[int, int] = (94, 24),
             progress: bool = True) -> Report:
    """CCPD folder -> rectified plate crops named by their text + labels.txt."""
    from tqdm import tqdm

    from tools.synth.plates import unique_name

    files = _list_images(images)
    report = Report()
    seen: Dict[str, int] = {}
    lines: List[str] = []
    with building_folder(out) as tmp:
        for path in tqdm(files, desc="ccpd -> crops", unit="img", disable=not progress):
            try:
                label = parse_name(path.name)
                if not usable_text(label):
                    raise ValueError(f"plate text {label.text!r} not in the cn charset")
                crop = rectify(_imread(path), label.corners, size)
            except (ValueError, OSError) as exc:
                report.skipped.append((str(path), str(exc)))
                continue
            name = unique_name(label.text, seen) + ".jpg"
            ok, enc = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                report.skipped.append((str(path), "cannot encode the crop"))
                continue
            (tmp / name).write_bytes(enc.tobytes())
            green = len(label.text) == 8
            lines.append(f"{name}\t{label.text}\t{'cn_green' if green else 'cn_blue'}\t{int(green)}\t1\n")
            report.written += 1
        if not lines:
            raise AlprError(f"no usable CCPD image in {images}: {report.line()}")
        (tmp / "labels.txt").write_text("".join(lines), encoding="utf-8")
    return report


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from tools.synth.plates import parse_size

    f = flags.FLAGS
    if len(argv) > 1:
        raise AlprError(f"unexpected arguments: {' '.join(argv[1:])}")
    if f.crops:
        size = parse_size(f.size)
        if size is None:
            raise AlprError("--size must be WIDTHxHEIGHT for crops")
        report = to_crops(f.images, f.out, size)
    else:
        report = to_yolo(f.images, f.out, f.valid_fraction, f.seed)
    print(f"{f.out}: {report.line()}")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("images", None, "folder of CCPD images (searched recursively)")
    flags.DEFINE_string("out", None, "output folder (new or empty)")
    flags.DEFINE_boolean("crops", False, "write rectified plate crops instead of a YOLO dataset")
    flags.DEFINE_string("size", "94x24", "crop size WIDTHxHEIGHT (with --crops)")
    flags.DEFINE_float("valid_fraction", 0.1, "share of images listed in valid.txt")
    flags.DEFINE_integer("seed", 0, "seed of the train/valid split")
    flags.mark_flags_as_required(["images", "out"])


if __name__ == "__main__":
    from absl import app

    from core.cli import guarded

    _define_flags()
    app.run(guarded(main))
