"""Detector training: loss values by hand, target assignment, augmentation geometry, a short training
run that lowers the loss on a fixed batch, checkpoints/resume, Darknet export, anchors tool."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from core.darknet.cfg import load_cfg, parse_cfg  # noqa: E402
from core.darknet.weights import expected_nbytes, read_weights, serialize_weights  # noqa: E402
from core.keras.data import NO_AUGMENT, AugmentConfig, Record, augment, letterboxed, to_yolo  # noqa: E402
from core.keras.loss import (  # noqa: E402
    HeadSpec,
    LossSpec,
    anchor_shape_iou,
    box_iou_terms,
    build_targets,
    head_loss,
    loss_spec_from_cfg,
    used_truth_rows,
)
from tests.paths import REPO  # noqa: E402

# A 2-head network small enough to train in seconds: 64 -> heads at 4x4 (stride 16) and 2x2 (stride 32).
TINY_CFG = """
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=16
activation=linear

[yolo]
mask=0,1
anchors=8,4, 16,16, 40,40, 60,30
classes=3
num=4
scale_x_y=1.05
iou_normalizer=0.07
iou_loss=ciou
ignore_thresh=0.7

[route]
layers=-3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=16
activation=linear

[yolo]
mask=2,3
anchors=8,4, 16,16, 40,40, 60,30
classes=3
num=4
scale_x_y=1.05
iou_normalizer=0.07
iou_loss=ciou
ignore_thresh=0.7
"""


@pytest.fixture(scope="module")
def tiny_cfg_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "tiny.cfg"
    p.write_text(TINY_CFG, encoding="utf-8")
    return p


def _spec(**kw) -> LossSpec:
    head = HeadSpec(grid=(4, 4), anchor_ids=(0, 1), anchors=((8.0, 4.0), (16.0, 16.0)), scale_x_y=1.0,
                    ignore_thresh=0.7, iou_normalizer=1.0)
    base = dict(input_size=(64, 64), num_classes=3, anchors=((8.0, 4.0), (16.0, 16.0)), heads=(head,),
                max_boxes=4)
    base.update(kw)
    return LossSpec(**base)


# ------------------------------------------------------------------------------------------ IoU / CIoU
def test_ciou_of_identical_boxes_is_one():
    b = tf.constant([[0.5, 0.5, 0.2, 0.1]])
    iou, ciou = box_iou_terms(b, b)
    assert float(iou[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(ciou[0]) == pytest.approx(1.0, abs=1e-6)


def test_ciou_by_hand_for_shifted_and_reshaped_boxes():
    a = np.array([0.3, 0.4, 0.2, 0.2])  # x 0.2..0.4, y 0.3..0.5
    b = np.array([0.4, 0.4, 0.4, 0.2])  # x 0.2..0.6, y 0.3..0.5
    inter = 0.2 * 0.2
    union = 0.04 + 0.08 - inter
    iou = inter / union  # 0.5
    rho2 = 0.1 ** 2
    c2 = 0.4 ** 2 + 0.2 ** 2
    v = 4 / math.pi ** 2 * (math.atan(0.4 / 0.2) - math.atan(0.2 / 0.2)) ** 2
    alpha = v / (1 - iou + v)
    want = iou - rho2 / c2 - alpha * v
    got_iou, got = box_iou_terms(tf.constant(a[None], tf.float32), tf.constant(b[None], tf.float32))
    assert float(got_iou[0]) == pytest.approx(0.5, abs=1e-6)
    assert float(got[0]) == pytest.approx(want, abs=1e-5)


# ------------------------------------------------------------------------------------------ targets
def test_anchor_shape_iou_by_hand():
    got = anchor_shape_iou(np.array([[8.0, 4.0], [12.0, 12.0]]), np.array([[8.0, 4.0], [16.0, 16.0]]))
    assert got[0, 0] == pytest.approx(1.0)
    assert got[0, 1] == pytest.approx(32 / 256)
    assert got[1, 1] == pytest.approx(144 / 256)
    assert got[1, 0] == pytest.approx(32 / (144 + 32 - 32))


def test_build_targets_puts_truth_in_its_cell_and_best_anchor():
    spec = _spec()
    labels = np.array([[2, 0.55, 0.30, 12 / 64, 12 / 64]])  # cell col 2, row 1; best anchor 16x16 (slot 1)
    targets, truths = build_targets(labels, spec)
    t = targets[0]
    assert t.shape == (4, 4, 2, 8)
    assert t[..., 4].sum() == 1 and t[1, 2, 1, 4] == 1
    np.testing.assert_allclose(t[1, 2, 1, :4], labels[0, 1:], rtol=1e-6)
    np.testing.assert_array_equal(t[1, 2, 1, 5:], [0, 0, 1])
    np.testing.assert_allclose(truths[0], labels[0, 1:])
    assert not truths[1:].any()


def test_unmasked_best_anchor_falls_back_to_best_masked_anchor():
    # yolov4-tiny's masks skip anchor 0: a box shaped like anchor 0 must still get a positive.
    head = HeadSpec(grid=(2, 2), anchor_ids=(1, 2), anchors=((16.0, 16.0), (40.0, 40.0)))
    spec = LossSpec(input_size=(64, 64), num_classes=3, anchors=((8.0, 4.0), (16.0, 16.0), (40.0, 40.0)),
                    heads=(head,), max_boxes=2)
    targets, _ = build_targets(np.array([[1, 0.2, 0.2, 8 / 64, 4 / 64]]), spec)
    assert targets[0][0, 0, 0, 4] == 1 and targets[0][..., 4].sum() == 1


def test_iou_thresh_assigns_several_anchors():
    spec = _spec(iou_thresh=0.1)  # box 12x12: IoU 0.22 with 8x4, 0.56 with 16x16 -> both
    targets, _ = build_targets(np.array([[0, 0.1, 0.1, 12 / 64, 12 / 64]]), spec)
    assert targets[0][0, 0, :, 4].tolist() == [1, 1]


# ------------------------------------------------------------------------------------------ loss values
def _raw_for(box_logits, obj_logit, cls_logits, spec, row, col, slot):
    raw = np.full((1, 4, 4, 2, 8), -30.0, np.float32)  # every other candidate: objectness ~0
    raw[0, row, col, slot, 0:4] = box_logits
    raw[0, row, col, slot, 4] = obj_logit
    raw[0, row, col, slot, 5:] = cls_logits
    return tf.constant(raw.reshape(1, 4, 4, 16))


def test_loss_of_a_perfect_prediction_is_only_the_bce_floor():
    spec = _spec()
    cx, cy, w, h = 0.5 + 0.25 * 0.5 / 1, 0.25 + 0.125, 16 / 64, 16 / 64  # cell (1, 2) centre, anchor 16x16
    labels = np.array([[1, cx, cy, w, h]], np.float32)
    targets, truths = build_targets(labels, spec)
    # sigmoid(0) = 0.5 puts the centre mid-cell; exp(0) = 1 gives the anchor size: CIoU = 1.
    raw = _raw_for([0, 0, 0, 0], 30.0, [-30, 30, -30], spec, 1, 2, 1)
    box, obj, cls = head_loss(raw, tf.constant(targets[0][None]), tf.constant(truths[None]), spec.heads[0], spec)
    assert float(box[0]) == pytest.approx(0.0, abs=1e-5)
    assert float(obj[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(cls[0]) == pytest.approx(0.0, abs=1e-6)


def test_loss_terms_by_hand():
    spec = _spec()
    labels = np.array([[0, 0.625, 0.375, 0.25, 0.25]], np.float32)  # cell (1, 2), anchor slot 1 (16x16)
    targets, truths = build_targets(labels, spec)
    tw = math.log(2.0)  # predicted width twice the anchor: 0.5
    raw = _raw_for([0, 0, tw, 0], 0.0, [0.0, 0.0, 0.0], spec, 1, 2, 1)
    box, obj, cls = head_loss(raw, tf.constant(targets[0][None]), tf.constant(truths[None]), spec.heads[0], spec)
    # pred: centre equal, w 0.5 h 0.25 -> IoU 0.5, rho 0, c = (0.5, 0.25),
    # v = 4/pi^2 (atan(1) - atan(2))^2, alpha = v / (0.5 + v)
    v = 4 / math.pi ** 2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    ciou = 0.5 - (v / (0.5 + v)) * v
    assert float(box[0]) == pytest.approx(1.0 - ciou, abs=1e-5)
    # objectness: BCE(logit 0, target 1) = ln 2 on the positive, the 31 others at logit -30 cost ~0
    assert float(obj[0]) == pytest.approx(math.log(2), abs=1e-5)
    # classes: 3 x BCE(logit 0) = 3 ln 2
    assert float(cls[0]) == pytest.approx(3 * math.log(2), abs=1e-5)


def test_ignore_thresh_removes_objectness_loss_of_good_unassigned_predictions():
    spec = _spec()
    labels = np.array([[0, 0.625, 0.375, 0.25, 0.25]], np.float32)
    targets, truths = build_targets(labels, spec)
    raw = np.full((1, 4, 4, 2, 8), -30.0, np.float32)
    raw[0, 1, 2, 1, 4] = 30.0  # the positive: confident
    raw[0, 1, 2, 0, 0:4] = [0.0, 0.0, math.log(2.0), math.log(4.0)]  # slot 0 (8x4) predicts 16x16: IoU 1 with the truth
    raw[0, 1, 2, 0, 4] = 0.0  # ... with objectness 0.5
    raw[0, 3, 3, 0, 4] = 0.0  # a far-away candidate with objectness 0.5: penalised
    raw = tf.constant(raw.reshape(1, 4, 4, 16))
    _, obj, _ = head_loss(raw, tf.constant(targets[0][None]), tf.constant(truths[None]), spec.heads[0], spec)
    assert float(obj[0]) == pytest.approx(math.log(2), abs=1e-4)  # only the far one counts


def test_ignore_test_sees_every_truth_of_the_fullest_image_in_the_batch():
    # The ignore test uses only the truth rows some image fills: image 0 has one truth, image 1 three, so
    # the cut must keep three rows, and image 1's third truth must still shield a prediction on it.
    spec = _spec()
    t0, tr0 = build_targets(np.array([[0, 0.125, 0.125, 0.25, 0.25]], np.float32), spec)
    boxes1 = np.array([[0, 0.125, 0.125, 0.25, 0.25], [1, 0.375, 0.875, 0.25, 0.25],
                       [2, 0.625, 0.375, 0.25, 0.25]], np.float32)
    t1, tr1 = build_targets(boxes1, spec)
    raw = np.full((2, 4, 4, 2, 8), -30.0, np.float32)
    for b, cells in ((0, [(0, 0)]), (1, [(0, 0), (3, 1), (1, 2)])):
        for r, c in cells:
            raw[b, r, c, 1, 4] = 30.0  # the positives (anchor 16x16 at their cells): confident
    for b in (0, 1):
        raw[b, 1, 2, 0, 0:4] = [0.0, 0.0, math.log(2.0), math.log(4.0)]  # 16x16 on image 1's third truth
        raw[b, 1, 2, 0, 4] = 0.0  # objectness 0.5
    _, obj, _ = head_loss(tf.constant(raw.reshape(2, 4, 4, 16)), tf.constant(np.stack([t0[0], t1[0]])),
                          tf.constant(np.stack([tr0, tr1])), spec.heads[0], spec)
    assert float(obj[0]) == pytest.approx(math.log(2), abs=1e-4)  # image 0 has no truth there: penalised
    assert float(obj[1]) == pytest.approx(0.0, abs=1e-4)  # image 1's third truth: ignored
    assert int(used_truth_rows(tf.constant(np.stack([tr0, tr1])))) == 3
    assert int(used_truth_rows(tf.zeros((2, 4, 4)))) == 1  # no truth at all: one zero row, IoU 0


def test_ignore_test_on_random_truths_matches_a_numpy_reference_over_all_rows():
    # Random predictions and 0, 2 and 4 truths in three images: the objectness loss must equal one whose
    # ignore mask is computed in numpy against every padded row (the definition, without the row cut).
    import dataclasses

    from core.keras.loss import decode_for_loss

    rng = np.random.default_rng(3)
    spec = _spec()
    head = dataclasses.replace(spec.heads[0], ignore_thresh=0.2)  # low, so that random boxes are ignored too
    targets, truths = [], []
    for n in (0, 2, 4):
        labels = np.column_stack([rng.integers(0, 3, n), rng.uniform(0.1, 0.9, (n, 2)), rng.uniform(0.1, 0.4, (n, 2))])
        t, tr = build_targets(labels.astype(np.float32), spec)
        targets.append(t[0])
        truths.append(tr)
    target, truth = np.stack(targets), np.stack(truths)
    raw = tf.constant(rng.normal(0, 1.5, (3, 4, 4, 16)).astype(np.float32))
    _, obj, _ = head_loss(raw, tf.constant(target), tf.constant(truth), head, spec)

    boxes, p = (np.asarray(v) for v in decode_for_loss(raw, head, spec.num_classes, spec.input_size))
    b = boxes[..., None, :]  # [3,4,4,2,1,4] against the truths [3,1,1,1,max_boxes,4]
    t = truth[:, None, None, None]
    lo = np.maximum(b[..., :2] - b[..., 2:] / 2, t[..., :2] - t[..., 2:] / 2)
    hi = np.minimum(b[..., :2] + b[..., 2:] / 2, t[..., :2] + t[..., 2:] / 2)
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    iou = inter / np.maximum(b[..., 2] * b[..., 3] + t[..., 2] * t[..., 3] - inter, 1e-9)
    assigned = target[..., 4]
    negative = (1 - assigned) * (iou.max(axis=-1) < head.ignore_thresh)
    logit = p[..., 4]
    bce = np.maximum(logit, 0) - logit * assigned + np.log1p(np.exp(-np.abs(logit)))
    want = ((assigned + negative) * bce).sum(axis=(1, 2, 3))
    assert 0 < negative.sum() < negative.size - assigned.sum()  # some predictions are ignored, not all
    np.testing.assert_allclose(np.asarray(obj), want, rtol=1e-5)


def test_loss_spec_reads_the_cfg_loss_options(tiny_cfg_path):
    spec = loss_spec_from_cfg(load_cfg(tiny_cfg_path))
    assert [h.grid for h in spec.heads] == [(4, 4), (2, 2)]
    assert spec.heads[0].anchors == ((8.0, 4.0), (16.0, 16.0))
    assert spec.heads[1].anchor_ids == (2, 3)
    assert spec.heads[0].iou_normalizer == pytest.approx(0.07)
    assert spec.heads[0].ignore_thresh == pytest.approx(0.7)
    assert spec.heads[0].scale_x_y == pytest.approx(1.05)


def test_loss_decode_matches_the_runtime_decoder():
    """The loss's box parametrisation is core.yolo's (scale_x_y included)."""
    from core.keras.loss import decode_for_loss
    from core.model_info import YoloHead
    from core.yolo import decode_head

    head = HeadSpec(grid=(4, 4), anchor_ids=(0, 1), anchors=((8.0, 4.0), (16.0, 16.0)), scale_x_y=1.2)
    raw = np.random.default_rng(0).normal(0, 1, (1, 4, 4, 16)).astype(np.float32)
    boxes, _ = decode_for_loss(tf.constant(raw), head, 3, (64, 64))
    want, _ = decode_head(raw[0], YoloHead((4, 4), head.anchors, 1.2), 3, 64, 64)
    np.testing.assert_allclose(np.asarray(boxes).reshape(-1, 4), want, atol=1e-5)


# ------------------------------------------------------------------------------------------ data
def _write_scene(folder: Path, name: str, boxes_px, size=(96, 64)) -> Path:
    import cv2

    w, h = size
    img = np.full((h, w, 3), 90, np.uint8)
    lines = []
    for c, x1, y1, x2, y2 in boxes_px:
        color = [(0, 200, 0), (255, 255, 255), (200, 0, 0)][c]
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), color, -1)
        lines.append(f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), img)
    (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_letterboxed_labels_follow_the_letterbox(tmp_path):
    path = _write_scene(tmp_path, "a", [(1, 10, 20, 40, 30)], size=(128, 64))
    rec = Record(str(path), np.array([[1, 10, 20, 40, 30]], np.float32))
    rgb, labels = letterboxed(rec, 64)
    # 128x64 -> 64x32, padded 16 px top: box (5, 26)-(20, 31)
    assert rgb.shape == (64, 64, 3)
    np.testing.assert_allclose(labels[0], [1, 12.5 / 64, 28.5 / 64, 15 / 64, 5 / 64], atol=1e-6)
    x1, y1 = int(round(labels[0, 1] * 64 - labels[0, 3] * 32)), int(round(labels[0, 2] * 64 - labels[0, 4] * 32))
    assert rgb[y1 + 1, x1 + 1].tolist() == [255, 255, 255]  # the white plate is where the label says


@pytest.mark.parametrize("mosaic", [0.0, 1.0])
def test_augmented_boxes_cover_their_objects(tmp_path, mosaic):
    """Every augmented box lies on its object's colour (white plates), whatever the placement."""
    recs = []
    for i in range(4):
        path = _write_scene(tmp_path, f"s{i}", [(1, 20 + 5 * i, 20, 60 + 5 * i, 36)])
        recs.append(Record(str(path), np.array([[1, 20 + 5 * i, 20, 60 + 5 * i, 36]], np.float32)))
    aug = AugmentConfig(mosaic=mosaic, scale=(0.6, 1.2), hue=0.0, saturation=1.0, exposure=1.0, flip=0.5)
    seen = 0
    for seed in range(6):
        rgb, labels = augment(recs, seed % 4, 64, seed, aug)
        for _, cx, cy, w, h in labels:
            x1, y1 = int(math.ceil((cx - w / 2) * 64)), int(math.ceil((cy - h / 2) * 64))
            x2, y2 = int((cx + w / 2) * 64), int((cy + h / 2) * 64)
            inner = rgb[y1 + 1:y2 - 1, x1 + 1:x2 - 1]
            if inner.size:
                assert inner.min() > 200, (seed, labels)
                seen += 1
    assert seen >= 4


