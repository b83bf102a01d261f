"""core.plate_reading: one batch of plate crops, then a taller crop for the weak reads (a fake reader)."""
from __future__ import annotations

from typing import List

import numpy as np

from core.crops import clamp_box
from core.plate_reading import read_plate_boxes
from lprnet.reader import WEAK_CONFIDENCE, PlateRead

TOP_ROW_VALUE = 200  # the fake plate's top edge (rows 40-41) has this value; nothing else does


class TopEdgeReader:
    """Reads a crop as a valid plate only when it holds the plate's top edge, else as a weak invalid read;
    remembers the crops it was given."""

    def __init__(self) -> None:
        self.calls: List[List[np.ndarray]] = []

    def read(self, crops: List[np.ndarray]) -> List[PlateRead]:
        self.calls.append(crops)
        return [PlateRead("12가3456", 0.9, True) if (c == TOP_ROW_VALUE).any() else PlateRead("가3456", 0.1, False)
                for c in crops]


def _image() -> np.ndarray:
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 50:150] = 120  # the plate, rows 40-59
    img[40:42, 50:150] = TOP_ROW_VALUE
    return img


def test_crop_pad_by_separate_fractions_of_width_and_height() -> None:
    assert clamp_box((10, 20, 110, 40), 200, 100, (0.1, 0.5)) == (0, 10, 120, 50)


def test_a_box_cut_short_at_the_top_is_read_again_from_a_taller_crop() -> None:
    reader = TopEdgeReader()
    # the detector's box misses the plate's top half (rows 50-70 instead of 40-60)
    crops, reads = read_plate_boxes(reader, _image(), [(50, 50, 150, 70)], pad=0.0)
    assert len(reader.calls) == 2
    assert reads[0] == PlateRead("12가3456", 0.9, True)
    # the retry crop: 0.5 x 20 rows above and below, 0.1 x 100 columns left and right
    assert reader.calls[1][0].shape[:2] == (40, 120)
    assert crops[0].shape[:2] == (20, 100)  # the crops returned are the first pass's (for the colour check)


def test_a_confident_valid_read_is_not_read_again() -> None:
    reader = TopEdgeReader()
    _, reads = read_plate_boxes(reader, _image(), [(50, 40, 150, 60)], pad=0.0)
    assert len(reader.calls) == 1 and reads[0].valid and reads[0].confidence >= WEAK_CONFIDENCE


def test_retry_keeps_the_first_read_when_the_second_is_not_better() -> None:
    class Worse(TopEdgeReader):
        def read(self, crops):
            self.calls.append(crops)
            conf = 0.3 if len(self.calls) == 1 else 0.2
            return [PlateRead("12가3456", conf, True) for _ in crops]

    reader = Worse()
    _, reads = read_plate_boxes(reader, _image(), [(50, 40, 150, 60)], pad=0.0)
    assert len(reader.calls) == 2 and reads[0].confidence == 0.3


def test_boxes_outside_the_image_get_none_and_retry_can_be_switched_off() -> None:
    reader = TopEdgeReader()
    crops, reads = read_plate_boxes(reader, _image(), [(300, 300, 350, 320), (50, 50, 150, 70)], pad=0.0,
                                    retry=False)
    assert crops[0] is None and reads[0] is None
    assert len(reader.calls) == 1 and not reads[1].valid
