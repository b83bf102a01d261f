"""Training data for the detector: numpy/OpenCV augmentation and a tf.data pipeline around it.

Samples come from ``core.yolo_dataset`` (a folder or a list file). Each training sample is, with
probability ``mosaic``, a mosaic of four images (each scaled, placed in one quadrant around a random
centre and cropped there), otherwise one image placed at a random scale, aspect and offset on a grey
canvas (Darknet's jitter). Then an optional horizontal flip and an HSV jitter (Darknet's hue,
saturation, exposure). Boxes are clipped to what stays visible; a box keeping less than
``min_visible`` of its area, or under 2 pixels wide or high, is dropped. Validation samples are
letterboxed exactly as ``core.yolo.letterbox_image`` does at inference. An image whose header reads but
whose pixels do not decode is trained as an empty grey image, with a warning (validation leaves it out).

The loader is pure numpy (``load_train_sample`` is deterministic for a given seed); tf.data runs it
through ``tf.numpy_function`` with parallel calls, so OpenCV's GIL-free decoding and resizing overlap.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from core.errors import AlprError
from core.keras.loss import LossSpec, build_targets
from core.yolo import LETTERBOX_FILL, letterbox_image
from core.yolo_dataset import YoloSample, load_dataset


@dataclass(frozen=True)
class AugmentConfig:
    mosaic: float = 0.5  # probability of a 4-image mosaic
    scale: Tuple[float, float] = (0.5, 1.3)  # size of the placed image relative to the canvas
    aspect_jitter: float = 0.2  # width/height stretched by up to +-20%
    flip: float = 0.5
    hue: float = 0.1  # fraction of the hue circle (Darknet's hue=)
    saturation: float = 1.5  # factor range [1/s, s]
    exposure: float = 1.5
    min_visible: float = 0.4


NO_AUGMENT = AugmentConfig(mosaic=0.0, scale=(1.0, 1.0), aspect_jitter=0.0, flip=0.0, hue=0.0,
                           saturation=1.0, exposure=1.0)


@dataclass(frozen=True)
class Record:
    """One image and its labels in pixels: [N,5] class, x1, y1, x2, y2."""

    path: str
    boxes: np.ndarray


def records_from(samples: Sequence[YoloSample], size_of=None) -> Tuple[List[Record], List[str]]:
    """Records with boxes in pixels, and one 'PATH: reason' per image left out because its header cannot
    be read (image sizes come from the headers; one bad file must not stop a training run, or crash it
    when a batch draws it hours later)."""
    out: List[Record] = []
    skipped: List[str] = []
    for s in samples:
        try:
            w, h = (size_of or _image_size)(str(s.image))
        except AlprError as exc:
            skipped.append(str(exc))
            continue
        if s.boxes:
            arr = np.array([(b.class_id, *b.to_xyxy(w, h)) for b in s.boxes], np.float32)
        else:
            arr = np.zeros((0, 5), np.float32)
        out.append(Record(str(s.image), arr))
    return out, skipped


def _image_size(path: str) -> Tuple[int, int]:
    """(width, height) from the file header (PIL opens lazily, no decode)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as exc:  # PIL: UnidentifiedImageError is an OSError
        raise AlprError(f"{path}: not a readable image ({exc})") from None


def load_records(source: str, num_classes: int) -> Tuple[List[Record], str]:
    """Records of a dataset folder or list file, and its one-line summary (bad lines reported there)."""
    ds = load_dataset(source, num_classes)
    records, skipped = records_from(ds.samples)
    summary = ds.summary()
    if skipped:
        summary += f", {len(skipped)} unreadable images left out (first: {skipped[0]})"
    if not records:
        raise AlprError(f"no readable image in {source}: {summary}")
    return records, summary


# Paths whose header was readable but whose pixels were not (a truncated or corrupt file), in the order
# met; each is warned about once per process. tf.data's loader threads share it, hence the lock. (The
# loader's numpy_function stays stateful=False: the warning is its only side effect.)
_UNDECODABLE: Dict[str, None] = {}
_UNDECODABLE_LOCK = threading.Lock()
UNDECODABLE_SIZE = 64  # side of the grey stand-in image


def undecodable(records: Sequence[Record]) -> List[str]:
    """Those of ``records``' paths (each once) whose pixels could not be decoded so far in this process."""
    return [path for path in dict.fromkeys(r.path for r in records) if path in _UNDECODABLE]


def _pixels(rec: Record) -> Tuple[np.ndarray, np.ndarray]:
    """The record's BGR image and boxes. An image that cannot be decoded becomes a grey background with no
    boxes and one warning: its header was read when the dataset was loaded, and a corrupt body found when
    a batch draws it hours into a run must not end the run."""
    img = cv2.imread(rec.path, cv2.IMREAD_COLOR)
    if img is not None:
        return img, rec.boxes
    with _UNDECODABLE_LOCK:
        first = rec.path not in _UNDECODABLE
        _UNDECODABLE[rec.path] = None
    if first:
        print(f"warning: {rec.path}: the image cannot be decoded; trained as an empty grey image", file=sys.stderr)
    return (np.full((UNDECODABLE_SIZE, UNDECODABLE_SIZE, 3), LETTERBOX_FILL, np.uint8),
            np.zeros((0, 5), np.float32))


