"""Reader pre-processing (edge runtime, TF-free), as LPRNet_Pytorch does it.

BGR crop as OpenCV reads it -> resize to 94x24 (area-averaged where it shrinks: ``fit_size``)
-> (x - 127.5) * 0.0078125 -> NHWC float32.

Two-line plates (Korean commercial and old green plates, Chinese yellow rear plates) cannot be read by
18 horizontal CTC steps as they are: the top line would have to come out before the bottom line although
both span the whole width. They are *stitched* instead: the crop is cut between the lines (the quietest
row of the text band, by horizontal gradient energy) and the two lines are laid side by side, the top
line in the left ``TOP_WIDTH`` pixels. For the charsets in ``STRAIGHTEN_CHARSETS`` (Korean) a tilted
crop is first un-sheared so that its lines lie level (``line_shear``), in the runtime and in training
alike. A crop's aspect ratio alone cannot tell a two-line plate from a loosely cropped one-line plate
(they overlap between about 1.2 and 2.3), so a crop narrower than ``TWO_LINE_MAX_ASPECT`` is read both
ways and the reader keeps the better read (``candidate_inputs`` here, the choice in ``lprnet.reader``).
A loose crop is also read cut to its characters (``tighten``): measured with the shipped float16 readers
(1000 held-out rendered crops each), Korean 0.765 -> 0.790, Chinese 0.774 -> 0.832, the real Korean
crops of ../shared/data/kr_plates_dev 3 -> 6 of 14; the tight real Chinese crops of
../shared/data/cn_plates_dev are not cut (a 20 % height threshold cut 45 of them and cost
LPRNet_Pytorch's imported weights 2 of their 434 correct reads).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from core.errors import AlprError

INPUT_WIDTH = 94
INPUT_HEIGHT = 24
MEAN = 127.5
SCALE = 0.0078125
# crops at least this wide for their height are one-line plates; narrower ones may be two-line
TWO_LINE_MAX_ASPECT = 2.6
TOP_WIDTH = 40  # pixels of the 94 given to the top line of a stitched two-line plate
# A weak read of a narrow crop is retried with the line cut moved by these shares of the crop's height
# (``shifted_stitches``; session 35 in checkpoints/MODEL_CARD.md)
CUT_SHIFTS: Tuple[float, ...] = (-0.08, -0.04, 0.04, 0.08)
# share of a two-line plate's gradient energy above the line gap (see line_split_row)
SPLIT_ENERGY_ABOVE = (0.2, 0.45)
# vertical shears tried on a two-line crop before its line cut (``line_shear``): -max..max in this many steps
SHEAR_MAX = 0.35
SHEAR_STEPS = 29
# charsets whose two-line plates are straightened before the cut (``straightens``): measured better for the
# Korean reader and not for the Chinese one (model card, session 38). Matched by the charset's name, which for
# a charset file is its stem: a Korean charset file named otherwise is read and trained without it.
STRAIGHTEN_CHARSETS = frozenset({"kr"})
# the shears ``line_shear`` scores, smallest first so that a tie (narrow crops round neighbouring shears to
# the same row shifts) keeps the crop as level as it can; negative before positive at equal size
_SHEARS: Tuple[float, ...] = tuple(
    float(s) for s in sorted(np.linspace(-SHEAR_MAX, SHEAR_MAX, SHEAR_STEPS), key=lambda v: (round(abs(v), 9), v)))
# a crop whose characters leave this much of its width or height free is also read cut to them
TIGHT_MIN_CUT_X = 0.1
TIGHT_MIN_CUT_Y = 0.3


def _as_bgr(crop: np.ndarray) -> np.ndarray:
    arr = np.asarray(crop)
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise AlprError(f"a plate crop must be an HxWx3 BGR image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _grey(arr: np.ndarray) -> np.ndarray:
    """float32 [H, W]: the mean of a BGR image's channels, the values ``arr.astype(np.float32).mean(axis=2)``
    gives, in about a tenth of its time for uint8 images (their channel sums are exact integers, so summing in
    uint16 first and dividing in float32 rounds the same way), for the line cuts and text boxes that every
    check's view (``province_view``) and two-line stitch goes through."""
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        q = arr.astype(np.uint16)
        return (q[..., 0] + q[..., 1] + q[..., 2]).astype(np.float32) / np.float32(3)
    return arr.astype(np.float32).mean(axis=2)


