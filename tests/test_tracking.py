"""IoU tracker: ids across a hand-made sequence, voting, one event per track, frame-result inputs."""
from __future__ import annotations

import numpy as np
import pytest

from core.results import PlateInfo, build_frame_result
from core.tracking import EventFilter, IouTracker, PlateEvent, Read, iou_matrix, track_inputs, vote
from core.types import Detection


def test_iou_matrix_by_hand() -> None:
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]], float)
    # overlap 5x10 = 50, union 150 -> 1/3
    assert np.allclose(iou_matrix(a, b), [[1 / 3, 1.0, 0.0]])


def test_vote_rules() -> None:
    assert vote([]) is None
    reads = [Read("12가3456", 0.9, True), Read("12가3458", 0.95, True), Read("12가3456", 0.8, True),
             Read("I2가3456", 0.99, False), Read("I2가3456", 0.99, False)]
    # valid reads preferred; among them 3456 sums 1.7 > 3458's 0.95
    assert vote(reads) == ("12가3456", pytest.approx(0.85), True, None, 2)
    # with no valid read the highest summed confidence wins
    assert vote([Read("AB", 0.5), Read("AC", 0.3), Read("AC", 0.3)])[0] == "AC"
    # tie on the sum: more reads, then first seen
    assert vote([Read("X", 0.6), Read("Y", 0.3), Read("Y", 0.3)])[0] == "Y"
    assert vote([Read("P", 0.5), Read("Q", 0.5)])[0] == "P"
    # EV majority among the winning reads
    evs = [Read("A", 0.9, True, True), Read("A", 0.9, True, True), Read("A", 0.9, True, False)]
    assert vote(evs)[3] is True


def _seq():
    """Two cars moving right by 10 px per frame; car B leaves after frame 3; a new car C appears at 4."""
    frames = []
    for f in range(6):
        boxes, reads = [], []
        boxes.append([10 + 10 * f, 100, 110 + 10 * f, 160])  # car A
        reads.append(Read("11가1111" if f != 2 else "11가1117", 0.9 if f != 2 else 0.6, True))
        if f <= 3:
            boxes.append([300 - 10 * f, 100, 400 - 10 * f, 160])  # car B moving left
            reads.append(Read("22나2222", 0.8, True) if f % 2 == 0 else None)
        if f >= 4:
            boxes.append([600, 300, 700, 360])  # car C
            reads.append(None)
        frames.append((np.array(boxes, float), reads))
    return frames


def test_ids_across_frames_and_events_once() -> None:
    tracker = IouTracker(iou_threshold=0.3, max_missed=1)
    all_ids, all_events = [], []
    for f, (boxes, reads) in enumerate(_seq()):
        ids, events = tracker.update(boxes, timestamp=f * 0.1, labels=["car"] * len(boxes), reads=reads)
        all_ids.append(ids)
        all_events.append(events)
    assert all_ids == [[1, 2], [1, 2], [1, 2], [1, 2], [1, 3], [1, 3]]
    # B (id 2) last seen at frame 3, missed at 4 and 5 -> ended at frame 5 (missed 2 > max_missed 1)
    assert [len(e) for e in all_events] == [0, 0, 0, 0, 0, 1]
    ev_b = all_events[5][0]
    assert (ev_b.track_id, ev_b.text, ev_b.votes, ev_b.reads, ev_b.reason) == (2, "22나2222", 2, 2, "ended")
    assert ev_b.first_seen == 0.0 and ev_b.last_seen == pytest.approx(0.3) and ev_b.frames == 4
    flushed = tracker.flush()
    # A is reported with its majority read; C never had a read: no event
    got = [(e.track_id, e.text, e.votes, e.reads, e.reason) for e in flushed]
    assert got == [(1, "11가1111", 5, 6, "flush")]
    assert flushed[0].last_seen == pytest.approx(0.5) and flushed[0].confidence == pytest.approx(0.9)
    assert tracker.flush() == []
    doc = flushed[0].to_json_dict()
    assert doc["text"] == "11가1111" and doc["track"] == 1 and doc["first_seen"] == 0.0


def test_report_after_n_frames_only_once() -> None:
    tracker = IouTracker(report_after=3)
    box = np.array([[0, 0, 100, 50]], float)
    got = []
    for f in range(6):
        _, events = tracker.update(box + f, f, ["car"], [Read("ABC", 0.9, True)])
        got.append([(e.track_id, e.frames, e.reason) for e in events])
    assert got == [[], [], [(1, 3, "frames")], [], [], []]
    assert tracker.flush() == []


def test_report_after_waits_for_a_vote_the_filter_keeps() -> None:
    """A weak early vote is not reported (and so lost) at report_after: the track is reported when its vote
    passes, here at frame 3 where the mean of 0.05, 0.05 and 0.9 is 1/3; a track whose vote never passes
    is reported at its end, for the caller's filter to hold back."""
    reads = [Read("12가3456", 0.05, True), Read("12가3456", 0.05, True), Read("12가3456", 0.9, True)]
    box = np.array([[0, 0, 100, 50]], float)
    for early, want in ((None, [[], [(2, 0.05, "frames")], []]),
                        (EventFilter(), [[], [], [(3, pytest.approx(1 / 3), "frames")]])):
        tracker = IouTracker(report_after=2, early_filter=early)
        got = [[(e.frames, e.confidence, e.reason) for e in tracker.update(box + f, f, ["car"], [r])[1]]
               for f, r in enumerate(reads)]
        assert got == want
    tracker = IouTracker(report_after=2, early_filter=EventFilter())
    for f in range(4):
        assert tracker.update(box + f, f, ["car"], [Read("5", 0.9, False)])[1] == []
    assert [(e.text, e.reason) for e in tracker.flush()] == [("5", "flush")]