def _place(canvas: np.ndarray, img: np.ndarray, boxes: np.ndarray, x0: int, y0: int,
           region: Tuple[int, int, int, int], min_visible: float) -> np.ndarray:
    """Paste ``img`` with its top-left at (x0, y0), clipped to ``region`` (x1, y1, x2, y2); boxes follow."""
    rx1, ry1, rx2, ry2 = region
    h, w = img.shape[:2]
    cx1, cy1 = max(x0, rx1), max(y0, ry1)
    cx2, cy2 = min(x0 + w, rx2), min(y0 + h, ry2)
    if cx2 > cx1 and cy2 > cy1:
        canvas[cy1:cy2, cx1:cx2] = img[cy1 - y0:cy2 - y0, cx1 - x0:cx2 - x0]
    if len(boxes) == 0:
        return boxes.reshape(0, 5)
    b = boxes.copy()
    b[:, [1, 3]] += x0
    b[:, [2, 4]] += y0
    area = (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], cx1, max(cx1, cx2))
    b[:, [2, 4]] = np.clip(b[:, [2, 4]], cy1, max(cy1, cy2))
    bw, bh = b[:, 3] - b[:, 1], b[:, 4] - b[:, 2]
    keep = (bw >= 2) & (bh >= 2) & (bw * bh >= min_visible * np.maximum(area, 1e-9))
    return b[keep]


def _scaled(img: np.ndarray, boxes: np.ndarray, sx: float, sy: float) -> Tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    nw, nh = max(1, int(round(w * sx))), max(1, int(round(h * sy)))
    interp = cv2.INTER_AREA if sx * sy < 1 else cv2.INTER_LINEAR
    out = cv2.resize(img, (nw, nh), interpolation=interp)
    b = boxes.copy()
    b[:, [1, 3]] *= nw / w
    b[:, [2, 4]] *= nh / h
    return out, b


def _random_scale(rng: np.random.Generator, img: np.ndarray, size: int, aug: AugmentConfig,
                  base: float) -> Tuple[float, float]:
    h, w = img.shape[:2]
    s = base * rng.uniform(*aug.scale) * size / max(h, w)
    a = rng.uniform(1 - aug.aspect_jitter, 1 + aug.aspect_jitter) if aug.aspect_jitter else 1.0
    return s * np.sqrt(a), s / np.sqrt(a)


def _single(rec: Record, size: int, rng: np.random.Generator, aug: AugmentConfig) -> Tuple[np.ndarray, np.ndarray]:
    img, boxes = _pixels(rec)
    sx, sy = _random_scale(rng, img, size, aug, 1.0)
    img, boxes = _scaled(img, boxes, sx, sy)
    h, w = img.shape[:2]
    if aug.scale == (1.0, 1.0) and aug.aspect_jitter == 0:  # no jitter: exactly the inference letterbox
        x0, y0 = (size - w) // 2, (size - h) // 2
    else:
        x0 = int(rng.integers(min(0, size - w), max(0, size - w) + 1))
        y0 = int(rng.integers(min(0, size - h), max(0, size - h) + 1))
    canvas = np.full((size, size, 3), LETTERBOX_FILL, np.uint8)
    return canvas, _place(canvas, img, boxes, x0, y0, (0, 0, size, size), aug.min_visible)


def _mosaic(recs: Sequence[Record], size: int, rng: np.random.Generator, aug: AugmentConfig
            ) -> Tuple[np.ndarray, np.ndarray]:
    canvas = np.full((size, size, 3), LETTERBOX_FILL, np.uint8)
    xc = int(rng.uniform(0.3, 0.7) * size)
    yc = int(rng.uniform(0.3, 0.7) * size)
    regions = ((0, 0, xc, yc), (xc, 0, size, yc), (0, yc, xc, size), (xc, yc, size, size))
    out = []
    for k, (rec, region) in enumerate(zip(recs, regions)):
        img, boxes = _pixels(rec)
        sx, sy = _random_scale(rng, img, size, aug, 0.6)
        img, boxes = _scaled(img, boxes, sx, sy)
        h, w = img.shape[:2]
        # The image's corner nearest the centre sits on the centre, with a small random overlap shift.
        x0 = xc - w if k in (0, 2) else xc
        y0 = yc - h if k in (0, 1) else yc
        out.append(_place(canvas, img, boxes, x0, y0, region, aug.min_visible))
    return canvas, np.concatenate(out, axis=0) if out else np.zeros((0, 5), np.float32)


