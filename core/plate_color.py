"""Plate background colour and the EV (electric / new-energy vehicle) flag, vectorised in HSV.

Which plates are EV
-------------------
- Korea (``region="kr"``): since 2017 electric and hydrogen cars carry a *light blue* plate with *black*
  characters. White (private), yellow (commercial), the old dark-green plates (white characters), the
  navy diplomatic plates (white characters) and the 2024 light-green corporate plates (black characters)
  are not EV.
  Rule: ``color == "blue" and dark_text``.
- China (``region="cn"``): ordinary plates are blue with *white* characters (not EV); new-energy vehicles
  (battery, plug-in hybrid, fuel cell) carry a *green gradient* plate with *black* characters. We flag
  those as EV: the product's EV flag means "registered as an electric / new-energy vehicle", which is what
  that plate certifies. Rule: ``color == "green" and dark_text``.
The text polarity (characters darker or lighter than the background) is what separates a Korean EV plate
from a blue plate with white characters (Chinese ordinary, Korean diplomatic), and a Chinese new-energy plate
from an old Korean green plate, so a colour error in the blue/cyan/green region alone cannot flip the flag.

How the background is found
---------------------------
1. The centre of the crop is kept (``TRIM_X`` of the width and ``TRIM_Y`` of the height removed on each side)
   so that the plate frame, bolts and the car body a loose detector box includes weigh little; it is resized
   to at most ``WORK_WIDTH`` pixels wide (area interpolation also averages sensor noise).
2. The pixels are split in two by Otsu's threshold on the grey level (not V: blue and white have nearly
   the same V). The text band is the set of rows with many bright/dark transitions; in its rows the runs
   touching the row's ends are dropped (car body beside a loosely cropped plate).
3. Which part is the background: characters are black or white, so when the two parts' median chroma
   (max - min channel) differ by ``CHROMA_GAP`` or more, the more colourful part is the background. When
   neither part is a clear majority of the text band (bright share within ``RATIO_SHARE``), a smaller gap
   decides too if it is a factor of ``CHROMA_RATIO`` (the more colourful part having ``CHROMA_FLOOR``): on a
   dim plate every chroma is small, and blur mixes the ink with the background, so the absolute gap shrinks
   while the ratio stays. Otherwise (white, grey or black plates) the larger part is the background
   (``MIN_BRIGHT_SHARE``); that polarity is only a guess, but it cannot make a plate EV (EV plates are coloured).
   ``dark_text`` is True when the background is the bright part.
4. Background statistics: the 90th percentile of saturation (``S_PERCENTILE``; a Chinese new-energy plate
   fades from nearly white at the top to green, so only its lower part is clearly green) and the
   saturation-weighted circular mean hue over the background pixels bright enough for their hue to mean
   something (``V >= MIN_V_FOR_HUE``). Saturation and hue do not change when the brightness is scaled, so
   an under- or over-exposed plate keeps its colour; the value is judged *relative* to the brightest pixels
   of the crop (99th percentile), which normalises the exposure.

Thresholds (OpenCV HSV; hue given in degrees 0-360, saturation and value in 0-1)
--------------------------------------------------------------------------------
- ``DARK_ABS`` = 0.08: a crop whose bright pixels (99th percentile of V) are below this is too dark to
  judge -> "other".
- ``DARK_REL`` = 0.25: a background whose median V is below 0.25 x the crop's bright level (its white
  characters) is black -> "other". A dim Chinese navy plate sits at 0.3-0.45, a white plate in shadow near 1.
- Hue bands for the background's hue: yellow [25, 75), green [75, 170), blue [170, 265); anything else
  (red, orange, magenta) -> "other". Then a band's saturation minimum (``S_MIN``): below it the plate is
  achromatic -> "white" (also grey, silver, and a white plate under a colour cast). Yellow 0.30, blue
  0.26, green 0.18 (the pale new-energy gradient; green casts are rarer). ``S_WHITE`` = 0.30 for the
  "other" band. The Korean EV light blue sits near 200-215 deg, Chinese blue near 215-230 deg, Chinese
  new-energy green near 110-150 deg, Korean yellow near 45-55 deg. The blue minimum is where a white plate
  under a strong blue cast meets a pale EV plate under a warm one: on the training renderer's crops
  (``tools.ev_benchmark``) 0.30 missed 11 % of EV plates for 2 % false ones, 0.26 balances the two
  (3-4 % each); lower lets white plates in.
- ``CHROMA_GAP`` = 0.06, ``CHROMA_RATIO`` = 1.1, ``CHROMA_FLOOR`` = 0.08, ``RATIO_SHARE`` = [0.35, 0.65],
  ``MIN_BRIGHT_SHARE`` = 0.5: see step 3. The ratio rule is limited to near-even splits because at night a
  near-black blue plate has less chroma than its white characters tinted by a cast (2 such real Chinese crops);
  where one part is a clear majority, the majority rule is the better guess.
- China, new-energy plates read from their bright part (``NE_*``): the gradient plate's pale top often
  makes step 3 choose the wrong polarity, so for ``region="cn"`` a crop whose *bright* part has a green
  hue (``NE_HUE`` [70, 185) deg), saturation >= ``NE_S_MIN`` = 0.14 and at least ``NE_CHROMA_RATIO`` = 0.8
  times the dark part's chroma, while the dark part is nearly achromatic (median chroma <=
  ``NE_DARK_CHROMA_MAX`` = 0.30, black characters), is a green plate with dark text whatever step 3
  said. Not when the dark part is the majority of the text band (bright share < ``NE_MIN_BRIGHT_SHARE`` =
  0.45) and strongly saturated (90th percentile >= ``NE_INK_S_MAX`` = 0.9): that is a blue plate whose
  white characters a green night cast has tinted (5 such crops in ../shared/data/cn_plates_dev).
These were chosen from the colours' published descriptions and checked on rendered plates under varied
lighting (exposure x0.5-1.3, gamma 0.7-1.4, red/blue channel casts of +-12 %, noise, blur, JPEG, loose
boxes with car body; tests/test_plate_color.py measures precision and recall) and on real crops: the 14
Korean dev crops (13 white, 1 yellow; none EV, one white plate under warm light reads "yellow") and the 493
Chinese dev crops (97 % "blue" with light characters, none EV). Known limits: night shots with strong
colour casts. On the test's rendered plates precision/recall are 1.0/1.0 (Korea; 0.997/1.0 before the
ratio rule). On the training-data renderer (tools.synth.plates: paler EV blue, per-channel casts of +-10 % on top of
brightness, contrast and offset changes, warm low light, glare; ``python -m tools.ev_benchmark --region kr
--count 2000 --seed 7200``): Korean EV 0.977/0.981, Chinese new-energy 1.000/0.980 (0.972/0.975 and
0.994/0.974 before the chroma-ratio polarity rule; before the ``NE_*`` rule and the blue minimum of 0.26, on
the renderer before its Chinese plate font: 0.981/0.885 and 1.00/0.816). The thresholds were chosen on seed
7100 (kr 0.982/0.963 with the ratio rule, 0.977/0.955 without). The remaining Korean errors are mostly
white plates under a blue cast and pale EV plates under a warm one, which colour alone cannot tell apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

COLORS = ("white", "yellow", "green", "blue", "other")
REGIONS = ("kr", "cn")

TRIM_X = 0.08
TRIM_Y = 0.15
WORK_WIDTH = 96
MIN_V_FOR_HUE = 0.15
DARK_ABS = 0.08
DARK_REL = 0.25
S_WHITE = 0.30
S_MIN = {"yellow": 0.30, "green": 0.18, "blue": 0.26}
NE_HUE = (70.0, 185.0)
NE_S_MIN = 0.14
NE_DARK_CHROMA_MAX = 0.30
NE_CHROMA_RATIO = 0.8
NE_INK_S_MAX = 0.9
NE_MIN_BRIGHT_SHARE = 0.45
CHROMA_GAP = 0.06
CHROMA_RATIO = 1.1
CHROMA_FLOOR = 0.08
RATIO_SHARE = (0.35, 0.65)
MIN_BRIGHT_SHARE = 0.5
S_PERCENTILE = 90
HUE_BANDS = (("yellow", 25.0, 75.0), ("green", 75.0, 170.0), ("blue", 170.0, 265.0))


@dataclass(frozen=True)
class PlateColor:
    """The background colour of one plate crop and what follows from it."""

    color: str  # one of COLORS
    ev: bool
    dark_text: bool  # characters darker than the background
    hue: float  # background hue in degrees [0, 360), nan when unknown
    saturation: float  # background median saturation, 0-1
    value: float  # background median value relative to the crop's bright level, 0-1


UNKNOWN = PlateColor("other", False, True, float("nan"), 0.0, 0.0)


def _hue_name(hue_deg: float) -> str:
    for name, lo, hi in HUE_BANDS:
        if lo <= hue_deg < hi:
            return name
    return "other"


def _is_ev(color: str, dark_text: bool, region: str) -> bool:
    if not dark_text:
        return False
    return color == ("blue" if region == "kr" else "green")


def _chroma_differs(c_bright: float, c_dark: float, bright_share: float) -> bool:
    """Whether one part is clearly the more colourful: by ``CHROMA_GAP``, or, when neither part is a clear
    majority (``RATIO_SHARE``), by the factor ``CHROMA_RATIO`` with at least ``CHROMA_FLOOR`` of chroma."""
    hi, lo = max(c_bright, c_dark), min(c_bright, c_dark)
    if hi - lo >= CHROMA_GAP:
        return True
    return RATIO_SHARE[0] <= bright_share <= RATIO_SHARE[1] and hi >= CHROMA_FLOOR and hi >= CHROMA_RATIO * lo


def _split(gray: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Bright and dark pixel masks inside the text band of a grayscale plate centre.

    Otsu splits the pixels into a bright and a dark part. The text band is the set of rows with many
    bright/dark transitions (at least half the busiest row's); in those rows the runs touching the row's
    ends are dropped (car body beside a loosely cropped plate), so car body above, below and beside the plate
    is not counted.
    """
    _, binary = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    binary = binary.astype(bool)
    changes = binary[:, 1:] != binary[:, :-1]
    per_row = changes.sum(axis=1)
    rows = per_row >= max(2, 0.5 * per_row.max()) if per_row.max() >= 2 else np.ones_like(per_row, bool)
    # interior: pixels after the first change and before the last change of their row
    cum = np.concatenate([np.zeros((changes.shape[0], 1), int), np.cumsum(changes, axis=1)], axis=1)
    interior = (cum > 0) & (cum < per_row[:, None])
    interior &= rows[:, None]
    if interior.sum() < 8:
        interior = np.broadcast_to(rows[:, None], binary.shape).copy()
    bright = interior & binary
    dark = interior & ~binary
    return bright, dark


