"""Crops of detections: boxes clamped to the image, safe file names, no silent overwrite, atomic writes.

Layout: ``<output>/crop/<image name>/<class>_<n>[_<text>].<ext>``, e.g.
``out/crop/demo/license_plate_1_12가3456.jpg``. Names keep letters and digits of any script (Hangul and
Chinese plate text stays readable; ``str.isalnum``), everything else becomes ``_``. An existing file is
never replaced: ``_1``, ``_2`` ... is appended to the stem until the name is free, and the name is claimed
with an exclusive create, so two writers cannot take the same one either.
"""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Tuple, Union

import cv2
import numpy as np

from core.cli import atomic_path
from core.errors import AlprError
from core.types import Box

IntBox = Tuple[int, int, int, int]
MAX_NAME_CHARS = 80


Pad = Union[float, Tuple[float, float]]


def clamp_box(box: Box, width: int, height: int, pad: Pad = 0.0) -> IntBox:
    """Integer pixel box (x1, y1, x2, y2; x2/y2 exclusive) inside a ``width`` x ``height`` image.

    ``pad`` grows the box by that fraction of its width (each side left/right) and height (top/bottom)
    before clamping; a pair ``(pad_x, pad_y)`` gives the two fractions separately. The outer edges are
    rounded outwards (floor / ceil) so a box never loses a partly covered pixel. A box wholly outside the
    image comes back empty (x1 == x2 or y1 == y2).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1:
        x1, x2 = x2, x1
    if y2 < y1:
        y1, y2 = y2, y1
    pad_x, pad_y = pad if isinstance(pad, tuple) else (pad, pad)
    if pad_x or pad_y:
        dx, dy = (x2 - x1) * pad_x, (y2 - y1) * pad_y
        x1, y1, x2, y2 = x1 - dx, y1 - dy, x2 + dx, y2 + dy
    ix1 = int(min(max(np.floor(x1), 0), width))
    iy1 = int(min(max(np.floor(y1), 0), height))
    ix2 = int(min(max(np.ceil(x2), ix1), width))
    iy2 = int(min(max(np.ceil(y2), iy1), height))
    return ix1, iy1, ix2, iy2


def crop(image: np.ndarray, box: Box, pad: Pad = 0.0) -> np.ndarray | None:
    """The clamped crop of ``box`` (a view into ``image``), or None when it is empty."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = clamp_box(box, w, h, pad)
    if x2 <= x1 or y2 <= y1:
        return None
    return image[y1:y2, x1:x2]


def safe_name(text: str, max_chars: int = MAX_NAME_CHARS, empty: str = "unnamed") -> str:
    """A file-name part from any text: letters/digits of any script kept, runs of anything else -> ``_``.

    NFC-normalised (so Hangul typed on macOS, which decomposes it, gives the same name), leading and
    trailing ``_`` stripped, cut to ``max_chars``; ``empty`` when nothing is left.
    """
    text = unicodedata.normalize("NFC", str(text))
    out = []
    for ch in text:
        if ch.isalnum():
            out.append(ch)
        elif not out or out[-1] != "_":
            out.append("_")
    name = "".join(out).strip("_")[:max_chars].strip("_")
    return name or empty


def encode_image(image: np.ndarray, ext: str = ".jpg") -> bytes:
    """Encode with OpenCV (works for any path since the bytes are written by Python)."""
    ext = ext if ext.startswith(".") else "." + ext
    try:
        ok, buf = cv2.imencode(ext, image)
    except cv2.error as exc:
        raise AlprError(f"cannot encode image as {ext}: {str(exc).strip().splitlines()[-1]}") from exc
    if not ok:
        raise AlprError(f"cannot encode image as {ext}")
    return buf.tobytes()


def write_new_file(folder: str | os.PathLike, stem: str, ext: str, data: bytes) -> Path:
    """Write ``data`` to ``folder/stem+ext``, or ``stem_1``, ``stem_2`` ... if taken; never overwrites.

    The name is claimed with an exclusive create, then the content is written to a temporary file and
    renamed over the claim (``core.cli.atomic_path``), so a reader never sees a half-written image.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ext if ext.startswith(".") else "." + ext
    n = 0
    while True:
        target = folder / (f"{stem}{ext}" if n == 0 else f"{stem}_{n}{ext}")
        try:
            fd = os.open(str(target), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        break
    try:
        with atomic_path(target, suffix=ext) as tmp:
            tmp.write_bytes(data)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def write_image(folder: str | os.PathLike, stem: str, image: np.ndarray, ext: str = ".jpg") -> Path:
    """Encode ``image`` and write it under a new name in ``folder`` (see ``write_new_file``)."""
    return write_new_file(folder, stem, ext, encode_image(image, ext))


def crop_dir(output: str | os.PathLike, image_path: str | os.PathLike) -> Path:
    """``<output>/crop/<safe image stem>``."""
    return Path(output) / "crop" / safe_name(Path(image_path).stem)


def save_crop(image: np.ndarray, box: Box, output: str | os.PathLike, image_path: str | os.PathLike,
              class_name: str, index: int, text: str | None = None, pad: float = 0.0,
              ext: str = ".jpg") -> Path | None:
    """Save one detection's crop as ``<output>/crop/<image>/<class>_<index>[_<text>]<ext>``.

    Returns the path written, or None when the clamped box is empty (wholly outside the image).
    """
    part = crop(image, box, pad)
    if part is None:
        return None
    stem = f"{safe_name(class_name)}_{int(index)}"
    if text:
        stem += "_" + safe_name(text)
    return write_image(crop_dir(output, image_path), stem, np.ascontiguousarray(part), ext)