def hsv_jitter(bgr: np.ndarray, rng: np.random.Generator, aug: AugmentConfig) -> np.ndarray:
    """Darknet-style colour jitter: hue shift, saturation and exposure factors in [1/f, f]."""
    if aug.hue == 0 and aug.saturation == 1 and aug.exposure == 1:
        return bgr
    dh = rng.uniform(-aug.hue, aug.hue) * 180.0
    fs = np.exp(rng.uniform(-np.log(aug.saturation), np.log(aug.saturation)))
    fv = np.exp(rng.uniform(-np.log(aug.exposure), np.log(aug.exposure)))
    x = np.arange(256, dtype=np.float32)
    lut_h = np.mod(x + dh, 180.0).astype(np.uint8)
    lut_s = np.clip(x * fs, 0, 255).astype(np.uint8)
    lut_v = np.clip(x * fv, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    h, s, v = cv2.split(hsv)
    hsv = cv2.merge([cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def augment(records: Sequence[Record], index: int, size: int, seed: int, aug: AugmentConfig
            ) -> Tuple[np.ndarray, np.ndarray]:
    """One augmented training sample: RGB uint8 [size,size,3] and labels [N,5] (class, cx, cy, w, h fractions)."""
    rng = np.random.default_rng(seed)
    if len(records) >= 4 and rng.uniform() < aug.mosaic:
        others = rng.choice(len(records), 3, replace=True)
        recs = [records[index]] + [records[int(i)] for i in others]
        order = rng.permutation(4)
        bgr, boxes = _mosaic([recs[i] for i in order], size, rng, aug)
    else:
        bgr, boxes = _single(records[index], size, rng, aug)
    if rng.uniform() < aug.flip:
        bgr = np.ascontiguousarray(bgr[:, ::-1])
        boxes = boxes.copy()
        boxes[:, [1, 3]] = size - boxes[:, [3, 1]]
    bgr = hsv_jitter(bgr, rng, aug)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), to_yolo(boxes, size, size)


def letterboxed(rec: Record, size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Validation sample: the inference letterbox (RGB uint8) and labels as fractions of the input."""
    img, boxes = _pixels(rec)
    rgb, lb = letterbox_image(img, size, size)
    b = boxes.copy()
    b[:, [1, 3]] = b[:, [1, 3]] * lb.scale_x + lb.pad_x
    b[:, [2, 4]] = b[:, [2, 4]] * lb.scale_y + lb.pad_y
    return rgb, to_yolo(b, size, size)


def to_yolo(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    """[N,5] class, x1, y1, x2, y2 pixels -> class, cx, cy, w, h fractions."""
    b = np.asarray(boxes, np.float32).reshape(-1, 5)
    out = np.empty_like(b)
    out[:, 0] = b[:, 0]
    out[:, 1] = (b[:, 1] + b[:, 3]) / 2 / w
    out[:, 2] = (b[:, 2] + b[:, 4]) / 2 / h
    out[:, 3] = (b[:, 3] - b[:, 1]) / w
    out[:, 4] = (b[:, 4] - b[:, 2]) / h
    return out


def train_example(records: Sequence[Record], index: int, seed: int, spec: LossSpec, aug: AugmentConfig
                  ) -> Tuple[np.ndarray, ...]:
    """Network input (float32 [S,S,3] in [0,1]), one target per head, and the truths [max_boxes, 4]."""
    size = spec.input_size[0]
    rgb, labels = augment(records, index, size, seed, aug)
    targets, truths = build_targets(labels, spec)
    return (rgb.astype(np.float32) * np.float32(1 / 255.0), *targets, truths)


def make_dataset(records: Sequence[Record], spec: LossSpec, aug: AugmentConfig, batch_size: int, epoch: int,
                 seed: int, workers: int = 2, shuffle: bool = True):
    """tf.data pipeline of one epoch: (images, (targets per head..., truths)) batches, last partial dropped."""
    import tensorflow as tf

    if spec.input_size[0] != spec.input_size[1]:
        raise AlprError("training needs a square input size")
    n = len(records)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    seeds = np.random.default_rng([seed, epoch, 1]).integers(0, 2 ** 31 - 1, n)
    n_heads = len(spec.heads)
    size = spec.input_size[0]

    def load(i, s):
        return train_example(records, int(i), int(s), spec, aug)

    out_types = [tf.float32] * (n_heads + 2)

    def tf_load(i, s):
        parts = tf.numpy_function(load, [i, s], out_types, stateful=False)
        parts[0].set_shape([size, size, 3])
        for k, head in enumerate(spec.heads):
            parts[1 + k].set_shape([head.grid[0], head.grid[1], len(head.anchors), 5 + spec.num_classes])
        parts[-1].set_shape([spec.max_boxes, 4])
        return parts[0], tuple(parts[1:])

    ds = tf.data.Dataset.from_tensor_slices((order.astype(np.int64), seeds.astype(np.int64)))
    ds = ds.map(tf_load, num_parallel_calls=max(1, workers), deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.prefetch(2)