def test_unreadable_training_images_are_left_out_and_reported(tmp_path):
    import cv2

    from core.errors import AlprError
    from core.keras.data import load_records

    cv2.imwrite(str(tmp_path / "good.png"), np.zeros((40, 80, 3), np.uint8))
    (tmp_path / "good.txt").write_text("0 0.5 0.5 0.5 0.5\n", encoding="utf-8")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "broken.txt").write_text("0 0.5 0.5 0.5 0.5\n", encoding="utf-8")
    (tmp_path / "empty.png").write_bytes(b"")  # no label file: a background image, unreadable too
    records, summary = load_records(str(tmp_path), 1)
    assert [Path(r.path).name for r in records] == ["good.png"]
    np.testing.assert_allclose(records[0].boxes, [[0, 20, 10, 60, 30]])  # 80x40 image, box half its size
    assert "2 unreadable images left out" in summary and "broken.jpg" in summary
    (tmp_path / "good.png").write_bytes(b"")
    with pytest.raises(AlprError, match="no readable image"):
        load_records(str(tmp_path), 1)


def _truncate(path: Path) -> None:
    """Keep the PNG's header (PIL still reads the size) but cut its pixels (OpenCV cannot decode them)."""
    from PIL import Image

    path.write_bytes(path.read_bytes()[:60])
    with Image.open(path) as im:
        assert im.size[0] > 0


