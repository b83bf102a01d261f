"""The shipped models (checkpoints/) through the README's main command, checked against the demo's labels.

``data/images/demo.txt`` holds the demo scene's ground truth (YOLO lines, the plate text as a 6th
token), written by the scene renderer that drew the image: an independent record of what is in it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from core.pipeline import DEFAULT_DETECTOR
from core.yolo import iou_matrix
from core.yolo_dataset import read_labels
from lprnet.charset import load_charset
from tests.paths import REPO

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
DEMO = REPO / "data" / "images" / "demo.jpg"
NAMES = ("car", "license_plate", "disabled_sticker")
# Regression floors for the shipped readers (float16 and int8, read through fit_size with the runtime's format
# decoder), about three standard errors under the figures of checkpoints/MODEL_CARD.md on its 2000 held-out
# rendered crops (kr run 15: 0.9495 / 0.9465, 3 SE = 0.039 at n = 300; cn run 16: 0.9285 / 0.924, 3 SE =
# 0.046; through this test's PlateReader, with its zoom, the first 300 read 0.953 / 0.950 with cn run 16,
# 0.950 / 0.947 with run 17 and 0.943 / 0.943 with run 18, shipped since session 46; run 18's held-out figure on
# all 2,000 as detect.py reads is 0.9435). The real cn crops (all 493), read here with the zoom: 0.915 / 0.917 with
# run 18 (run 17: 0.923 / 0.923, run 16: 0.903 / 0.897); 3 SE = 0.036. The night renders (the first 200 of the
# card's seed-9347 set, --night 1): run 18 0.865 / 0.860 here (run 17 0.875 / 0.850, run 16 0.505 / 0.485), int8
# 0.872 on all 2,000 as detect.py reads; 3 SE at n = 200 is about 0.075.
# The target (0.98 on held-out rendered crops) is not met yet.
KR_FLOOR = 0.90
CN_FLOOR = 0.87
CN_REAL_FLOOR = 0.88
CN_NIGHT_FLOOR = 0.78
READERS = ("f16", "int8")
DETECTOR_INT8 = DEFAULT_DETECTOR["tflite"]
# AP@0.5 floors for the shipped int8 detector on 100 held-out scenes, set for stage 7 (car 0.997, plate
# 0.962-0.978, sticker 0.929) about three standard errors under the card's 200-scene figures, and kept for
# the bf16hr chain's model shipped in session 18 (car 0.993-0.994, plate 0.956-0.958, sticker 0.932-0.962).
# With ~260 cars, ~190 plates and ~65 stickers, sqrt(p(1-p)/n) is now about 0.005, 0.015 and 0.026: the
# plate and sticker floors sit 2.5 and 4 standard errors under, the car floor 1.7.
DETECTOR_FLOORS = {"car": 0.985, "license_plate": 0.92, "disabled_sticker": 0.83}


def _truth():
    h, w = cv2.imread(str(DEMO)).shape[:2]
    boxes, problems = read_labels(REPO / "data" / "images" / "demo.txt", num_classes=3)
    assert not problems
    out = []
    for b in boxes:
        x1, y1, x2, y2 = b.to_xyxy(w, h)
        out.append((NAMES[b.class_id], np.array([x1, y1, x2, y2], np.float32), b.text))
    return out


def test_readme_main_command_on_the_demo(tmp_path) -> None:
    r = subprocess.run([sys.executable, "detect.py", "--images", str(DEMO), "--lpr", "--json", "--output",
                        str(tmp_path), "--dont_show"], capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "demo.json").read_text(encoding="utf-8"))
    dets = doc["detections"]
    truth = _truth()
    for name in NAMES:
        want = [t for t in truth if t[0] == name]
        got = [d for d in dets if d["class"] == name]
        assert len(got) == len(want), (name, len(got), len(want))
        iou = iou_matrix(np.array([t[1] for t in want]), np.array([d["box"] for d in got], np.float32))
        assert np.all(iou.max(axis=1) >= 0.5), (name, iou)
    # every plate was read with the Korean charset, belongs to a car, and is printed
    charset = load_charset("kr")
    plates = [d for d in dets if d["class"] == "license_plate"]
    for p in plates:
        assert p["vehicle"] is not None and dets[p["vehicle"]]["class"] == "car"
        text = p["plate"]["text"]
        assert text and charset.can_encode(text), text
        assert f"plate {text}" in r.stdout
    # every labelled plate text comes back exactly
    read = {p["plate"]["text"] for p in plates}
    assert all(t[2] in read for t in truth if t[0] == "license_plate"), read
    # the sticker is on the red car (the rightmost one)
    sticker = next(d for d in dets if d["class"] == "disabled_sticker")
    cars = [d for d in dets if d["class"] == "car"]
    assert dets[sticker["vehicle"]] is max(cars, key=lambda d: d["box"][0])
    # the EV plate 45누7812 (light blue) is flagged, the white ones are not
    truth_plates = [t for t in truth if t[0] == "license_plate"]
    for t in truth_plates:
        p = max(plates, key=lambda d: float(iou_matrix(t[1][None], np.array([d["box"]], np.float32))[0, 0]))
        assert p["plate"]["ev"] == (t[2] == "45누7812"), (t[2], p["plate"])


def _sequence_accuracy(model, charset: str, crops, texts) -> float:
    from lprnet.reader import PlateReader

    reads = PlateReader(model, charset, num_threads=2).read(crops)
    return float(np.mean([r.text == t for r, t in zip(reads, texts)]))


def _rendered(tmp_path, charset: str, count: int, seed: int, **options):
    """Crops at their rendered size from the plate renderer (exact labels), read back from disk; ``options`` go to
    ``write_crops`` (``font_variants``, ``night``, ...)."""
    from lprnet.dataset import list_samples, load_originals
    from tools.synth.plates import write_crops

    out = write_crops(str(tmp_path / charset), charset, count, seed, size=None, workers=1, progress=False, **options)
    return load_originals(list_samples(out / "labels.txt", load_charset(charset)))


@pytest.mark.parametrize("charset, seed, floor", [("kr", 9001, KR_FLOOR), ("cn", 9014, CN_FLOOR)])
def test_shipped_readers_on_held_out_rendered_plates(tmp_path, charset: str, seed: int, floor: float) -> None:
    """The first 300 crops of the held-out sets of checkpoints/MODEL_CARD.md (kr seed 9001, cn seed 9014),
    read as the runtime reads them, by the float16 and the int8 reader. A regression floor below the
    card's figures; the issue's 0.98 is not met yet."""
    crops, texts = _rendered(tmp_path, charset, 300, seed)
    for q in READERS:
        acc = _sequence_accuracy(REPO / "checkpoints" / f"lprnet-{charset}-{q}.tflite", charset, crops, texts)
        print(f"{charset} {q} sequence accuracy on 300 held-out rendered crops: {acc:.3f}")
        assert acc >= floor, q


def test_decoder_flag_reaches_the_reader() -> None:
    """--decoder (detect.py, detect_video.py) picks the reader's CTC decoding; the runtime's default is
    'format' (lprnet.ctc.DECODERS[0])."""
    from core.app import ModelChoice, open_pipeline

    assert open_pipeline(ModelChoice(lpr=True)).reader.decoder == "format"
    assert open_pipeline(ModelChoice(lpr=True, decoder="greedy")).reader.decoder == "greedy"


def test_tta_flag_reaches_the_reader() -> None:
    """--lpr_tta / --nolpr_tta reach the pipeline's reader, and each front end has its default."""
    from core.app import ModelChoice, open_pipeline

    assert open_pipeline(ModelChoice(lpr=True)).reader.tta is True
    assert open_pipeline(ModelChoice(lpr=True, lpr_tta=False)).reader.tta is False
    # on by default for still images, off for video (frame rate; see define_model_flags)
    for script, default in (("detect.py", "true"), ("detect_video.py", "false")):
        r = subprocess.run([sys.executable, script, "--helpfull"], capture_output=True, text=True, env=ENV, cwd=REPO,
                           timeout=120)
        block = r.stdout[r.stdout.index("--[no]lpr_tta"):]
        assert f"(default: '{default}')" in block[: block.index("--", 5)], (script, block[:300])


