"""Mix plate-crop label files into one training set: ``python -m tools.synth.mix --out DIR/labels.txt
[--seed S] SOURCE[:N] ...``.

Each SOURCE is a label file (``filename<TAB>text[<TAB>kind<TAB>ev<TAB>lines]``, names relative to its
folder, as ``tools.synth.plates`` writes them) or a folder holding one as ``labels.txt``. ``:N`` takes N
of its lines, drawn at random (``random.Random(seed)`` shuffles a copy of the source's lines, one fresh
generator per sampled source, and the first N are kept); without it every line is taken. Image names are
rewritten relative to the output's folder and checked to exist, so the mix trains without copying a crop.
The output is written atomically; a missing source or image is a one-line error.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from core.errors import AlprError


def parse_source(spec: str) -> Tuple[Path, Optional[int]]:
    """``path`` or ``path:N`` -> (label file, N or None)."""
    path, count = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and tail.isdigit():
        path, count = head, int(tail)
        if count <= 0:
            raise AlprError(f"{spec}: the count after ':' must be positive")
    p = Path(path)
    if p.is_dir():
        p = p / "labels.txt"
    if not p.is_file():
        raise AlprError(f"label file not found: {p}")
    return p, count


def mix_lines(sources: Sequence[Tuple[Path, Optional[int]]], out_dir: Path, seed: int = 0) -> List[str]:
    """The output's lines (without newlines), image names relative to ``out_dir``."""
    out_dir = Path(os.path.abspath(out_dir))
    rows: List[str] = []
    for label_file, count in sources:
        lines = [ln for ln in label_file.read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        if count is not None:
            if count > len(lines):
                raise AlprError(f"{label_file} has {len(lines)} lines, fewer than the {count} asked for")
            random.Random(seed).shuffle(lines)
            lines = lines[:count]
        base = Path(os.path.abspath(label_file.parent))
        for ln in lines:
            name, sep, rest = ln.partition("\t")
            if not sep:
                raise AlprError(f"{label_file}: malformed line {ln!r} (expected filename<TAB>text)")
            image = Path(os.path.normpath(base / name))
            if not image.is_file():
                raise AlprError(f"{label_file}: image not found: {image}")
            rows.append(f"{os.path.relpath(image, out_dir)}\t{rest}")
    if not rows:
        raise AlprError("nothing to mix")
    return rows


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from core.cli import atomic_path

    f = flags.FLAGS
    if len(argv) < 2:
        raise AlprError("give at least one SOURCE[:N] (a label file or a folder with labels.txt)")
    out = Path(f.out)
    if out.is_dir():
        out = out / "labels.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = mix_lines([parse_source(s) for s in argv[1:]], out.parent, f.seed)
    with atomic_path(out, suffix=".txt") as tmp:
        tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} lines to {out}")


if __name__ == "__main__":
    from absl import app, flags

    from core.cli import guarded

    flags.DEFINE_string("out", None, "label file to write (or a folder: FOLDER/labels.txt)")
    flags.DEFINE_integer("seed", 0, "seed of the draw for SOURCE:N")
    flags.mark_flag_as_required("out")
    app.run(guarded(main))