@pytest.mark.parametrize("mosaic", [0.0, 1.0])
def test_an_undecodable_image_becomes_an_empty_grey_sample(tmp_path, mosaic, capsys):
    """A file whose header reads but whose pixels do not is found only when a batch draws it: it becomes a
    grey image with no boxes (its labels would describe pixels that are not there), warned about once."""
    from core.keras.data import undecodable
    from core.yolo import LETTERBOX_FILL

    path = _write_scene(tmp_path, "cut", [(1, 10, 10, 50, 30)])
    _truncate(path)
    rec = Record(str(path), np.array([[1, 10, 10, 50, 30]], np.float32))
    rgb, labels = letterboxed(rec, 64)
    assert labels.shape == (0, 5) and (rgb == LETTERBOX_FILL).all()
    aug = AugmentConfig(mosaic=mosaic, scale=(0.6, 1.2), hue=0.0, saturation=1.0, exposure=1.0)
    for seed in range(3):
        rgb, labels = augment([rec] * 4, 0, 64, seed, aug)
        assert labels.shape == (0, 5) and (rgb == LETTERBOX_FILL).all()
    assert capsys.readouterr().err.count(f"warning: {path}: the image cannot be decoded") == 1
    assert undecodable([rec, Record(str(tmp_path / "other.png"), rec.boxes), rec]) == [str(path)]


