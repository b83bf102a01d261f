"""A small IoU tracker with plate-read voting per track, so each vehicle's plate is reported once.

Use (per frame)::

    tracker = IouTracker(iou_threshold=0.3, max_missed=15, report_after=None)
    boxes, labels, reads = track_inputs(frame_result)        # vehicles, and plates with no vehicle
    ids, events = tracker.update(boxes, timestamp_s, labels, reads)
    ...
    events += tracker.flush()                                # end of stream: end every track

Matching: greedy on IoU (highest pair first) between the current boxes and each live track's predicted
box (last box moved by its recent velocity times the frames since it was seen), only between equal
labels, and only pairs with IoU >= ``iou_threshold``. Unmatched boxes start new tracks (ids 1, 2, ...);
a track not matched for more than ``max_missed`` consecutive updates ends.

Voting: each read of a track is (text, confidence, valid, ev). Reads that are format-valid win over
invalid ones when any exists; among the candidates the text with the highest *summed* confidence wins
(ties: more reads, then the text seen first). ``PlateEvent.confidence`` is the mean confidence of the
winning text's reads; ``ev`` is the majority of their EV flags (None when none had one).

Events: a track with at least ``min_reads`` reads is reported once, either when it ends or, when
``report_after`` is set, as soon as it has been seen in that many frames (later reads are still
counted but never re-reported). ``EventFilter`` then decides which events reach the user; with
``report_after``, a vote it would hold back is not reported early, and the track waits for its end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from core.errors import AlprError
from core.results import FrameResult
from core.types import Box


@dataclass(frozen=True)
class Read:
    """One plate read attached to a tracked box in one frame."""

    text: str
    confidence: float
    valid: bool = False
    ev: bool | None = None


@dataclass(frozen=True)
class PlateEvent:
    """A track's voted plate, reported once."""

    track_id: int
    label: str  # what was tracked: a vehicle class or the plate class
    text: str
    confidence: float  # mean confidence of the winning text's reads
    valid: bool
    ev: bool | None
    votes: int  # reads that gave the winning text
    reads: int  # all reads of the track
    first_seen: float  # timestamps (seconds) of the track's first and last frame so far
    last_seen: float
    frames: int  # frames the track was matched in
    box: Box  # the track's last box
    reason: str  # "ended", "frames" (report_after reached) or "flush"

    def to_json_dict(self) -> Dict[str, Any]:
        return {"event": "plate", "track": self.track_id, "class": self.label, "text": self.text,
                "confidence": round(self.confidence, 4), "valid": self.valid, "ev": self.ev,
                "votes": self.votes, "reads": self.reads, "first_seen": round(self.first_seen, 3),
                "last_seen": round(self.last_seen, 3), "frames": self.frames,
                "box": [round(float(v), 1) for v in self.box], "reason": self.reason}


def vote(reads: Sequence[Read]) -> Tuple[str, float, bool, bool | None, int] | None:
    """(text, mean confidence, valid, ev, votes) of the winning text, or None without reads."""
    if not reads:
        return None
    pool = [r for r in reads if r.valid] or list(reads)
    totals: Dict[str, List[float]] = {}
    order: Dict[str, int] = {}
    for i, r in enumerate(pool):
        totals.setdefault(r.text, []).append(float(r.confidence))
        order.setdefault(r.text, i)
    text = max(totals, key=lambda t: (sum(totals[t]), len(totals[t]), -order[t]))
    winners = [r for r in pool if r.text == text]
    ev_flags = [r.ev for r in winners if r.ev is not None]
    ev = None if not ev_flags else sum(ev_flags) * 2 > len(ev_flags)
    return text, float(np.mean(totals[text])), any(r.valid for r in winners), ev, len(winners)


