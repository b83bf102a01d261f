"""Writing a Darknet/YOLO dataset folder (shared by the scene renderer and the CCPD converter).

Layout of a dataset folder ``OUT``::

    OUT/images/<name>.jpg + OUT/images/<name>.txt   image and its labels, side by side
    OUT/train.txt, OUT/valid.txt                     image paths relative to OUT, one per line
    OUT/obj.names                                    class names (copy of data/classes/custom.names)
    OUT/obj.data                                     Darknet's summary (classes, train, valid, names)
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

import numpy as np

from core.errors import AlprError

REPO = Path(__file__).resolve().parents[2]
CUSTOM_NAMES = REPO / "data" / "classes" / "custom.names"
CLASS_IDS = {"car": 0, "license_plate": 1, "disabled_sticker": 2}


def class_names() -> List[str]:
    """The product's detector classes, from data/classes/custom.names."""
    names = [n.strip() for n in CUSTOM_NAMES.read_text(encoding="utf-8").splitlines() if n.strip()]
    for name, idx in CLASS_IDS.items():
        if idx >= len(names) or names[idx] != name:
            raise AlprError(f"{CUSTOM_NAMES} must list {name} at line {idx + 1}")
    return names


@contextmanager
def building_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``out`` that becomes ``out`` only when the block succeeds.

    ``out`` must not exist or be an empty folder, so nothing of the user's is ever overwritten."""
    out_path = Path(out)
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
        raise AlprError(f"{out} exists and is not an empty folder; choose a new --out")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.partial-", dir=out_path.parent))
    try:
        yield tmp
        if out_path.exists():
            out_path.rmdir()
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def split(items: Sequence[str], valid_fraction: float, seed: int) -> Tuple[List[str], List[str]]:
    """Deterministic train/valid split; at least one valid item when the fraction is > 0 and n > 1."""
    if not 0.0 <= valid_fraction < 1.0:
        raise AlprError(f"--valid_fraction must be in [0, 1), got {valid_fraction}")
    order = np.random.default_rng(seed).permutation(len(items))
    n_valid = int(round(len(items) * valid_fraction))
    if valid_fraction > 0 and n_valid == 0 and len(items) > 1:
        n_valid = 1
    valid_idx = set(order[:n_valid].tolist())
    train = [it for i, it in enumerate(items) if i not in valid_idx]
    valid = [it for i, it in enumerate(items) if i in valid_idx]
    return train, valid


def write_dataset_files(folder: Path, train: Sequence[str], valid: Sequence[str]) -> None:
    """train.txt, valid.txt, obj.names and obj.data in ``folder`` (paths relative to it)."""
    names = class_names()
    (folder / "train.txt").write_text("".join(p + "\n" for p in train), encoding="utf-8")
    (folder / "valid.txt").write_text("".join(p + "\n" for p in valid), encoding="utf-8")
    (folder / "obj.names").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    data = (f"classes = {len(names)}\ntrain = train.txt\nvalid = valid.txt\n"
            "names = obj.names\nbackup = backup/\n")
    (folder / "obj.data").write_text(data, encoding="utf-8")