def test_training_goes_on_past_an_undecodable_image(tmp_path, tiny_cfg_path):
    from core.keras.train_detector import TrainConfig, train

    train_list = _tiny_dataset(tmp_path / "data", n=8)
    _truncate(tmp_path / "data" / "img3.png")
    logs = []
    cfg = TrainConfig(cfg=str(tiny_cfg_path), train=str(train_list), valid=str(train_list),
                      out_dir=str(tmp_path / "run"), input_size=64, batch_size=4, epochs=1, warmup_steps=0,
                      eval_every=1, progress=False, name="tiny", workers=1)
    result = train(cfg, log=logs.append)
    assert result.steps_done == 2 and result.weights.is_file()
    assert result.history["val_epoch"] == [1]  # validation ran past it too
    assert any(line.startswith("warning: 1 image(s) could not be decoded") and "img3.png" in line for line in logs)


def test_to_yolo_by_hand():
    np.testing.assert_allclose(to_yolo(np.array([[2, 10, 20, 30, 60]]), 100, 200), [[2, 0.2, 0.2, 0.2, 0.2]])


# ------------------------------------------------------------------------------------------ training
def _tiny_dataset(folder: Path, n: int = 8) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    names = []
    for i in range(n):
        x = int(rng.integers(4, 50))
        y = int(rng.integers(4, 40))
        path = _write_scene(folder, f"img{i}", [(1, x, y, x + 28, y + 12), (0, 60, 5, 92, 60)])
        names.append(path.name)
    (folder / "train.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    return folder / "train.txt"


def test_training_lowers_the_loss_on_a_fixed_batch_and_exports_every_byte(tmp_path, tiny_cfg_path):
    from core.keras.train_detector import TrainConfig, load_checkpoint, train

    train_list = _tiny_dataset(tmp_path / "data")
    out = tmp_path / "run"
    cfg = TrainConfig(cfg=str(tiny_cfg_path), train=str(train_list), valid=str(train_list), out_dir=str(out),
                      input_size=64, batch_size=8, epochs=60, lr=1e-2, warmup_steps=0, eval_every=60,
                      augment=NO_AUGMENT, progress=False, name="tiny", workers=1)
    result = train(cfg, log=lambda s: None)
    losses = result.history["total"]
    assert result.steps_done == 60 and len(losses) == 60
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    assert result.history["val_map50"][-1] > 0.0
    # .weights: the exact Darknet layout of this cfg, read back by core.darknet.weights
    dcfg = parse_cfg(TINY_CFG)
    data = result.weights.read_bytes()
    assert len(data) == expected_nbytes(dcfg)
    header, weights = read_weights(result.weights, dcfg)
    assert header.seen == 60 * 8
    assert serialize_weights(dcfg, weights, header) == data
    assert (out / "training_curves.png").stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    # the exported head conv equals the trained model's
    from core.keras.train_detector import build_training_model

    _, model, _, _ = build_training_model(cfg)
    load_checkpoint(out, model, _opt_for(model))
    head_index = dcfg.yolo_layers[0].index - 1
    k, b = model.get_layer(f"conv_{head_index}").get_weights()
    np.testing.assert_array_equal(weights[head_index].bias, b)
    np.testing.assert_array_equal(weights[head_index].kernel, k.transpose(3, 2, 0, 1))


def _opt_for(model):
    import keras

    opt = keras.optimizers.AdamW(1e-3)
    opt.build(model.trainable_variables)
    return opt


def test_resume_goes_on_from_the_checkpoint(tmp_path, tiny_cfg_path):
    from core.keras.train_detector import TrainConfig, train

    train_list = _tiny_dataset(tmp_path / "data", n=8)
    base = dict(cfg=str(tiny_cfg_path), train=str(train_list), out_dir=str(tmp_path / "run"), input_size=64,
                batch_size=4, epochs=4, warmup_steps=2, progress=False, name="tiny", workers=1)
    first = train(TrainConfig(max_steps=4, **base), log=lambda s: None)
    assert first.steps_done == 4 and first.epochs_done == 2
    logs = []
    second = train(TrainConfig(**base), log=logs.append)
    assert any("resumed" in line and "step 4" in line for line in logs)
    assert second.steps_done == 8 and second.epochs_done == 4
    assert len(second.history["total"]) == 4  # two epochs from the first run, two from the second


def test_mixed_bfloat16_training_lowers_the_loss_and_exports_float32_weights(tmp_path, tiny_cfg_path):
    import keras

    from core.keras.train_detector import TrainConfig, build_training_model, train

    train_list = _tiny_dataset(tmp_path / "data")
    cfg = TrainConfig(cfg=str(tiny_cfg_path), train=str(train_list), valid=str(train_list),
                      out_dir=str(tmp_path / "run"), input_size=64, batch_size=8, epochs=40, lr=1e-2,
                      warmup_steps=0, eval_every=20, augment=NO_AUGMENT, progress=False, name="tiny", workers=1,
                      precision="mixed_bfloat16")
    result = train(cfg, log=lambda s: None)
    losses = result.history["total"]
    assert all(math.isfinite(v) for v in losses)
    assert len(result.history["val_map50"]) == 2 and result.history["val_map50"][-1] > 0.0  # validated in bf16
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    dcfg = parse_cfg(TINY_CFG)
    assert result.weights.stat().st_size == expected_nbytes(dcfg)
    # the exported weights are the trained (float32) variables: a float32 model built from them gives the
    # bfloat16-trained model's raw outputs up to bfloat16 rounding
    import tensorflow as tf

    from core.keras.layers import precision_policy
    from core.keras.train_detector import KerasDetector, load_checkpoint

    with precision_policy("mixed_bfloat16"):
        _, trained, _, _ = build_training_model(cfg)
    load_checkpoint(tmp_path / "run", trained, _opt_for(trained))
    exported = KerasDetector.from_darknet(str(tiny_cfg_path), str(result.weights), ["a", "b", "c"], 64)
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype(np.float32)
    want = [np.asarray(tf.cast(o, tf.float32)) for o in trained(tf.constant(x), training=False)]
    got = exported.raw(x)
    assert trained.layers[-1].compute_dtype == "bfloat16" and len(got) == len(want) == 2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=0.05 * float(np.abs(w).max()) + 0.05)
    # and the bfloat16 model itself hands float32 outputs to the decoder (KerasDetector, validation)
    direct = KerasDetector(trained, exported.heads, ["a", "b", "c"], 64).raw(x)
    assert [d.dtype for d in direct] == [np.float32, np.float32]
    for d, w in zip(direct, want):  # graph and eager bfloat16 kernels round a little differently
        np.testing.assert_allclose(d, w, rtol=2e-2, atol=2e-2)


