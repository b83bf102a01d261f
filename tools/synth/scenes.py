"""Synthetic street and parking scenes for the detector (car, license_plate, disabled_sticker).

Everything is drawn procedurally (OpenCV shapes and the plate renderer): a street or a parking lot,
one to five cars seen from the front or the back with a plate each, some with a disabled-parking
sticker (white wheelchair on a blue square) on the windscreen, poles and pedestrians in front,
night (dark, lamps and headlight glare) and rain (streaks, haze). Labels are computed from what is
really visible in the final image: every object owns its pixels in an id map, later objects (nearer
cars, occluders) take them over, and an object's box is the box of its visible pixels. A car needs
25% of itself visible, a plate or sticker 60%; a plate gets its text only when 97% of it is visible;
boxes smaller than ``MIN_SIZE`` are not labelled, and stickers under 6 px are not drawn at all.

YOLO label lines (class ids of data/classes/custom.names: 0 car, 1 license_plate, 2 disabled_sticker)::

    class_id cx cy w h [TEXT]

with the box centre and size relative to the image. The optional sixth token TEXT is this project's
extension: the plate's text in reading order (``12가3456``, ``서울12바3456``, ``京A12345``), present on
``license_plate`` lines whose plate is fully readable. Darknet ignores it; ``core.yolo_dataset`` reads it.

Command line::

    python -m tools.synth.scenes --count 2000 --out runs/scenes --seed 1 --size 416 --valid_fraction 0.1
    python -m tools.synth.scenes --demo data/images/demo.jpg   # the bundled demo image + demo.txt

The dataset layout is that of ``tools.synth.yolo_io`` (images/ with labels beside them, train.txt,
valid.txt, obj.names, obj.data).
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from core.errors import AlprError
from core.yolo_dataset import YoloBox, box_from_xyxy
from tools.synth.plates import KIND_WEIGHTS, KINDS, draw_plate, random_text
from tools.synth.yolo_io import CLASS_IDS, building_folder, split, write_dataset_files

CAR, PLATE, STICKER = CLASS_IDS["car"], CLASS_IDS["license_plate"], CLASS_IDS["disabled_sticker"]
MIN_VISIBLE = {CAR: 0.25, PLATE: 0.6, STICKER: 0.6}
MIN_SIZE = {CAR: (6, 6), PLATE: (6, 3), STICKER: (5, 5)}  # smallest labelled box, pixels (w, h)
MIN_STICKER_PX = 6  # smaller stickers are not drawn: nobody could tell them from a blue dot
TEXT_VISIBLE = 0.97

_PAINTS = (  # BGR car colours, by rough frequency on real roads
    (235, 235, 235), (240, 240, 240), (190, 190, 195), (170, 170, 170), (40, 40, 40), (25, 25, 30),
    (90, 90, 95), (40, 40, 170), (150, 80, 30), (60, 90, 40), (150, 180, 200), (30, 100, 200),
)


@dataclass(frozen=True)
class VehicleSpec:
    """Where and how to draw one vehicle (fractions of the image size); None fields are random."""

    x: float  # centre, 0..1 of the width
    bottom: float  # bottom edge, 0..1 of the height
    width: float  # 0..1 of the width
    view: str = "front"  # front | rear
    kind: str | None = None
    text: str | None = None
    sticker: bool = False
    paint: Tuple[int, int, int] | None = None
    foreign: bool = False  # a US/EU-style Latin plate: labelled license_plate, without text


@dataclass(frozen=True)
class SceneObject:
    """One labelled object: class, pixel box (x1, y1, x2, y2), plate text if readable."""

    class_id: int
    box: Tuple[float, float, float, float]
    text: str | None = None
    visible: float = 1.0


@dataclass
class Scene:
    image: np.ndarray
    objects: List[SceneObject] = field(default_factory=list)
    night: bool = False
    rain: bool = False
    context: str = "street"

    def yolo_boxes(self) -> List[YoloBox]:
        h, w = self.image.shape[:2]
        return [box_from_xyxy(o.class_id, *o.box, w, h, text=o.text) for o in self.objects]


@dataclass
class _Piece:
    class_id: int
    area: float
    text: str | None = None


_Part = Tuple[np.ndarray, np.ndarray, _Piece]  # mask, quad, piece in a vehicle's own canvas


# ----------------------------------------------------------------------------------------- backgrounds


def _noise_texture(rng: np.random.Generator, h: int, w: int, base: float, amp: float) -> np.ndarray:
    small = rng.normal(0, 1, (max(2, h // 6), max(2, w // 6))).astype(np.float32)
    tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * amp * 0.6
    tex += rng.normal(0, amp * 0.4, (h, w)).astype(np.float32)
    return base + tex


def _background(rng: np.random.Generator, w: int, h: int, context: str) -> Tuple[np.ndarray, int]:
    """The empty scene (BGR uint8) and the horizon row."""
    horizon = int(h * (rng.uniform(0.28, 0.45) if context == "street" else rng.uniform(0.12, 0.28)))
    img = np.empty((h, w, 3), np.float32)
    # sky
    t = np.linspace(0, 1, max(horizon, 1), dtype=np.float32)[:, None, None]
    top = np.array(rng.uniform((170, 120, 60), (250, 200, 150)), np.float32)
    low = np.array(rng.uniform((200, 190, 170), (250, 240, 230)), np.float32)
    img[:horizon] = top * (1 - t) + low * t
    # buildings on the horizon
    x = int(rng.integers(-40, 0))
    while x < w:
        bw = int(rng.uniform(0.08, 0.25) * w)
        bh = int(rng.uniform(0.3, 1.0) * horizon) if horizon > 4 else 0
        col = rng.uniform(70, 210, 3)
        y0 = horizon - bh
        img[max(y0, 0):horizon, max(x, 0):x + bw] = col
        win = rng.uniform(20, 120, 3) if rng.random() < 0.7 else rng.uniform(150, 230, 3)
        step = max(6, bw // 6)
        for wy in range(y0 + step // 2, horizon - step // 2, step):
            for wx in range(x + step // 3, x + bw - step // 2, step):
                cv2.rectangle(img, (wx, wy), (wx + step // 2, wy + step // 2), win.tolist(), -1)
        x += bw + int(rng.integers(0, 12))
    # ground: asphalt with texture
    g = float(rng.uniform(70, 130))
    ground = _noise_texture(rng, h - horizon, w, g, rng.uniform(4, 12))
    img[horizon:] = ground[..., None] * np.array(rng.uniform(0.95, 1.05, 3), np.float32)
    vx = w * rng.uniform(0.3, 0.7)
    paint = (rng.uniform(200, 240), rng.uniform(200, 240), rng.uniform(200, 240)) if rng.random() < 0.7 else (
        40, 190, 230)
    if context == "street":
        # sidewalk band and lane lines converging to a vanishing point on the horizon
        cv2.rectangle(img, (0, horizon), (w, horizon + max(2, int(0.03 * h))), (150, 150, 155), -1)
        for k in range(-3, 4):
            xb = vx + k * w * rng.uniform(0.3, 0.4)
            for s0 in np.arange(0.05, 1.0, 0.12):
                s1 = s0 + 0.06
                p0 = (int(vx + (xb - vx) * s0), int(horizon + (h - horizon) * s0))
                p1 = (int(vx + (xb - vx) * s1), int(horizon + (h - horizon) * s1))
                cv2.line(img, p0, p1, paint, max(1, int(4 * s1 * h / 416)), cv2.LINE_AA)
    else:
        # parking: stall lines in perspective and a wall at the back
        wall = tuple(rng.uniform(90, 180, 3))
        cv2.rectangle(img, (0, max(horizon - int(0.06 * h), 0)), (w, horizon), wall, -1)
        for row in (rng.uniform(0.15, 0.35), rng.uniform(0.55, 0.8)):
            y = int(horizon + (h - horizon) * row)
            cv2.line(img, (0, y), (w, y), paint, max(1, int(3 * h / 416)), cv2.LINE_AA)
            n = int(rng.integers(4, 9))
            for k in range(n + 1):
                xb = k * w / n
                xt = vx + (xb - vx) * (0.6 + 0.4 * row)
                y_top = int(y - (h - horizon) * 0.12 * row)
                cv2.line(img, (int(xt), y_top), (int(xb), y), paint, max(1, int(3 * h / 416)), cv2.LINE_AA)
    return np.clip(img, 0, 255).astype(np.uint8), horizon


# ----------------------------------------------------------------------------------------- vehicles


def _wheelchair(size: int) -> np.ndarray:
    """The disabled-parking sticker: a white wheelchair symbol on a blue square (BGR)."""
    s = max(size, 4)
    img = np.empty((s, s, 3), np.uint8)
    img[:] = (160, 80, 0)
    th = max(1, int(s * 0.08))
    white = (255, 255, 255)
    cv2.rectangle(img, (0, 0), (s - 1, s - 1), white, max(1, s // 24))
    cv2.circle(img, (int(s * 0.46), int(s * 0.2)), max(1, int(s * 0.085)), white, -1, cv2.LINE_AA)
    cv2.line(img, (int(s * 0.44), int(s * 0.32)), (int(s * 0.44), int(s * 0.58)), white, th, cv2.LINE_AA)
    cv2.line(img, (int(s * 0.44), int(s * 0.43)), (int(s * 0.66), int(s * 0.43)), white, th, cv2.LINE_AA)
    cv2.line(img, (int(s * 0.44), int(s * 0.58)), (int(s * 0.7), int(s * 0.58)), white, th, cv2.LINE_AA)
    cv2.line(img, (int(s * 0.7), int(s * 0.58)), (int(s * 0.8), int(s * 0.8)), white, th, cv2.LINE_AA)
    cv2.ellipse(img, (int(s * 0.42), int(s * 0.66)), (int(s * 0.21), int(s * 0.21)), 0, -60, 200, white,
                max(1, int(s * 0.06)), cv2.LINE_AA)
    return img


def _draw_vehicle(rng: np.random.Generator, spec: VehicleSpec, cw: int, charset: str,
                  night: bool) -> Tuple[np.ndarray, np.ndarray, List[_Part], list]:
    """Draw a vehicle front-on in its own canvas.

    Returns (image, alpha, parts, lights): parts are (mask, quad, piece) for the plate and the
    sticker in canvas coordinates; lights are (x, y, radius, BGR) glows for night scenes."""
    style = rng.choice(["sedan", "suv", "van"], p=[0.55, 0.3, 0.15])
    ch = int(cw * {"sedan": 0.72, "suv": 0.82, "van": 0.95}[style])
    img = np.zeros((ch, cw, 3), np.uint8)
    alpha = np.zeros((ch, cw), np.uint8)
    colour = spec.paint if spec.paint is not None else _PAINTS[int(rng.integers(len(_PAINTS)))]
    paint = np.array(colour, np.float32)
    paint = np.clip(paint * rng.uniform(0.9, 1.08), 0, 255)
    dark = tuple(float(c) for c in paint * 0.6)
    body = tuple(float(c) for c in paint)
    cab_top = 0.04
    belt = {"sedan": 0.47, "suv": 0.5, "van": 0.52}[style]
    # wheels
    for x0 in (0.06, 0.76):
        cv2.rectangle(img, (int(cw * x0), int(ch * 0.78)), (int(cw * (x0 + 0.18)), ch - 1), (25, 25, 25), -1)
        cv2.rectangle(alpha, (int(cw * x0), int(ch * 0.78)), (int(cw * (x0 + 0.18)), ch - 1), 255, -1)
    # lower body with rounded corners
    r = int(cw * 0.06)
    y0, y1 = int(ch * (belt - 0.02)), int(ch * 0.92)
    for target, col in ((img, body), (alpha, 255)):
        cv2.rectangle(target, (0, y0 + r), (cw - 1, y1), col, -1)
        cv2.rectangle(target, (r, y0), (cw - 1 - r, y1), col, -1)
        cv2.circle(target, (r, y0 + r), r, col, -1, cv2.LINE_AA)
        cv2.circle(target, (cw - 1 - r, y0 + r), r, col, -1, cv2.LINE_AA)
    # cabin and glass
    top_w = {"sedan": 0.6, "suv": 0.7, "van": 0.82}[style]
    cab = np.int32([[cw * (0.5 - top_w / 2), ch * cab_top], [cw * (0.5 + top_w / 2), ch * cab_top],
                    [cw * 0.95, ch * belt], [cw * 0.05, ch * belt]])
    cv2.fillConvexPoly(img, cab, body, cv2.LINE_AA)
    cv2.fillConvexPoly(alpha, cab, 255, cv2.LINE_AA)
    inset = np.float32([[0.035, 0.025], [-0.035, 0.025], [-0.05, -0.02], [0.05, -0.02]])
    inset *= np.float32([cw, ch])
    glass = (cab.astype(np.float32) + inset).astype(np.int32)
    tint = np.array(rng.uniform((40, 35, 30), (90, 80, 70)), np.float32)
    gx0, gy0 = glass[:, 0].min(), glass[:, 1].min()
    gx1, gy1 = glass[:, 0].max(), glass[:, 1].max()
    gmask = np.zeros((ch, cw), np.uint8)
    cv2.fillConvexPoly(gmask, glass, 255, cv2.LINE_AA)
    grad = np.linspace(1.35, 0.8, gy1 - gy0 + 1, dtype=np.float32)[:, None, None]
    region = img[gy0:gy1 + 1, gx0:gx1 + 1].astype(np.float32)
    gm = gmask[gy0:gy1 + 1, gx0:gx1 + 1, None].astype(np.float32) / 255
    glass_col = np.clip(tint * grad, 0, 255)
    img[gy0:gy1 + 1, gx0:gx1 + 1] = (region * (1 - gm) + glass_col * gm).astype(np.uint8)
    # a reflection streak on the glass
    if not night and rng.random() < 0.7:
        refl = np.zeros((ch, cw), np.uint8)
        xa = int(rng.uniform(gx0, gx1))
        pts = np.int32([[xa, gy0], [xa + cw * 0.08, gy0], [xa - cw * 0.05, gy1], [xa - cw * 0.13, gy1]])
        cv2.fillConvexPoly(refl, pts, 255)
        a = (refl & gmask).astype(np.float32)[..., None] / 255 * rng.uniform(0.15, 0.35)
        img[:] = np.clip(img.astype(np.float32) * (1 - a) + 255 * a, 0, 255).astype(np.uint8)
    parts: List[Tuple[np.ndarray, np.ndarray, _Piece]] = []
    lights = []
    # lights, grille, bumper
    ly0, ly1 = int(ch * (belt + 0.03)), int(ch * (belt + 0.12))
    front = spec.view == "front"
    lamp = (235, 245, 250) if front else (30, 30, 200)
    for x0, x1 in ((0.04, 0.22), (0.78, 0.96)):
        cv2.rectangle(img, (int(cw * x0), ly0), (int(cw * x1), ly1), lamp, -1, cv2.LINE_AA)
        cv2.rectangle(img, (int(cw * x0), ly0), (int(cw * x1), ly1), dark, max(1, cw // 150), cv2.LINE_AA)
        glow = (200, 240, 255) if front else (40, 40, 255)
        lights.append((cw * (x0 + x1) / 2, (ly0 + ly1) / 2, cw * 0.12, glow))
    if front:
        cv2.rectangle(img, (int(cw * 0.3), ly0), (int(cw * 0.7), int(ch * (belt + 0.14))), (35, 35, 35), -1)
    bumper_y = int(ch * 0.74)
    cv2.rectangle(img, (int(cw * 0.02), bumper_y), (int(cw * 0.98), int(ch * 0.9)), dark, -1)
    # the plate
    if spec.foreign:
        text = None
        wmm = 520 if rng.random() < 0.5 else 305
        plate_w = cw * wmm / 1800.0 * rng.uniform(0.93, 1.05)
        plate = _foreign_plate(rng, wmm, max(plate_w, 8.0))
        bx1, by1, bx2, by2 = 0, 0, plate.shape[1], plate.shape[0]
    else:
        kind = KINDS[spec.kind] if spec.kind else _random_kind(rng, charset)
        text = spec.text or random_text(rng, kind)
        wmm = kind.size_mm[0]
        plate_w = cw * wmm / 1800.0 * rng.uniform(0.93, 1.05)
        scale = plate_w / wmm
        plate, (bx1, by1, bx2, by2) = draw_plate(rng, kind, text, px_per_mm=max(scale, 0.2))
    pw = int(round(plate_w * plate.shape[1] / (bx2 - bx1)))
    ph = max(2, int(round(pw * plate.shape[0] / plate.shape[1])))
    if pw < plate.shape[1]:
        f = pw / plate.shape[1]
        plate = cv2.resize(plate, (max(2, pw), ph), interpolation=cv2.INTER_AREA)
        bx1, by1, bx2, by2 = bx1 * f, by1 * f, bx2 * f, by2 * f
    cy = ch * (0.8 if front else 0.68) + rng.uniform(-0.02, 0.02) * ch
    px0 = int(round(cw / 2 - plate.shape[1] / 2))
    py0 = int(round(cy - plate.shape[0] / 2))
    py0 = max(0, min(py0, ch - plate.shape[0]))
    if plate.shape[0] > ch or plate.shape[1] > cw:  # a car too small to carry its plate: no plate
        return img, alpha, parts, lights
    img[py0:py0 + plate.shape[0], px0:px0 + plate.shape[1]] = plate
    quad = np.float32([[bx1, by1], [bx2, by1], [bx2, by2], [bx1, by2]]) + np.float32([px0, py0])
    pmask = np.zeros((ch, cw), np.uint8)
    cv2.fillConvexPoly(pmask, np.round(quad).astype(np.int32), 255)
    parts.append((pmask, quad, _Piece(PLATE, 0.0, text)))
    if night and not front:
        lights.append((cw / 2, py0 - 2, cw * 0.06, (200, 230, 255)))
    # the sticker, on the windscreen (front) or rear window
    if spec.sticker:
        s = int(cw * rng.uniform(0.075, 0.1))
        left = rng.random() < 0.5 if spec.view == "front" else False
        sx = int(gx0 + (gx1 - gx0) * (0.2 if left else 0.72))
        sy = int(gy1 - s - (gy1 - gy0) * rng.uniform(0.06, 0.15))
    if spec.sticker and s >= MIN_STICKER_PX and sx >= 0 and sy >= 0 and sx + s <= cw and sy + s <= ch:
        sticker = _wheelchair(s)
        region = img[sy:sy + s, sx:sx + s].astype(np.float32)
        img[sy:sy + s, sx:sx + s] = (region * 0.12 + sticker.astype(np.float32) * 0.88).astype(np.uint8)
        smask = np.zeros((ch, cw), np.uint8)
        smask[sy:sy + s, sx:sx + s] = 255
        squad = np.float32([[sx, sy], [sx + s, sy], [sx + s, sy + s], [sx, sy + s]])
        parts.append((smask, squad, _Piece(STICKER, 0.0)))
    # side mirrors
    for xm in (0.0, 0.93):
        p0, p1 = (int(cw * xm), int(ch * (belt - 0.12))), (int(cw * (xm + 0.07)), int(ch * (belt - 0.04)))
        cv2.rectangle(img, p0, p1, dark, -1)
        cv2.rectangle(alpha, p0, p1, 255, -1)
    return img, alpha, parts, lights


_LATIN = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def _foreign_plate(rng: np.random.Generator, width_mm: int, width_px: float) -> np.ndarray:
    """A plate of another country (EU 520x110 mm or US 305x152 mm), drawn 4x larger then reduced."""
    k = 4
    w = max(8, int(round(width_px))) * k
    h = int(w * (110 / 520 if width_mm == 520 else 0.5))
    bg = (235, 235, 235) if rng.random() < 0.7 else (40, 200, 245)  # white, or a yellow rear plate
    img = np.empty((h, w, 3), np.uint8)
    img[:] = np.clip(np.float32(bg) * rng.uniform(0.85, 1.05), 0, 255).astype(np.uint8)
    ink = (20, 20, 20) if rng.random() < 0.7 else tuple(float(c) for c in rng.uniform(0, 120, 3))
    n = int(rng.integers(5, 8))
    text = "".join(_LATIN[int(rng.integers(len(_LATIN)))] for _ in range(n))
    x0 = 0
    if width_mm == 520 and rng.random() < 0.7:  # the blue band with the country code
        x0 = int(w * 0.08)
        cv2.rectangle(img, (0, 0), (x0, h), (150, 60, 10), -1)
    elif width_mm != 520:  # US style: a state name across the top
        name = "".join(_LATIN[int(rng.integers(23))] for _ in range(int(rng.integers(4, 9))))
        cv2.putText(img, name, (int(w * 0.25), int(h * 0.2)), cv2.FONT_HERSHEY_SIMPLEX, h / 160, ink,
                    max(1, h // 60), cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
    scale = min((w - x0) * 0.88 / tw, h * (0.62 if width_mm == 520 else 0.45) / th)
    thick = max(1, int(scale * 2.2))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = (int(x0 + (w - x0 - tw) / 2), int((h + th) / 2 + (h * 0.08 if width_mm != 520 else 0)))
    cv2.putText(img, text, org, font, scale, ink, thick, cv2.LINE_AA)
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), ink, max(1, h // 40))
    return cv2.resize(img, (w // k, max(2, h // k)), interpolation=cv2.INTER_AREA)


def _random_kind(rng: np.random.Generator, charset: str):
    names = list(KIND_WEIGHTS[charset])
    p = np.array([KIND_WEIGHTS[charset][n] for n in names])
    return KINDS[names[int(rng.choice(len(names), p=p / p.sum()))]]


def _paste(scene: np.ndarray, owner: np.ndarray, img: np.ndarray, alpha: np.ndarray, h_mat: np.ndarray,
           oid: int, masks: Sequence[Tuple[np.ndarray, int]]) -> Dict[int, float]:
    """Warp a local canvas into the scene with homography ``h_mat``; update the id map; return the
    in-image pixel count of each id drawn (car alpha, then the masks, which lie on top)."""
    H, W = scene.shape[:2]
    ch, cw = alpha.shape
    corners = cv2.perspectiveTransform(np.float32([[[0, 0]], [[cw, 0]], [[cw, ch]], [[0, ch]]]), h_mat)[:, 0]
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    counts: Dict[int, float] = {}
    if x1 <= x0 or y1 <= y0:
        return counts
    t = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64) @ h_mat
    size = (x1 - x0, y1 - y0)
    wi = cv2.warpPerspective(img, t, size, flags=cv2.INTER_LINEAR)
    wa = cv2.warpPerspective(alpha, t, size, flags=cv2.INTER_LINEAR)
    a = wa.astype(np.float32)[..., None] / 255
    region = scene[y0:y1, x0:x1].astype(np.float32)
    scene[y0:y1, x0:x1] = (region * (1 - a) + wi.astype(np.float32) * a).astype(np.uint8)
    own = owner[y0:y1, x0:x1]
    sel = wa >= 128
    own[sel] = oid
    counts[oid] = float(sel.sum())
    for mask, mid in masks:
        wm = cv2.warpPerspective(mask, t, size, flags=cv2.INTER_LINEAR) >= 128
        own[wm] = mid
        counts[mid] = float(wm.sum())
    return counts


# ----------------------------------------------------------------------------------------- scene


def _occluders(rng: np.random.Generator, scene: np.ndarray, owner: np.ndarray, horizon: int) -> None:
    H, W = scene.shape[:2]
    for _ in range(int(rng.integers(1, 3))):
        kind = rng.choice(["pole", "person", "bollard"])
        col = tuple(float(c) for c in rng.uniform(20, 140, 3))
        base = int(rng.uniform(horizon + 0.3 * (H - horizon), H * 1.02))
        scale = (base - horizon) / max(H - horizon, 1)
        x = int(rng.uniform(0, W))
        layer = np.zeros((H, W), np.uint8)
        if kind == "pole":
            pw = max(2, int(W * 0.012 * scale + 2))
            cv2.rectangle(layer, (x, 0), (x + pw, base), 255, -1)
        elif kind == "person":
            ph = int((H - horizon) * 0.9 * scale + 10)
            pw = max(3, ph // 4)
            cv2.rectangle(layer, (x, base - int(ph * 0.85)), (x + pw, base), 255, -1)
            cv2.circle(layer, (x + pw // 2, base - int(ph * 0.92)), max(2, pw // 2), 255, -1)
        else:
            bw = max(3, int(W * 0.02 * scale + 2))
            cv2.rectangle(layer, (x, base - bw * 3), (x + bw, base), 255, -1)
        sel = layer > 0
        scene[sel] = col
        owner[sel] = -1


def _glow(scene: np.ndarray, x: float, y: float, radius: float, color: Tuple[int, int, int],
          gain: float) -> None:
    H, W = scene.shape[:2]
    r = max(2.0, radius)
    x0, x1 = int(max(0, x - 3 * r)), int(min(W, x + 3 * r))
    y0, y1 = int(max(0, y - 3 * r)), int(min(H, y + 3 * r))
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * r * r))[..., None] * gain
    region = scene[y0:y1, x0:x1].astype(np.float32)
    scene[y0:y1, x0:x1] = np.clip(region + g * np.float32(color), 0, 255).astype(np.uint8)


def random_vehicles(rng: np.random.Generator, n: int, horizon_frac: float, sticker_prob: float,
                    foreign_prob: float = 0.0) -> List[VehicleSpec]:
    """n vehicle placements between the horizon and the bottom of the image, nearer ones bigger."""
    specs = []
    for _ in range(n):
        bottom = rng.uniform(horizon_frac + 0.25 * (1 - horizon_frac), 1.08)
        depth = (bottom - horizon_frac) / (1 - horizon_frac)
        width = float(np.clip(depth * rng.uniform(0.45, 0.65), 0.06, 0.7))
        specs.append(VehicleSpec(
            x=float(rng.uniform(-0.05, 1.05)), bottom=float(bottom), width=width,
            view="front" if rng.random() < 0.55 else "rear", sticker=bool(rng.random() < sticker_prob),
            foreign=bool(rng.random() < foreign_prob),
        ))
    return specs


def render_scene(rng: np.random.Generator, width: int = 416, height: int = 416, charset: str = "kr",
                 vehicles: Sequence[VehicleSpec] | None = None, night: bool | None = None,
                 rain: bool | None = None, context: str | None = None, occluders: bool | None = None,
                 sticker_prob: float = 0.35, foreign_prob: float = 0.15) -> Scene:
    """One scene with its labels; None arguments are drawn at random from ``rng``."""
    if charset not in KIND_WEIGHTS:
        raise AlprError(f"unknown charset {charset!r}; expected kr or cn")
    context = context or ("street" if rng.random() < 0.5 else "parking")
    night = bool(rng.random() < 0.2) if night is None else night
    rain = bool(rng.random() < 0.15) if rain is None else rain
    occluders = bool(rng.random() < 0.35) if occluders is None else occluders
    scene, horizon = _background(rng, width, height, context)
    owner = np.full((height, width), -1, np.int32)
    if vehicles is None:
        n = int(rng.integers(1, 6))
        vehicles = random_vehicles(rng, n, horizon / height, sticker_prob, foreign_prob)
    pieces: Dict[int, _Piece] = {}
    drawn: Dict[int, float] = {}
    lights = []
    # far (higher bottom edge) first, so nearer vehicles cover farther ones
    for spec in sorted(vehicles, key=lambda s: s.bottom):
        cw = max(16, int(spec.width * width))
        img, alpha, parts, vlights = _draw_vehicle(rng, spec, cw, charset, night)
        ch = alpha.shape[0]
        # ground shadow
        cx, by = spec.x * width, spec.bottom * height
        axes = (int(cw * 0.55), max(2, int(ch * 0.06)))
        cv2.ellipse(scene, (int(cx), int(by - 0.02 * ch)), axes, 0, 0, 360, (30, 30, 30), -1, cv2.LINE_AA)
        # a little yaw: one side a bit taller than the other
        yaw = rng.uniform(-0.12, 0.12)
        src = np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]])
        dst = np.float32([[-cw / 2, -ch * (1 + yaw)], [cw / 2, -ch * (1 - yaw)], [cw / 2, 0], [-cw / 2, 0]])
        dst += np.float32([cx, by])
        h_mat = cv2.getPerspectiveTransform(src, dst)
        car_id = len(pieces)
        pieces[car_id] = _Piece(CAR, float(alpha.astype(bool).sum()) * _area_ratio(h_mat, cw, ch))
        masks = []
        for mask, quad, piece in parts:
            pid = len(pieces)
            q = cv2.perspectiveTransform(quad[:, None, :], h_mat)[:, 0]
            piece.area = float(abs(cv2.contourArea(q)))
            pieces[pid] = piece
            masks.append((mask, pid))
        drawn.update(_paste(scene, owner, img, alpha, h_mat, car_id, masks))
        for lx, ly, lr, lc in vlights:
            p = cv2.perspectiveTransform(np.float32([[[lx, ly]]]), h_mat)[0, 0]
            lights.append((p[0], p[1], lr, lc))
    if occluders:
        _occluders(rng, scene, owner, horizon)
    scene = _atmosphere(rng, scene, owner, pieces, lights, night, rain)
    objects = []
    for oid, piece in pieces.items():
        ys, xs = np.nonzero(owner == oid)
        if len(xs) == 0 or piece.area <= 0:
            continue
        visible = min(1.0, len(xs) / piece.area)
        x1, y1, x2, y2 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        min_w, min_h = MIN_SIZE[piece.class_id]
        if visible < MIN_VISIBLE[piece.class_id] or x2 - x1 < min_w or y2 - y1 < min_h:
            continue
        text = piece.text if piece.class_id == PLATE and visible >= TEXT_VISIBLE else None
        objects.append(SceneObject(piece.class_id, (x1, y1, x2, y2), text, round(visible, 3)))
    return Scene(scene, objects, night, rain, context)


def _area_ratio(h_mat: np.ndarray, cw: int, ch: int) -> float:
    q = cv2.perspectiveTransform(np.float32([[[0, 0]], [[cw, 0]], [[cw, ch]], [[0, ch]]]), h_mat)[:, 0]
    return abs(cv2.contourArea(q)) / float(cw * ch)


def _atmosphere(rng: np.random.Generator, scene: np.ndarray, owner: np.ndarray, pieces: Dict[int, _Piece],
                lights: list, night: bool, rain: bool) -> np.ndarray:
    H, W = scene.shape[:2]
    f = scene.astype(np.float32)
    if night:
        level = rng.uniform(0.18, 0.4)
        lit = np.full((H, W), level, np.float32)
        plates = np.isin(owner, [i for i, p in pieces.items() if p.class_id == PLATE])
        lit[plates] = min(1.0, level * 2.2)  # plates are lit or reflect headlights
        f *= lit[..., None] * np.float32([1.15, 1.0, 0.9])
        out = np.clip(f, 0, 255).astype(np.uint8)
        for x, y, r, col in lights:
            _glow(out, x, y, r, col, rng.uniform(0.5, 0.9))
        for _ in range(int(rng.integers(0, 3))):  # street lamps
            _glow(out, rng.uniform(0, W), rng.uniform(0, H * 0.3), W * 0.03, (150, 210, 255), 0.9)
        f = out.astype(np.float32) + rng.normal(0, rng.uniform(3, 8), (H, W, 3)).astype(np.float32)
    else:
        f = f * rng.uniform(0.8, 1.15) + rng.uniform(-15, 15)
        f += rng.normal(0, rng.uniform(1, 4), (H, W, 3)).astype(np.float32)
    if rain:
        haze = rng.uniform(0.1, 0.3)
        f = f * (1 - haze) + 150 * haze
        streaks = np.zeros((H, W), np.uint8)
        ang = math.radians(rng.uniform(-20, 20))
        length = rng.uniform(0.02, 0.05) * H
        for _ in range(int(W * H / 900)):
            x, y = rng.uniform(0, W), rng.uniform(0, H)
            end = (int(x + length * math.sin(ang)), int(y + length * math.cos(ang)))
            cv2.line(streaks, (int(x), int(y)), end, 255, 1, cv2.LINE_AA)
        a = streaks.astype(np.float32)[..., None] / 255 * rng.uniform(0.2, 0.4)
        f = f * (1 - a) + 220 * a
    out = np.clip(f, 0, 255).astype(np.uint8)
    if rain or rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.0))
    return out


# ----------------------------------------------------------------------------------------- writing


def write_yolo_label(path: Path, scene: Scene) -> None:
    path.write_text("".join(b.to_line() + "\n" for b in scene.yolo_boxes()), encoding="utf-8")


def _scene_job(args: Tuple[int, int, int, int, str, int]) -> Tuple[bytes, str]:
    seed, index, width, height, charset, quality = args
    scene = render_scene(np.random.default_rng([seed, index]), width, height, charset)
    ok, enc = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise AlprError("could not encode a scene")
    return enc.tobytes(), "".join(b.to_line() + "\n" for b in scene.yolo_boxes())


def write_scenes(out: str, count: int, seed: int, size: int = 416, valid_fraction: float = 0.1,
                 charset: str = "kr", workers: int = 0, progress: bool = True) -> Path:
    """Render ``count`` scenes into a new YOLO dataset folder ``out``."""
    from multiprocessing import get_context

    from tqdm import tqdm

    from tools.synth.fonts import find_fonts

    if count <= 0:
        raise AlprError("--count must be positive")
    if size < 32:
        raise AlprError("--size must be at least 32")
    find_fonts(charset)
    with building_folder(out) as tmp:
        (tmp / "images").mkdir()
        jobs = ((seed, i, size, size, charset, int(np.random.default_rng([seed, i, 1]).integers(60, 96)))
                for i in range(count))
        workers = workers or (os.cpu_count() or 1)
        names: List[str] = []
        pool = None
        if workers > 1:
            pool = get_context("fork" if sys.platform.startswith("linux") else "spawn").Pool(workers)
            results = pool.imap(_scene_job, jobs, chunksize=8)
        else:
            results = map(_scene_job, jobs)
        try:
            for i, (data, labels) in enumerate(tqdm(results, total=count, desc="scenes", unit="img",
                                                    disable=not progress)):
                name = f"scene_{seed}_{i:06d}"
                (tmp / "images" / f"{name}.jpg").write_bytes(data)
                (tmp / "images" / f"{name}.txt").write_text(labels, encoding="utf-8")
                names.append(f"images/{name}.jpg")
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        train, valid = split(names, valid_fraction, seed)
        write_dataset_files(tmp, train, valid)
    return Path(out)


DEMO_SEED = 20240521
DEMO_VEHICLES = (
    VehicleSpec(x=0.2, bottom=0.86, width=0.3, view="front", kind="kr_white", text="123가4567",
                paint=(235, 235, 235)),
    VehicleSpec(x=0.52, bottom=0.75, width=0.24, view="rear", kind="kr_ev", text="45누7812",
                paint=(60, 60, 65)),
    VehicleSpec(x=0.82, bottom=0.93, width=0.32, view="front", kind="kr_white", text="38다2057",
                sticker=True, paint=(40, 40, 170)),
)


def render_demo() -> Scene:
    """The bundled demo image: a clear daylight street, three cars with readable Korean plates
    (one light-blue EV plate) and one disabled-parking sticker."""
    rng = np.random.default_rng(DEMO_SEED)
    return render_scene(rng, 1280, 720, "kr", vehicles=DEMO_VEHICLES, night=False, rain=False,
                        context="street", occluders=False)


def write_demo(path: str) -> Scene:
    scene = render_demo()
    from core.cli import atomic_path

    ok, enc = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise AlprError("could not encode the demo image")
    with atomic_path(path, suffix=".jpg") as tmp:
        tmp.write_bytes(enc.tobytes())
    with atomic_path(Path(path).with_suffix(".txt")) as tmp:
        tmp.write_text("".join(b.to_line() + "\n" for b in scene.yolo_boxes()), encoding="utf-8")
    return scene


def main(argv: Sequence[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise AlprError(f"unexpected arguments: {' '.join(argv[1:])}")
    if f.demo:
        scene = write_demo(f.demo)
        print(f"wrote {f.demo} and {Path(f.demo).with_suffix('.txt')} ({len(scene.objects)} objects)")
        return
    if not f.out:
        raise AlprError("--out is required (or --demo PATH)")
    out = write_scenes(f.out, f.count, f.seed, f.size, f.valid_fraction, f.charset, f.workers)
    print(f"wrote {f.count} scenes to {out}")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_integer("count", 1000, "number of images")
    flags.DEFINE_string("out", None, "output folder (new or empty)")
    flags.DEFINE_integer("seed", 0, "random seed; the same seed gives the same dataset")
    flags.DEFINE_integer("size", 416, "image width and height in pixels")
    flags.DEFINE_float("valid_fraction", 0.1, "share of images listed in valid.txt")
    flags.DEFINE_enum("charset", "kr", ["kr", "cn"], "plate alphabet")
    flags.DEFINE_integer("workers", 0, "processes (0: one per CPU core)")
    flags.DEFINE_string("demo", None, "write the demo image (and its .txt labels) to this path and exit")


if __name__ == "__main__":
    from absl import app

    from core.cli import guarded

    _define_flags()
    app.run(guarded(main))