def classify_plate_color(crop_bgr: np.ndarray, region: str = "kr") -> PlateColor:
    """Background colour name, EV flag and statistics of one BGR plate crop (uint8, HxWx3)."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    if crop_bgr is None or crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3:
        return UNKNOWN
    h, w = crop_bgr.shape[:2]
    y0, y1 = int(round(h * TRIM_Y)), h - int(round(h * TRIM_Y))
    x0, x1 = int(round(w * TRIM_X)), w - int(round(w * TRIM_X))
    if y1 - y0 < 2 or x1 - x0 < 2:
        y0, y1, x0, x1 = 0, h, 0, w
    if y1 - y0 < 2 or x1 - x0 < 2:
        return UNKNOWN
    centre = crop_bgr[y0:y1, x0:x1]
    if centre.dtype != np.uint8:
        centre = np.clip(centre, 0, 255).astype(np.uint8)
    cw, ch = centre.shape[1], centre.shape[0]
    if cw > WORK_WIDTH:
        new_h = max(2, int(round(ch * WORK_WIDTH / cw)))
        centre = cv2.resize(centre, (WORK_WIDTH, new_h), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(np.ascontiguousarray(centre), cv2.COLOR_BGR2HSV_FULL).reshape(-1, 3)
    hue = hsv[:, 0].astype(np.float32) * (360.0 / 256.0)
    sat = hsv[:, 1].astype(np.float32) / 255.0
    val_u8 = hsv[:, 2]
    val = val_u8.astype(np.float32) / 255.0

    bright = float(np.percentile(val, 99))
    if bright < DARK_ABS:
        return UNKNOWN
    gray = cv2.cvtColor(np.ascontiguousarray(centre), cv2.COLOR_BGR2GRAY)
    bright_mask, dark_mask = _split(gray)
    bright_px, dark_px = bright_mask.reshape(-1), dark_mask.reshape(-1)
    bright_share = int(bright_px.sum()) / max(1, int(bright_px.sum()) + int(dark_px.sum()))
    # chroma (max - min channel, 0-1): characters are black or white, the background may be coloured
    chroma = val * sat
    if not bright_px.any() or not dark_px.any():
        dark_text = True
    else:
        c_bright, c_dark = float(np.median(chroma[bright_px])), float(np.median(chroma[dark_px]))
        if _chroma_differs(c_bright, c_dark, bright_share):
            dark_text = c_bright >= c_dark
        else:  # white or grey plate (dark text) unless the bright part is clearly the minority
            dark_text = bright_share >= MIN_BRIGHT_SHARE
        if region == "cn":
            green = _new_energy(hue, sat, val, bright_px, dark_px, c_bright, c_dark, bright, bright_share)
            if green is not None:
                return green
    background = bright_px if dark_text else dark_px
    if not background.any():
        return UNKNOWN
    rel_v = min(1.0, float(np.median(val[background])) / bright)
    stats = _part_colour(hue, sat, val, background)
    if stats is None:
        return PlateColor("other", False, dark_text, float("nan"), 0.0, rel_v)
    mean_hue, s_med = stats
    if rel_v < DARK_REL:
        color = "other"
    else:
        color = _hue_name(mean_hue)
        if s_med < S_MIN.get(color, S_WHITE):
            color = "white"
    return PlateColor(color, _is_ev(color, dark_text, region), dark_text, mean_hue, s_med, rel_v)


def _part_colour(hue: np.ndarray, sat: np.ndarray, val: np.ndarray,
                 part: np.ndarray) -> Optional[Tuple[float, float]]:
    """(saturation-weighted circular mean hue in degrees, ``S_PERCENTILE`` of saturation) over the pixels
    of ``part`` bright enough for their hue to mean something; None when there are none."""
    usable = part & (val >= MIN_V_FOR_HUE)
    if not usable.any():
        return None
    s_part = sat[usable]
    weights = s_part + 1e-6
    rad = np.deg2rad(hue[usable])
    mean_hue = float(np.rad2deg(np.arctan2((np.sin(rad) * weights).sum(), (np.cos(rad) * weights).sum())))
    return mean_hue % 360.0, float(np.percentile(s_part, S_PERCENTILE))


def _new_energy(hue: np.ndarray, sat: np.ndarray, val: np.ndarray, bright_px: np.ndarray, dark_px: np.ndarray,
                c_bright: float, c_dark: float, bright: float, bright_share: float) -> Optional[PlateColor]:
    """The Chinese new-energy plate read from its bright part alone (see NE_* in the module docstring)."""
    stats = _part_colour(hue, sat, val, bright_px)
    if stats is None:
        return None
    if bright_share < NE_MIN_BRIGHT_SHARE and float(np.percentile(sat[dark_px], S_PERCENTILE)) >= NE_INK_S_MAX:
        return None  # a saturated dark majority: a coloured plate with light characters
    mean_hue, s_bright = stats
    if not (NE_HUE[0] <= mean_hue < NE_HUE[1] and s_bright >= NE_S_MIN and c_dark <= NE_DARK_CHROMA_MAX
            and c_bright >= NE_CHROMA_RATIO * c_dark):
        return None
    rel_v = min(1.0, float(np.median(val[bright_px])) / bright)
    return PlateColor("green", True, True, mean_hue, s_bright, rel_v)


def classify_plate_colors(crops: Sequence[np.ndarray | None], region: str = "kr") -> List[PlateColor]:
    """``classify_plate_color`` for each crop (None -> ``UNKNOWN``)."""
    return [UNKNOWN if c is None else classify_plate_color(c, region) for c in crops]


def is_ev(crop_bgr: np.ndarray, region: str = "kr") -> bool:
    """True when the crop is an EV plate of ``region`` (see the module docstring)."""
    return classify_plate_color(crop_bgr, region).ev