def test_learning_rate_schedule():
    from core.keras.train_detector import TrainConfig, learning_rate

    cfg = TrainConfig(cfg="x", train="x", out_dir="x", lr=0.01, warmup_steps=10, final_lr_fraction=0.1)
    assert learning_rate(0, 110, cfg) == 0.0
    assert learning_rate(5, 110, cfg) == pytest.approx(0.01 * 0.5 ** 4)
    assert learning_rate(10, 110, cfg) == pytest.approx(0.01)
    assert learning_rate(60, 110, cfg) == pytest.approx(0.001 + 0.5 * 0.009)
    assert learning_rate(110, 110, cfg) == pytest.approx(0.001)


def test_train_cli_reports_a_missing_cfg_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "--cfg", str(tmp_path / "none.cfg"), "--train", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cfg not found")


# ------------------------------------------------------------------------------------------ anchors tool
def test_kmeans_anchors_recover_clusters_and_rewrite_a_cfg_copy():
    from tools.anchors import kmeans_anchors, mean_best_iou, rewrite_anchors, rewrite_masks

    rng = np.random.default_rng(0)
    centres = np.array([[30.0, 10.0], [80.0, 60.0], [8.0, 8.0]])
    wh = np.concatenate([c * rng.uniform(0.95, 1.05, (50, 2)) for c in centres])
    anchors = kmeans_anchors(wh, 3)
    np.testing.assert_allclose(anchors, centres[[2, 0, 1]], rtol=0.06)
    assert mean_best_iou(wh, anchors) > 0.9
    text = (REPO / "data" / "cfg" / "yolov4-tiny.cfg").read_text(encoding="utf-8")
    new = rewrite_masks(rewrite_anchors(text, [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]), "3,4,5;0,1,2")
    cfg = parse_cfg(new)
    assert cfg.yolo_layers[0].anchors[1] == (3.0, 4.0)
    assert [y.mask for y in cfg.yolo_layers] == [(3, 4, 5), (0, 1, 2)]