def fit_size(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    """``arr`` resized to ``width`` x ``height``: each axis that shrinks is area-averaged, each that grows
    interpolated linearly.

    Linear interpolation alone (cv2.resize's default, which LPRNet_Pytorch uses) reads only the two
    nearest source pixels per output pixel: shrinking a 300-pixel-wide crop to 94 columns skips most of
    its pixels and aliases the strokes. Averaging the shrunk axis keeps them: with the readers trained on
    linear inputs, 2,000 held-out rendered crops each, int8, kr 0.904 -> 0.9255 and cn 0.881 -> 0.9135
    (model card, session 23; the stitched lines of two-line plates go through here too). Crops already
    at the size (the 94x24 CCPD crops) do not change.
    """
    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr
    if w >= width and h >= height:  # only shrinking: one pass, no rounding to uint8 in between
        return cv2.resize(arr, (width, height), interpolation=cv2.INTER_AREA)
    if w > width:
        arr = cv2.resize(arr, (width, h), interpolation=cv2.INTER_AREA)
    if h > height:
        arr = cv2.resize(arr, (arr.shape[1], height), interpolation=cv2.INTER_AREA)
    if arr.shape[:2] != (height, width):
        arr = cv2.resize(arr, (width, height), interpolation=cv2.INTER_LINEAR)
    return arr


def resize_crop(crop: np.ndarray) -> np.ndarray:
    """One BGR (or grey) uint8 crop -> uint8 [24, 94, 3] (``fit_size``)."""
    return fit_size(_as_bgr(crop), INPUT_WIDTH, INPUT_HEIGHT)


def line_split_row(crop: np.ndarray) -> int:
    """Row between the two lines of a two-line plate crop.

    Characters make strong horizontal gradients; the gap between the lines makes weak ones. The top
    line (smaller glyphs, fewer strokes) holds about a fifth to two fifths of a two-line plate's
    gradient energy, so the cut is the quietest row among those with ``SPLIT_ENERGY_ABOVE`` of the
    energy above them. Measured against the renderer's own line positions
    (``python -m tools.synth.line_truth``), this misplaced far fewer cuts than looking in a fixed
    fraction of the text band's rows, which put the cut above small top lines on loose crops.
    """
    arr = _as_bgr(crop)
    h = arr.shape[0]
    fallback = max(1, int(round(0.4 * h)))
    if h < 8:
        return fallback
    grey = _grey(arr)
    energy = np.abs(np.diff(grey, axis=1)).mean(axis=1)
    k = max(1, h // 48)
    energy = np.convolve(energy, np.ones(2 * k + 1, np.float32) / (2 * k + 1), mode="same")
    total = float(energy.sum())
    if total <= 0:
        return fallback
    above = np.cumsum(energy) / total
    lo, hi = SPLIT_ENERGY_ABOVE
    rows = np.nonzero((above >= lo) & (above <= hi))[0]
    if rows.size == 0:
        return fallback
    return min(h - 1, int(rows[np.argmin(energy[rows])]) + 1)


def _ink_box(part: np.ndarray) -> Tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the characters in one line of a plate: the columns and rows whose gradient
    energy reaches a quarter of the strongest, with a margin of a tenth of the line's height."""
    h, w = part.shape[:2]
    if h < 4 or w < 4:
        return 0, 0, w, h
    grey = _grey(part)
    gx = np.abs(np.diff(grey, axis=1))
    cols = np.convolve(gx.mean(axis=0), np.ones(3, np.float32) / 3, mode="same")
    rows = np.convolve(gx.mean(axis=1), np.ones(3, np.float32) / 3, mode="same")
    xs = np.nonzero(cols >= 0.25 * float(cols.max()))[0] if cols.max() > 0 else np.array([], int)
    ys = np.nonzero(rows >= 0.25 * float(rows.max()))[0] if rows.max() > 0 else np.array([], int)
    if xs.size < 2 or ys.size < 2:
        return 0, 0, w, h
    return _with_margin(xs, ys, w, h, x_end=2)  # column i of the gradient lies between pixels i and i + 1


def _with_margin(xs: np.ndarray, ys: np.ndarray, w: int, h: int, x_end: int) -> Tuple[int, int, int, int]:
    """The box from the first to the last of the selected columns ``xs`` and rows ``ys`` (``x_end``: one
    past the last column, in pixels) widened by a tenth of its height; the whole part when that is tiny."""
    m = max(1, int(0.1 * (ys[-1] - ys[0] + 1)))
    x0, x1 = max(0, int(xs[0]) - m), min(w, int(xs[-1]) + x_end + m)
    y0, y1 = max(0, int(ys[0]) - m), min(h, int(ys[-1]) + 1 + m)
    if x1 - x0 < 4 or y1 - y0 < 3:
        return 0, 0, w, h
    return x0, y0, x1, y1


def _text_box(part: np.ndarray) -> Tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the characters in a plate crop or one of its lines, from "corner" energy: the
    smaller of the local horizontal and vertical gradients (3x3 means). Glyph strokes meet and turn,
    so they have both; a plate's rim, a frame's edge or a bumper line has one only, and ``_ink_box``
    (horizontal gradients alone) let them stretch the box to the whole plate and the car body above
    it. Rows: those whose 90th percentile reaches 0.4 of the strongest row's (strokes need to cross a
    tenth of the columns; the mean let textured car paint in); columns: within those rows, a mean of a
    quarter of the strongest column's; a margin of a tenth of the text's height. For one line at a
    time: on a whole two-line plate the small top line can fall below the threshold."""
    h, w = part.shape[:2]
    if h < 4 or w < 4:
        return 0, 0, w, h
    grey = _grey(part)
    gx = np.zeros_like(grey)
    gy = np.zeros_like(grey)
    gx[:, 1:] = np.abs(np.diff(grey, axis=1))
    gy[1:] = np.abs(np.diff(grey, axis=0))
    corner = np.minimum(cv2.blur(gx, (3, 3)), cv2.blur(gy, (3, 3)))
    rows = np.convolve(np.percentile(corner, 90, axis=1), np.ones(3, np.float32) / 3, mode="same")
    if rows.max() <= 0:
        return 0, 0, w, h
    ys = np.nonzero(rows >= 0.4 * float(rows.max()))[0]
    if ys.size < 2:
        return 0, 0, w, h
    cols = np.convolve(corner[ys[0] : ys[-1] + 1].mean(axis=0), np.ones(3, np.float32) / 3, mode="same")
    if cols.max() <= 0:
        return 0, 0, w, h
    xs = np.nonzero(cols >= 0.25 * float(cols.max()))[0]
    return _with_margin(xs, ys, w, h, x_end=1)


def stitch_two_lines(crop: np.ndarray, straighten: bool = False) -> np.ndarray:
    """A two-line plate crop -> uint8 [24, 94, 3] with the top line left of the bottom line; with
    ``straighten``, the crop's character rows are made horizontal first (``straightened``).

    Each line is cut to its characters (``_text_box``) first: the top line of a two-line plate is
    short and centred, and uncut its small region name would shrink to a few pixels. The cut used to
    be ``_ink_box``'s, which kept the car body and the plate's rim: against the renderer's glyph boxes
    (``tools.synth.line_truth``, 150 plates a kind) the top line's box overlapped by IoU 0.21 / 0.29 /
    0.38 (cn_yellow2 / kr_yellow2 / kr_green2), now 0.29 / 0.39 / 0.61. Readers trained on the old
    cut read two-line plates worse with this one: retrain or fine-tune them."""
    arr = _as_bgr(crop)
    if straighten:
        arr = straightened(arr)
    if arr.shape[0] < 2:  # nothing to cut: both halves are the whole (degenerate) crop
        arr = np.concatenate([arr, arr])
    return _stitch_at(arr, _line_cut(arr))


def line_shear(crop: np.ndarray) -> float:
    """The vertical shear ``s`` that best lines up a plate's character rows: a tilted or obliquely seen
    two-line plate has no straight row between its lines, and a horizontal cut clips one of them.

    Projection-profile sharpness: each column's horizontal gradient energy is moved up or down by
    ``s * (x - centre)`` rows, and the ``s`` of ``SHEAR_STEPS`` from ``-SHEAR_MAX`` to ``SHEAR_MAX`` whose
    row sums have the largest sum of squares wins (of tied ones the smallest in size; 0 on crops under 8 rows or
    3 columns).
    ``straightened`` undoes it. Against the renderer's line positions (``tools.synth.line_truth``) it
    raised the share of near-perfect cuts from 0.81-0.90 to 0.94-0.97 (model card, session 38)."""
    arr = _as_bgr(crop)
    h, w = arr.shape[:2]
    if h < 8 or w < 3:
        return 0.0
    energy = np.abs(np.diff(_grey(arr), axis=1)).ravel()
    xs = np.arange(w - 1, dtype=np.float64) - (w - 2) / 2.0
    rows = np.arange(h, dtype=np.int64)[:, None]
    best, best_score = 0.0, -1.0
    for s in _SHEARS:
        shift = np.round(s * xs).astype(np.int64)
        profile = np.bincount((rows - shift[None, :] + shift.max()).ravel(), weights=energy)
        score = float(np.dot(profile, profile))
        if score > best_score:
            best, best_score = s, score
    return best


def unshear(crop: np.ndarray, shear: float) -> np.ndarray:
    """``crop`` with pixel (x, y) taken from (x, y + shear * (x - centre)): ``line_shear``'s shear undone."""
    if shear == 0.0:
        return crop
    h, w = crop.shape[:2]
    m = np.array([[1.0, 0.0, 0.0], [shear, 1.0, -shear * (w - 1) / 2.0]], np.float32)
    return cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def straightened(crop: np.ndarray) -> np.ndarray:
    """A two-line crop with its character rows made horizontal (``line_shear``, ``unshear``)."""
    return unshear(crop, line_shear(crop))


def _line_cut(arr: np.ndarray) -> int:
    return min(max(1, line_split_row(arr)), arr.shape[0] - 1)


def _stitch_at(arr: np.ndarray, cut: int) -> np.ndarray:
    parts = []
    for part, width in ((arr[:cut], TOP_WIDTH), (arr[cut:], INPUT_WIDTH - TOP_WIDTH)):
        x0, y0, x1, y1 = _text_box(part)
        parts.append(fit_size(part[y0:y1, x0:x1], width, INPUT_HEIGHT))
    return np.concatenate(parts, axis=1)


def two_line_aspect(height: float, width: float) -> bool:
    """Whether a box of this size is narrow enough to be a two-line plate (its aspect alone)."""
    return width < TWO_LINE_MAX_ASPECT * height


def may_be_two_lines(crop: np.ndarray) -> bool:
    h, w = np.asarray(crop).shape[:2]
    return h >= 8 and two_line_aspect(h, w)


def straightens(charset_name: str) -> bool:
    """Whether a reader of this charset reads (and trains on) straightened two-line stitches."""
    return charset_name in STRAIGHTEN_CHARSETS


def layout_input(crop: np.ndarray, lines: int, straighten: bool = False) -> np.ndarray:
    """uint8 [24, 94, 3] of a crop whose line count is known (training data)."""
    return stitch_two_lines(crop, straighten) if lines == 2 else resize_crop(crop)


def tighten(crop: np.ndarray) -> Optional[np.ndarray]:
    """The crop cut to its characters (``_ink_box``) when that removes at least ``TIGHT_MIN_CUT_X`` of
    the width or ``TIGHT_MIN_CUT_Y`` of the height, else None.

    A loose detector box (car body around the plate) leaves the plate a fraction of the 94 input
    columns, too few of the 18 CTC steps for repeated digits (``3333`` needs a blank between each).
    """
    arr = _as_bgr(crop)
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = _ink_box(arr)
    if x1 - x0 > (1.0 - TIGHT_MIN_CUT_X) * w and y1 - y0 > (1.0 - TIGHT_MIN_CUT_Y) * h:
        return None
    return arr[y0:y1, x0:x1]


def shifted_stitches(crops: Sequence[np.ndarray], shifts: Sequence[float] = CUT_SHIFTS
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """Each crop stitched as a two-line plate with the line cut moved by each of ``shifts`` (shares of the
    crop's height): uint8 [M, 24, 94, 3] and each row's crop. Cuts that leave a line empty, or that round to
    the usual cut (``stitch_two_lines``, already read) or to an earlier shift's, are skipped.
    ``line_split_row`` misplaces some cuts, most on loose crops; the reader retries weak reads of narrow
    crops with these (``lprnet.reader.read_crops``, which passes their ``stitch_sources``)."""
    images: List[np.ndarray] = []
    owners: List[int] = []
    for i, c in enumerate(crops):
        arr = _as_bgr(c)
        h = arr.shape[0]
        if h < 2:
            continue
        base = _line_cut(arr)
        seen = {base}
        for shift in shifts:
            cut = int(round(base + shift * h))
            if 1 <= cut <= h - 1 and cut not in seen:
                seen.add(cut)
                images.append(_stitch_at(arr, cut))
                owners.append(i)
    if not images:
        return np.zeros((0, INPUT_HEIGHT, INPUT_WIDTH, 3), np.uint8), np.zeros((0,), np.int64)
    return np.stack(images), np.array(owners, np.int64)


def stitch_sources(crops: Sequence[np.ndarray], straighten: bool) -> List[np.ndarray]:
    """What each crop's two-line stitches are cut from: with ``straighten``, narrow crops straightened
    (``straightened``, once per crop for all its stitches), else the crops themselves."""
    if not straighten:
        return list(crops)
    return [straightened(_as_bgr(c)) if may_be_two_lines(c) else c for c in crops]


def candidate_inputs(crops: Sequence[np.ndarray], sources: Optional[Sequence[np.ndarray]] = None
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every crop as one-line input, narrow ones also stitched as two-line input, and loose ones also
    cut to their characters (``tighten``) as one-line input. ``sources``: what each crop's stitch is cut
    from (``stitch_sources``); the crops themselves when None.

    Returns uint8 [M, 24, 94, 3] and, for each row, the index of the crop it came from and its line count
    (1, or 2 for a stitch)."""
    images: List[np.ndarray] = []
    owners: List[int] = []
    lines: List[int] = []
    for i, c in enumerate(crops):
        images.append(resize_crop(c))
        owners.append(i)
        lines.append(1)
        if may_be_two_lines(c):
            images.append(stitch_two_lines(c if sources is None else sources[i]))
            owners.append(i)
            lines.append(2)
        tight = tighten(c)
        if tight is not None:
            images.append(resize_crop(tight))
            owners.append(i)
            lines.append(1)
    if not images:
        return np.zeros((0, INPUT_HEIGHT, INPUT_WIDTH, 3), np.uint8), np.zeros((0,), np.int64), np.zeros((0,), np.int64)
    return np.stack(images), np.array(owners, np.int64), np.array(lines, np.int64)


# The province view (lprnet.province): the left of a Chinese plate's characters, or the region of a Korean
# commercial plate, at about twice the resolution LPRNet's 94x24 input gives them, for a classifier of the
# province or region alone
PROVINCE_VIEW_WIDTH = 48
PROVINCE_VIEW_HEIGHT = 40
PROVINCE_SHARE_ONE_LINE = 0.26  # of a one-line plate's text box: the province, the letter and part of the dot
PROVINCE_SHARE_TOP_LINE = 0.62  # of a two-line plate's top line (province and letter, centred): the province
# Korean region (tools.synth.plates' layout, in mm): on a one-line plate it takes 40 (stacked) or 68 of a text
# box about 488 wide (0.08-0.14), on a two-line plate 85 of a centred top line of 161 (0.53), with its two digits
REGION_SHARE_ONE_LINE = 0.19
REGION_SHARE_TOP_LINE = 0.60
# the two digits after the region on a Korean two-line plate's top line: from 0.45 of its text box to its end
DIGITS_START_TOP_LINE = 0.45
# the letter after the province on a Chinese two-line plate's top line: from 0.5 of its text box to its end (the
# province takes 62 mm, a gap 60 and the letter 56 of the line's 178: the letter starts at 0.69)
LETTER_START_TOP_LINE = 0.5
# the Hangul letter of a Korean one-line plate: from 0.22 to 0.58 of its text box, whatever the format (rendered
# plates over 24 rows, 5th-95th percentiles of the letter's left and right edges: 2 digits 0.24-0.37 / 0.38-0.50,
# 3 digits 0.33-0.45 / 0.45-0.56, a region and 2 digits 0.33-0.44 / 0.44-0.55; model card, session 42)
HANGUL_VIEW_ONE_LINE = (0.22, 0.58)
# (one-line share, top-line share) of each charset's check
VIEW_SHARES: Dict[str, Tuple[float, float]] = {
    "cn": (PROVINCE_SHARE_ONE_LINE, PROVINCE_SHARE_TOP_LINE),
    "kr": (REGION_SHARE_ONE_LINE, REGION_SHARE_TOP_LINE),
}
# The runtime checks the province only where the text box the view is cut from has more rows than this (LPRNet's
# whole input): elsewhere the view holds no more of the glyph than the reader saw (model card, session 39)
PROVINCE_MIN_ROWS = INPUT_HEIGHT


def province_view(crop: np.ndarray, lines: int, min_rows: int = 0,
                  shares: Tuple[float, float] = VIEW_SHARES["cn"],
                  starts: Tuple[float, float] = (0.0, 0.0)) -> Optional[np.ndarray]:
    """uint8 [PROVINCE_VIEW_HEIGHT, PROVINCE_VIEW_WIDTH, 3]: the crop's text box (``_text_box``) from
    ``starts[0]`` to ``shares[0]`` of its width (the left share by default), for two-line plates the top
    line's (above ``line_split_row``'s cut; ``starts[1]`` to ``shares[1]``); None when that box is not more
    than ``min_rows`` rows tall."""
    arr = _as_bgr(crop)
    share, start = shares[0], starts[0]
    if lines == 2:
        if arr.shape[0] >= 2:
            arr = arr[:_line_cut(arr)]
        share, start = shares[1], starts[1]
    x0, y0, x1, y1 = _text_box(arr)
    if y1 - y0 <= min_rows:
        return None
    x_end = x0 + max(2, int(round(share * (x1 - x0))))
    x_start = min(x0 + int(round(start * (x1 - x0))), x_end - 2)
    return fit_size(arr[y0:y1, x_start:x_end], PROVINCE_VIEW_WIDTH, PROVINCE_VIEW_HEIGHT)


def normalize(batch_uint8: np.ndarray) -> np.ndarray:
    return ((batch_uint8.astype(np.float32) - MEAN) * SCALE).astype(np.float32)


# Test-time zoom (lprnet.reader.read_crops): each input is read as it is and scaled about its centre by
# each of these factors, and the passes' log-probabilities are averaged frame by frame. Chosen in session 31
# on the validation crops among +-2 px shifts, these zooms and both together (checkpoints/MODEL_CARD.md).
TTA_ZOOMS = (1.06, 0.94)


def zoom(batch: np.ndarray, scale: float) -> np.ndarray:
    """[N,H,W,C] images scaled by ``scale`` about their centre (bilinear, edges replicated), same size:
    pixel (x, y) of the result samples the input at ``c + (x - c) / scale`` per axis, ``c`` the centre."""
    batch = np.asarray(batch)
    if batch.ndim != 4:
        raise AlprError(f"zoom() needs a [N,H,W,C] batch, got shape {batch.shape}")
    n, h, w = batch.shape[:3]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    m = np.array([[scale, 0.0, (1.0 - scale) * cx], [0.0, scale, (1.0 - scale) * cy]], np.float64)
    out = np.empty_like(batch)
    for i in range(n):
        out[i] = cv2.warpAffine(batch[i], m, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE).reshape(batch.shape[1:])
    return out


# the STN's affine that leaves an image as it is (row-major 2x3)
IDENTITY_THETA = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], np.float32)


@lru_cache(maxsize=4)
def _sampling_grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Normalised x and y of the output pixels' centres, each [1, h*w] (row-major), float32; read-only."""
    ys = (2.0 * np.arange(h, dtype=np.float32) + 1.0) / h - 1.0
    xs = (2.0 * np.arange(w, dtype=np.float32) + 1.0) / w - 1.0
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    gx, gy = gx.reshape(1, -1), gy.reshape(1, -1)
    gx.flags.writeable = False
    gy.flags.writeable = False
    return gx, gy


def affine_warp(images: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Bilinear resampling of float ``images`` [N,H,W,C] through ``theta`` [N,6] (row-major 2x3 affines),
    the geometry of the STN's sampler (lprnet.model.AffineSampler), in numpy float32.

    Output pixel (x, y) has normalised coordinates gx = (2x+1)/W - 1, gy = (2y+1)/H - 1 (pixel centres);
    it samples the source at sx = t0 gx + t1 gy + t2, sy = t3 gx + t4 gy + t5, i.e. at pixel
    px = ((sx+1) W - 1) / 2, py = ((sy+1) H - 1) / 2, clamped to the image (border replicate).
    Exact bilinear weights (cv2.warpAffine would round positions to 1/32 pixel).
    """
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    t = np.asarray(theta, np.float32).reshape(n, 6, 1)
    gx, gy = _sampling_grid(h, w)
    sx = t[:, 0] * gx + t[:, 1] * gy + t[:, 2]
    sy = t[:, 3] * gx + t[:, 4] * gy + t[:, 5]
    px = np.clip(((sx + 1.0) * w - 1.0) * 0.5, 0.0, w - 1.0)
    py = np.clip(((sy + 1.0) * h - 1.0) * 0.5, 0.0, h - 1.0)
    x0f = np.floor(px)
    y0f = np.floor(py)
    wx = (px - x0f)[..., None]
    wy = (py - y0f)[..., None]
    x0 = x0f.astype(np.intp)
    y0 = y0f.astype(np.intp)
    i00 = y0 * w + x0 + (np.arange(n, dtype=np.intp) * (h * w))[:, None]  # rows of the [n*h*w, c] image
    i01 = i00 + (x0 < w - 1)  # x1 = min(x0 + 1, w - 1)
    down = (y0 < h - 1) * w  # y1 = min(y0 + 1, h - 1)
    flat = images.reshape(n * h * w, c)

    def pick(index: np.ndarray) -> np.ndarray:
        return np.take(flat, index, axis=0)  # several times faster than fancy indexing on small arrays

    ax = 1.0 - wx
    top = pick(i00) * ax + pick(i01) * wx
    bottom = pick(i00 + down) * ax + pick(i01 + down) * wx
    return (top * (1.0 - wy) + bottom * wy).reshape(n, h, w, c).astype(np.float32, copy=False)


def preprocess_batch(crops: Sequence[np.ndarray]) -> np.ndarray:
    """BGR crops of any size -> float32 [N, 24, 94, 3] in [-1, 1)."""
    if len(crops) == 0:
        return np.zeros((0, INPUT_HEIGHT, INPUT_WIDTH, 3), np.float32)
    return normalize(np.stack([resize_crop(c) for c in crops]))
