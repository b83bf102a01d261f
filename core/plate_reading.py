"""Read the plates of one image from the detector's boxes: one batch, then a taller crop for weak reads.

Plate boxes are wide and short, so a vertical error of a few pixels (common: plate AP@0.5:0.95 is about
0.43 against 0.95 at IoU 0.5) is a large part of the plate's height and can cut the characters in half.
A weak read (``lprnet.reader.is_weak``: not format-valid, or a CTC confidence under ``WEAK_CONFIDENCE``)
is read once more from a crop grown by ``RETRY_PAD`` (fractions of the box's width and height on each
side); the reader cuts that loose crop to its characters (``lprnet.preprocess.tighten``), and the better
read of the two is kept (format-valid first, then the more confident: ``lprnet.reader.better_read``).
Used by the runtime (``core.pipeline``) and by ``evaluate.py --lpr`` alike.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from core.crops import crop
from core.types import Box

# The reader is trained on loose crops, and a box that is a few pixels short would cut characters.
PLATE_PAD = 0.06
RETRY_PAD = (0.1, 0.5)  # (of the width, of the height): core.crops.crop's pad


def read_plate_boxes(reader: Any, image: np.ndarray, boxes: Sequence[Box], pad: float = PLATE_PAD,
                     retry: bool = True) -> Tuple[List[Optional[np.ndarray]], List[Optional[Any]]]:
    """(crops, reads) for ``boxes`` in ``image``; ``None`` for a box wholly outside the image.

    ``reader`` is anything with ``read(list of BGR crops) -> list of reads`` (``lprnet.reader.PlateReader``).
    The crops are those of the first pass (``pad``), for the colour check."""
    from lprnet.reader import better_read, is_weak

    crops = [crop(image, b, pad) for b in boxes]  # None: empty once clamped to the image
    reads: List[Optional[Any]] = [None] * len(boxes)
    usable = [i for i, c in enumerate(crops) if c is not None]
    if not usable:
        return crops, reads
    for i, r in zip(usable, reader.read([crops[i] for i in usable])):
        reads[i] = r
    if not retry:
        return crops, reads
    weak = [i for i in usable if is_weak(reads[i])]
    if weak:  # a box that clamped to a non-empty crop still does when grown
        for i, r in zip(weak, reader.read([crop(image, boxes[i], RETRY_PAD) for i in weak])):
            if better_read(r, reads[i]):
                reads[i] = r
    return crops, reads