@dataclass
class _Track:
    track_id: int
    label: str
    box: np.ndarray
    first_seen: float
    last_seen: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    frames: int = 1
    missed: int = 0
    reads: List[Read] = field(default_factory=list)
    reported: bool = False

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.missed + 1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) x1, y1, x2, y2 boxes -> (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class IouTracker:
    """Greedy IoU tracker with per-track plate voting (see the module docstring)."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 15, report_after: int | None = None,
                 min_reads: int = 1, velocity_smoothing: float = 0.5,
                 early_filter: EventFilter | None = None) -> None:
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.report_after = report_after
        # with report_after: a vote this filter would hold back is not reported early; the track stays
        # open for a better vote and is reported (or held back) when it ends
        self.early_filter = early_filter
        self.min_reads = int(min_reads)
        self.alpha = float(velocity_smoothing)
        self._tracks: List[_Track] = []
        self._next_id = 1

    @property
    def tracks(self) -> List[Tuple[int, str, Box]]:
        """(id, label, last box) of the live tracks."""
        return [(t.track_id, t.label, tuple(float(v) for v in t.box)) for t in self._tracks]  # type: ignore

    def update(self, boxes: np.ndarray, timestamp: float, labels: Sequence[str] | None = None,
               reads: Sequence[Read | None] | None = None) -> Tuple[List[int], List[PlateEvent]]:
        """Match this frame's boxes; returns the track id of each box and the events due now."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        n = len(boxes)
        labels = list(labels) if labels is not None else [""] * n
        reads = list(reads) if reads is not None else [None] * n
        if len(labels) != n or len(reads) != n:
            raise ValueError("boxes, labels and reads must have the same length")
        ids = [0] * n
        matched_tracks = set()
        if n and self._tracks:
            pred = np.stack([t.predicted() for t in self._tracks])
            iou = iou_matrix(boxes, pred)
            same = np.array([[lb == t.label for t in self._tracks] for lb in labels], bool)
            iou = np.where(same, iou, 0.0)
            flat = np.argsort(-iou, axis=None, kind="stable")
            used_boxes = set()
            for k in flat:
                i, j = divmod(int(k), len(self._tracks))
                if iou[i, j] < self.iou_threshold or iou[i, j] <= 0:
                    break
                if i in used_boxes or j in matched_tracks:
                    continue
                used_boxes.add(i)
                matched_tracks.add(j)
                self._match(self._tracks[j], boxes[i], timestamp, reads[i])
                ids[i] = self._tracks[j].track_id
        events: List[PlateEvent] = []
        survivors: List[_Track] = []
        for j, track in enumerate(self._tracks):
            if j not in matched_tracks:
                track.missed += 1
                if track.missed > self.max_missed:
                    ev = self._event(track, "ended")
                    if ev is not None:
                        events.append(ev)
                    continue
            survivors.append(track)
        self._tracks = survivors
        for i in range(n):
            if ids[i] == 0:
                track = _Track(self._next_id, labels[i], boxes[i].copy(), timestamp, timestamp)
                if reads[i] is not None:
                    track.reads.append(reads[i])
                self._next_id += 1
                self._tracks.append(track)
                ids[i] = track.track_id
        if self.report_after is not None:
            for track in self._tracks:
                if not track.reported and track.frames >= self.report_after:
                    ev = self._event(track, "frames")
                    if ev is not None:
                        events.append(ev)
        return ids, events

    def flush(self) -> List[PlateEvent]:
        """End every live track (end of the stream) and return the events due."""
        events = [ev for ev in (self._event(t, "flush") for t in self._tracks) if ev is not None]
        self._tracks = []
        return events

    def _match(self, track: _Track, box: np.ndarray, timestamp: float, read: Read | None) -> None:
        step = (box - track.box) / (track.missed + 1)
        track.velocity = self.alpha * step + (1 - self.alpha) * track.velocity
        track.box = box.copy()
        track.last_seen = timestamp
        track.frames += 1
        track.missed = 0
        if read is not None:
            track.reads.append(read)

    def _event(self, track: _Track, reason: str) -> PlateEvent | None:
        if track.reported or len(track.reads) < self.min_reads:
            return None
        voted = vote(track.reads)
        if voted is None:
            return None
        text, conf, valid, ev, votes = voted
        event = PlateEvent(track.track_id, track.label, text, conf, valid, ev, votes, len(track.reads),
                           track.first_seen, track.last_seen, track.frames,
                           tuple(float(v) for v in track.box), reason)  # type: ignore[arg-type]
        if reason == "frames" and self.early_filter is not None and not self.early_filter.keeps(event):
            return None
        track.reported = True
        return event


DEFAULT_MIN_CONFIDENCE = 0.1


def usable_min_confidence(value: float) -> bool:
    """Whether ``value`` can be an ``EventFilter`` threshold: within [0, 1] (NaN is not)."""
    return 0.0 <= value <= 1.0


@dataclass(frozen=True)
class EventFilter:
    """Which voted plates are reported: by default only format-valid ones with a mean confidence of at
    least ``DEFAULT_MIN_CONFIDENCE``.

    Why these defaults: reading the real crops of ``../shared`` with the shipped int8 readers, every
    format-invalid read was wrong (of 493 cn crops 9 with cn run 12, 3 with run 16; 1 of 14 kr), and of the cn
    reads under 0.1 confidence 16 of 17 were wrong with run 12, 13 of 15 with run 16
    (``python -m tools.event_filter_check`` prints the table)."""

    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    include_invalid: bool = False

    def __post_init__(self) -> None:
        if not usable_min_confidence(self.min_confidence):
            raise AlprError(f"--event_min_conf must be in [0, 1], got {self.min_confidence:g}")

    def keeps(self, event: PlateEvent | Read) -> bool:
        """Whether a voted plate (or a single read, for measuring the rule) is reported."""
        return event.confidence >= self.min_confidence and (event.valid or self.include_invalid)

    def describe(self) -> str:
        """What a held-back event failed, for the summary line."""
        parts = ([] if self.include_invalid else ["not a valid plate format"]) + (
            [f"confidence under {self.min_confidence:g}"] if self.min_confidence > 0 else [])
        return " or ".join(parts) or "nothing"



def track_inputs(frame: FrameResult) -> Tuple[np.ndarray, List[str], List[Read | None]]:
    """Boxes, labels and reads to track for one frame: every vehicle (with the best read among the plates
    assigned to it) and every plate read as some text that lies in no vehicle."""
    boxes: List[Box] = []
    labels: List[str] = []
    reads: List[Read | None] = []
    best: Dict[int, Read] = {}
    loose: List[Tuple[Box, str, Read]] = []
    for plate in frame.plates:
        if not plate.text:  # not read, or the reader decoded nothing: no vote (it made '' events)
            continue
        read = Read(str(plate.text), float(plate.confidence or 0.0), bool(plate.valid), plate.ev)
        if plate.vehicle is None:
            loose.append((plate.detection.box, plate.detection.class_name, read))
            continue
        cur = best.get(plate.vehicle)
        if cur is None or (read.valid, read.confidence) > (cur.valid, cur.confidence):
            best[plate.vehicle] = read
    for i, veh in enumerate(frame.vehicles):
        boxes.append(veh.box)
        labels.append(veh.class_name)
        reads.append(best.get(i))
    for box, label, read in loose:
        boxes.append(box)
        labels.append(label)
        reads.append(read)
    return np.asarray(boxes, np.float64).reshape(-1, 4), labels, reads