def test_shipped_cn_reader_on_real_crops() -> None:
    """493 real Chinese crops (../shared/data/cn_plates_dev), never used in training or calibration."""
    from lprnet.dataset import list_samples, load_originals
    from tests.paths import shared_path

    crops, texts = load_originals(list_samples(shared_path("data", "cn_plates_dev"), load_charset("cn")))
    for q in READERS:
        acc = _sequence_accuracy(REPO / "checkpoints" / f"lprnet-cn-{q}.tflite", "cn", crops, texts)
        print(f"cn {q} sequence accuracy on cn_plates_dev: {acc:.3f}")
        assert acc >= CN_REAL_FLOOR, q


def test_shipped_cn_reader_on_night_renders(tmp_path) -> None:
    """The first 200 crops of the model card's night set (seed 9347, --night 1 --font_variants: every crop under a
    coloured night light), never used in training or calibration; run 16, before the night crops, read 0.614 of the
    2,000."""
    crops, texts = _rendered(tmp_path, "cn", 200, 9347, font_variants=True, night=1.0)
    for q in READERS:
        acc = _sequence_accuracy(REPO / "checkpoints" / f"lprnet-cn-{q}.tflite", "cn", crops, texts)
        print(f"cn {q} sequence accuracy on 200 night renders: {acc:.3f}")
        assert acc >= CN_NIGHT_FLOOR, q


def test_shipped_detector_on_held_out_rendered_scenes(tmp_path) -> None:
    """The shipped int8 detector on 100 scenes of a seed never used in training (98), through evaluate.py
    as a user runs it. Regression floors about three standard errors under the card's held-out figures."""
    scenes = tmp_path / "scenes"
    r = subprocess.run([sys.executable, "-m", "tools.synth.scenes", "--count", "100", "--out", str(scenes),
                        "--seed", "98", "--size", "416", "--valid_fraction", "0", "--workers", "1"],
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "eval.json"
    r = subprocess.run([sys.executable, "evaluate.py", "--weights", str(DETECTOR_INT8), "--framework", "tflite",
                        "--classes", "data/classes/custom.names", "--dataset", str(scenes), "--json", str(out)],
                       capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["images"] == 100
    print("shipped detector AP@0.5 on 100 held-out scenes:", {k: round(v, 3) for k, v in doc["map50"].items()})
    for name, floor in DETECTOR_FLOORS.items():
        assert doc["map50"][name] >= floor, (name, doc["map50"][name])
