"""``--images`` arguments -> an ordered list of image paths; reading images with one-line errors.

Expansion rules (``expand_image_args``):
- each argument is a file, a folder or a glob pattern (``*``, ``?``, ``[``; ``**`` with recursive globs);
- a ``.txt`` file is a list of images (``read_image_list``, Darknet's ``train.txt``); entries found
  nowhere go to ``missing`` as ``LIST:LINE: ENTRY``;
- any other explicit file is always taken, whatever its extension (reading it says if it is not an image);
- a folder gives its files with an image extension (``IMAGE_EXTENSIONS``, any case), sorted by name,
  not recursing unless asked; a glob gives its matches sorted by name, folders among them expanded;
- files in a folder or glob without an image extension (not hidden ones) are listed in ``skipped`` so the
  caller can report each in one line; an argument that matches nothing is listed in ``missing``;
- order is the arguments' order; a path that comes twice is kept once (first place).
Reading (``read_image``) decodes from bytes (``cv2.imdecode``), so non-ASCII paths work on every platform,
and raises ``AlprError`` with a one-line reason for a missing, empty, unreadable or non-image file.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

import cv2
import numpy as np

from core.errors import AlprError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm",
                              ".pgm", ".ppm"})
_GLOB_CHARS = set("*?[")


@dataclass
class ImageList:
    """The result of expanding ``--images``: what to process and what to report."""

    images: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # files in folders/globs that are not images by name
    missing: List[str] = field(default_factory=list)  # arguments that matched nothing, LIST:LINE: ENTRY


def is_image_name(path: str | os.PathLike) -> bool:
    """True when the file name has an image extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_image_list(list_file: str | os.PathLike) -> List[Tuple[int, Path]]:
    """(line number, path) of each entry of an image list: one path per line, blank lines and ``#``
    comments skipped. A relative entry is resolved against the list's folder first, then the working
    directory (Darknet's lists are written either way); one found in neither is returned as written, for
    the caller to report."""
    list_file = Path(list_file)
    try:
        lines = list_file.read_text(encoding="utf-8-sig").splitlines()  # a BOM from Windows editors
    except (OSError, UnicodeDecodeError) as exc:
        raise AlprError(f"cannot read the image list {list_file}: {exc}") from None
    out: List[Tuple[int, Path]] = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry).expanduser()
        if not path.is_absolute():
            path = next((c for c in (list_file.parent / path, Path.cwd() / path) if c.is_file()), path)
        out.append((number, path))
    return out


def _folder_files(folder: Path, recursive: bool) -> List[Path]:
    it: Iterable[Path] = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in it
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(files, key=lambda p: str(p.relative_to(folder)))


def expand_image_args(args: str | Sequence[str], recursive: bool = False) -> ImageList:
    """Expand files, folders and globs into an ``ImageList`` (see the module docstring)."""
    if isinstance(args, (str, os.PathLike)):
        args = [os.fspath(args)]
    out = ImageList()
    seen = set()

    def add(path: Path, explicit: bool) -> None:
        key = os.path.normcase(os.path.abspath(str(path)))
        if key in seen:
            return
        seen.add(key)
        if explicit or is_image_name(path):
            out.images.append(str(path))
        else:
            out.skipped.append(str(path))

    for arg in args:
        arg = os.fspath(arg)
        path = Path(arg).expanduser()
        if path.is_dir():
            for f in _folder_files(path, recursive):
                add(f, False)
        elif path.is_file() and path.suffix.lower() == ".txt":
            for number, entry in read_image_list(path):
                if entry.is_file():
                    add(entry, True)
                else:
                    out.missing.append(f"{path}:{number}: {entry}")
        elif path.is_file():
            add(path, True)
        elif _GLOB_CHARS & set(arg):
            matches = sorted(glob.glob(os.path.expanduser(arg), recursive=True))
            if not matches:
                out.missing.append(arg)
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    for f in _folder_files(mp, recursive):
                        add(f, False)
                elif mp.is_file() and not mp.name.startswith("."):
                    add(mp, False)
        else:
            out.missing.append(arg)
    return out


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as BGR uint8 (H, W, 3); ``AlprError`` with a one-line reason when it cannot."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise AlprError(f"{p}: no such file") from exc
    except IsADirectoryError as exc:
        raise AlprError(f"{p}: is a folder, not an image") from exc
    except OSError as exc:
        raise AlprError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    if not data:
        raise AlprError(f"{p}: empty file (0 bytes)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise AlprError(f"{p}: not an image or corrupt ({len(data)} bytes)")
    return image