MIRRORED_SCRIPT = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from core.keras.data import NO_AUGMENT
from core.keras.train_detector import TrainConfig, train
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
cfg = TrainConfig(cfg=sys.argv[1], train=sys.argv[2], out_dir=sys.argv[3], input_size=64, batch_size=8,
                  epochs=30, lr=1e-2, warmup_steps=0, eval_every=0, augment=NO_AUGMENT, progress=False,
                  name="tiny", workers=1)
result = train(cfg, log=lambda s: None, strategy=strategy)
print("REPLICAS", strategy.num_replicas_in_sync)
print("LOSSES", " ".join(str(v) for v in result.history["total"]))
"""


@pytest.mark.slow
def test_training_runs_under_a_two_replica_mirrored_strategy(tmp_path, tiny_cfg_path):
    """The same code under MirroredStrategy (two logical CPUs standing in for two GPUs)."""
    train_list = _tiny_dataset(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tiny_cfg_path), str(train_list),
                           str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("REPLICAS", "LOSSES")))
    assert lines["REPLICAS"] == "2"
    losses = [float(v) for v in lines["LOSSES"].split()]
    assert len(losses) == 30 and np.mean(losses[-3:]) < 0.5 * losses[0], losses
    header, _ = read_weights(tmp_path / "run" / "tiny.weights", parse_cfg(TINY_CFG))
    assert header.seen == 30 * 8


@pytest.mark.slow
def test_train_cli_smoke_on_rendered_scenes(tmp_path):
    """train.py end to end: the shipped detector cfg, a few rendered scenes, two steps, exported weights."""
    data = tmp_path / "scenes"
    subprocess.run([sys.executable, "-m", "tools.synth.scenes", "--count", "10", "--out", str(data), "--seed", "5",
                    "--size", "128", "--valid_fraction", "0.2", "--workers", "1"],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    cfg = REPO / "checkpoints" / "yolov4-tiny-3l-alpr.cfg"
    export = tmp_path / "det.weights"
    proc = subprocess.run(
        [sys.executable, "train.py", "--cfg", str(cfg), "--train", str(data / "train.txt"), "--valid",
         str(data / "valid.txt"), "--input_size", "96", "--batch_size", "4", "--epochs", "1", "--eval_every", "1",
         "--out_dir", str(tmp_path / "run"), "--export", str(export), "--progress=false", "--workers", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "val mAP@0.5" in proc.stdout
    dcfg = load_cfg(cfg)
    assert export.stat().st_size == expected_nbytes(dcfg)
    header, _ = read_weights(export, dcfg)
    assert header.seen == 2 * 4  # 8 training images, batch 4