def test_event_filter_refuses_a_confidence_outside_0_1() -> None:
    from core.errors import AlprError

    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(AlprError, match="--event_min_conf must be in"):
            EventFilter(bad)


def test_labels_do_not_mix_and_fast_motion_uses_velocity() -> None:
    tracker = IouTracker(iou_threshold=0.3)
    ids, _ = tracker.update(np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float), 0.0, ["car", "license_plate"])
    assert ids == [1, 2]
    ids, _ = tracker.update(np.array([[0, 0, 10, 10]], float), 0.1, ["license_plate"])
    assert ids == [2]
    # a box moving 4 px per frame, unseen for two frames, comes back 12 px further: without the velocity
    # prediction its IoU with the last box would be 0 (10 px wide); with it the prediction is exact
    t2 = IouTracker(iou_threshold=0.3, max_missed=5, velocity_smoothing=1.0)
    base = np.array([[0, 0, 10, 10]], float)
    got = [t2.update(base + [x, 0, x, 0], f, ["car"])[0] for f, x in enumerate((0, 4, 8))]
    t2.update(np.zeros((0, 4)), 3, [])
    t2.update(np.zeros((0, 4)), 4, [])
    got.append(t2.update(base + [20, 0, 20, 0], 5, ["car"])[0])
    assert got == [[1], [1], [1], [1]]
    t3 = IouTracker(iou_threshold=0.3, max_missed=5, velocity_smoothing=0.0)  # no velocity
    ids = [t3.update(base + [x, 0, x, 0], f, ["car"])[0] for f, x in enumerate((0, 4, 8, 20))]
    assert ids == [[1], [1], [1], [2]]


def test_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        IouTracker().update(np.zeros((2, 4)), 0.0, ["car"])


def _d(box, name):
    return Detection(tuple(float(v) for v in box), 0.9, 0, name)


def test_track_inputs_from_frame_result() -> None:
    dets = [_d((0, 0, 100, 100), "car"), _d((200, 0, 300, 100), "car"),
            _d((10, 80, 40, 90), "license_plate"), _d((50, 80, 90, 90), "license_plate"),
            _d((500, 500, 540, 510), "license_plate")]
    info = [PlateInfo("AAA", 0.5, False), PlateInfo("BBB", 0.4, True), PlateInfo("CCC", 0.7, True, True)]
    frame = build_frame_result(dets, (640, 480), info)
    boxes, labels, reads = track_inputs(frame)
    assert boxes.tolist() == [[0, 0, 100, 100], [200, 0, 300, 100], [500, 500, 540, 510]]
    assert labels == ["car", "car", "license_plate"]
    # car 0 has two plates: the valid one wins over the more confident invalid one; car 1 none
    assert reads == [Read("BBB", 0.4, True, None), None, Read("CCC", 0.7, True, True)]


def test_track_inputs_skip_empty_reads() -> None:
    """A read that decoded no character is no vote: it neither beats a real read nor starts a plate track."""
    dets = [_d((0, 0, 100, 100), "car"), _d((200, 0, 300, 100), "car"),
            _d((10, 80, 40, 90), "license_plate"), _d((50, 80, 90, 90), "license_plate"),
            _d((210, 80, 250, 90), "license_plate"), _d((500, 500, 540, 510), "license_plate")]
    info = [PlateInfo("", 0.9, False), PlateInfo("AAA", 0.2, False), PlateInfo("", 0.8, False),
            PlateInfo("", 0.7, False)]
    boxes, labels, reads = track_inputs(build_frame_result(dets, (640, 480), info))
    assert labels == ["car", "car"] and reads == [Read("AAA", 0.2, False, None), None]


def _event(text: str, confidence: float, valid: bool) -> PlateEvent:
    return PlateEvent(1, "car", text, confidence, valid, None, 3, 3, 0.0, 1.0, 3, (0.0, 0.0, 10.0, 10.0), "ended")


def test_event_filter() -> None:
    """The default reports only format-valid plates with a mean confidence of at least 0.1 (the flag help's
    documented default); each condition can be relaxed on its own."""
    good, faint, invalid, edge = (_event("12가3456", 0.9, True), _event("12가3456", 0.05, True),
                                  _event("5", 0.9, False), _event("12가3456", 0.1, True))
    default = EventFilter()
    assert [default.keeps(e) for e in (good, faint, invalid, edge)] == [True, False, False, True]
    assert default.describe() == "not a valid plate format or confidence under 0.1"
    loose = EventFilter(min_confidence=0.0, include_invalid=True)
    assert all(loose.keeps(e) for e in (good, faint, invalid, edge)) and loose.describe() == "nothing"
    assert [EventFilter(0.5, True).keeps(e) for e in (good, faint, invalid, edge)] == [True, False, True, False]
    assert EventFilter(0.5, True).describe() == "confidence under 0.5"
