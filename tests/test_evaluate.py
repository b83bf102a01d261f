"""evaluate.py and core.evaluation: perfect and wrong detectors on a tiny labelled folder, JSON and PR
curves, the command line (Darknet .weights through Keras), errors, and no TensorFlow on the tflite path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from core.errors import AlprError
from core.evaluation import evaluate_dataset, open_backend, plot_pr_curves, report_dict, write_json
from core.types import Detection
from core.yolo_dataset import load_dataset
from tests.paths import REPO

NAMES = ("car", "license_plate", "disabled_sticker")


def _folder(tmp_path: Path) -> Path:
    """3 images (one unlabelled background), cars and plates, no sticker anywhere."""
    d = tmp_path / "set"
    d.mkdir()
    specs = {
        "a": (160, 120, ["0 0.5 0.5 0.5 0.5", "1 0.5 0.7 0.2 0.05"]),
        "b": (200, 100, ["0 0.25 0.5 0.3 0.6", "1 0.25 0.7 0.1 0.06", "1 0.8 0.2 0.1 0.06"]),
        "c": (100, 100, []),
    }
    for name, (w, h, lines) in specs.items():
        cv2.imwrite(str(d / f"{name}.png"), np.full((h, w, 3), 100, np.uint8))
        if lines:
            (d / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


class TruthBackend:
    """A 'detector' that returns the labels of the image it is given (found by its size)."""

    def __init__(self, folder: Path, shift: float = 0.0, drop_class: int = -1):
        self.by_size = {}
        for s in load_dataset(folder).samples:
            img = cv2.imread(str(s.image))
            self.by_size[img.shape[:2]] = (img.shape[1], img.shape[0], s.boxes)
        self.shift = shift
        self.drop_class = drop_class

    def detect(self, bgr, score_threshold=0.25, iou_threshold=0.45) -> List[Detection]:
        w, h, boxes = self.by_size[bgr.shape[:2]]
        out = []
        for k, b in enumerate(boxes):
            if b.class_id == self.drop_class:
                continue
            x1, y1, x2, y2 = b.to_xyxy(w, h)
            dx = self.shift * (x2 - x1)
            out.append(Detection((x1 + dx, y1, x2 + dx, y2), 0.9 - 0.01 * k, b.class_id, NAMES[b.class_id]))
        return out


def test_perfect_detector_scores_one(tmp_path):
    folder = _folder(tmp_path)
    report = evaluate_dataset(TruthBackend(folder), folder, NAMES, progress=False)
    d = report_dict(report)
    assert d["images"] == 3
    assert d["map50"] == {"car": 1.0, "license_plate": 1.0, "disabled_sticker": None}
    assert d["map50_95"]["car"] == 1.0 and d["map50_95"]["license_plate"] == 1.0
    assert d["mean"] == {"map50": 1.0, "map50_95": 1.0}
    assert d["truths"] == {"car": 2, "license_plate": 3, "disabled_sticker": 0}


def test_wrong_detector_scores_by_hand(tmp_path):
    folder = _folder(tmp_path)
    # Every box shifted by 60% of its width: IoU = 0.4 / 1.6 = 0.25 < 0.5 -> all false positives.
    report = evaluate_dataset(TruthBackend(folder, shift=0.6), folder, NAMES, progress=False)
    assert report.metrics.map50 == 0.0
    # Shifted by 20%: IoU = 0.8 / 1.2 = 0.667: right at 0.5..0.65 (4 of 10 thresholds), wrong above.
    report = evaluate_dataset(TruthBackend(folder, shift=0.2), folder, NAMES, progress=False)
    d = report_dict(report)
    assert d["map50"]["car"] == 1.0
    assert d["map50_95"]["car"] == pytest.approx(0.4)
    # Plates missed entirely: AP 0 for them, mean over the two classes with truth = 0.5.
    report = evaluate_dataset(TruthBackend(folder, drop_class=1), folder, NAMES, progress=False)
    d = report_dict(report)
    assert d["map50"]["license_plate"] == 0.0 and d["mean"]["map50"] == 0.5


class HalfRight:
    """Image a: the plate found (0.9); image b: a wrong plate box (0.8) and the right one (0.7)."""

    def detect(self, bgr, score_threshold=0.25, iou_threshold=0.45):
        h, w = bgr.shape[:2]
        if (w, h) == (160, 120):
            return [Detection((64, 81, 96, 87), 0.9, 1, "license_plate")]
        if (w, h) == (200, 100):
            return [Detection((0, 0, 10, 10), 0.8, 1, "license_plate"),
                    Detection((40, 67, 60, 73), 0.7, 1, "license_plate")]
        return []


def test_average_precision_of_a_ranked_list_by_hand(tmp_path):
    folder = _folder(tmp_path)
    report = evaluate_dataset(HalfRight(), folder, NAMES, progress=False)
    # ranked: TP, FP, TP over 3 plates -> precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3;
    # all-point AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    plate = report.metrics.per_class[1]
    assert plate.ap50 == pytest.approx(5 / 9)
    np.testing.assert_allclose(plate.precision, [1, 0.5, 2 / 3])
    np.testing.assert_allclose(plate.recall, [1 / 3, 1 / 3, 2 / 3])
    assert report.metrics.per_class[0].ap50 == 0.0  # no car detections


def test_json_and_pr_curves_are_written(tmp_path):
    folder = _folder(tmp_path)
    report = evaluate_dataset(HalfRight(), folder, NAMES, progress=False)
    data = json.loads(write_json(report, tmp_path / "out" / "m.json").read_text(encoding="utf-8"))
    assert data["map50"]["license_plate"] == pytest.approx(5 / 9, abs=1e-6)
    assert data["images"] == 3
    png = plot_pr_curves(report, tmp_path / "out" / "pr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreadable_image_is_skipped_and_reported(tmp_path):
    folder = _folder(tmp_path)
    backend = TruthBackend(folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    report = evaluate_dataset(backend, folder, NAMES, progress=False)
    assert report.images == 3 and len(report.skipped) == 1 and "broken.jpg" in report.skipped[0][0]
    assert report.metrics.map50 == 1.0
    # the JSON names the file once, then the reason
    (entry,) = report_dict(report)["skipped"]
    assert entry.count("broken.jpg") == 1 and entry.startswith(str(folder / "broken.jpg")), entry
    assert "not an image" in entry  # the reason stays


def test_pr_curves_without_ground_truth_warn_nothing(tmp_path):
    """Images without a label file (no objects): the PNG is written with no curve and no warning."""
    import warnings

    cv2.imwrite(str(tmp_path / "empty.jpg"), np.zeros((32, 32, 3), np.uint8))
    report = evaluate_dataset(HalfRight(), tmp_path, NAMES, progress=False)
    assert all(c.num_truth == 0 for c in report.metrics.per_class)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = plot_pr_curves(report, tmp_path / "pr.png")
    assert not [w for w in caught if "legend" in str(w.message) or "artists" in str(w.message)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_open_backend_errors(tmp_path):
    with pytest.raises(AlprError, match="model not found"):
        open_backend(tmp_path / "none.tflite", "tflite", NAMES)
    (tmp_path / "m.weights").write_bytes(b"\0" * 20)
    with pytest.raises(AlprError, match="--cfg"):
        open_backend(tmp_path / "m.weights", "tf", NAMES)
    with pytest.raises(AlprError, match="--framework tf"):
        open_backend(tmp_path / "m.weights", "tflite", NAMES)
    with pytest.raises(AlprError, match="wants a .tflite file"):
        open_backend(tmp_path, "tflite", NAMES)


def test_tflite_path_does_not_import_tensorflow():
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "import core.evaluation, core.detector\n"
            "sys.argv = ['evaluate.py']\n"
            "import runpy; g = runpy.run_path('evaluate.py', run_name='not_main')\n"
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.slow
def test_cli_with_darknet_weights_writes_json(tmp_path):
    """evaluate.py end to end on a random-weight yolov4-tiny built from the shipped cfg."""
    pytest.importorskip("tensorflow")
    from core.darknet.cfg import load_cfg
    from core.darknet.weights import random_weights, write_weights

    cfg = REPO / "data" / "cfg" / "yolov4-tiny.cfg"
    weights = tmp_path / "rand.weights"
    write_weights(weights, load_cfg(cfg), random_weights(load_cfg(cfg), seed=1, head_gain=0.1))
    folder = _folder(tmp_path)
    out = tmp_path / "res.json"
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "--weights", str(weights), "--cfg", str(cfg), "--framework", "tf",
         "--size", "128", "--classes", str(REPO / "data" / "classes" / "custom.names"), "--dataset", str(folder),
         "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["images"] == 3
    assert set(data["map50"]) == set(NAMES) and data["map50"]["disabled_sticker"] is None
    assert 0.0 <= data["map50"]["car"] <= 1.0
    assert (tmp_path / "res_pr.png").is_file()


def test_cli_json_records_how_plates_were_read(tmp_path):
    """--lpr --json names the reader, its options and the checks it read with, in order: by default the
    charset's shipped ones (kr: region, then digits, then Hangul, whose .json sets threshold 0.85 and gate 0.97), none
    with --lpr_province none; the home region, none unless --lpr_home_region names one."""
    from core.pipeline import DEFAULT_DETECTOR, DEFAULT_PROVINCE, DEFAULT_READER

    det, reader, checks = DEFAULT_DETECTOR["tflite"], DEFAULT_READER["kr"], DEFAULT_PROVINCE["kr"]
    if not (det.is_file() and reader.is_file() and all(c.is_file() for c in checks)):
        pytest.skip("the shipped detector, Korean reader and checks are not there")
    folder = _folder(tmp_path)
    for extra, want in (([], [str(c) for c in checks]),
                        (["--lpr_province", "none", "--nolpr_tta", "--lpr_home_region", "서울", "--lpr_home_weight",
                          "3"], [])):
        out = tmp_path / "res.json"
        proc = subprocess.run(
            [sys.executable, "evaluate.py", "--weights", str(det), "--framework", "tflite", "--dataset", str(folder),
             "--json", str(out), "--lpr", "--lpr_weights", str(reader), "--charset", "kr", *extra],
            cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lpr = json.loads(out.read_text(encoding="utf-8"))["lpr_reader"]
        assert lpr["province"] == want and lpr["weights"] == str(reader) and lpr["charset"] == "kr"
        assert lpr["tta"] is (not extra) and lpr["retry"] is True and lpr["lpr_score"] == 0.25
        assert lpr["province_min_probability"] == [0.8, 0.8, 0.85][:len(want)]
        assert lpr["province_read_confidence_below"] == [None, None, 0.97][:len(want)]
        assert (lpr["home_region"], lpr["home_weight"]) == ((None, None) if not extra else ("서울", 3.0))
        assert lpr["province_home"] == [None] * len(want)


def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "evaluate.py", "--weights", str(tmp_path / "x.tflite"),
                           "--dataset", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: model not found: {tmp_path / 'x.tflite'}"
    # a home region leans plate reads: without --lpr it is an error, before the model is looked for
    proc = subprocess.run([sys.executable, "evaluate.py", "--weights", str(tmp_path / "x.tflite"),
                           "--dataset", str(tmp_path), "--lpr_home_region", "서울"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: --lpr_home_region leans the plate reads: it needs --lpr"
    proc = subprocess.run([sys.executable, "evaluate.py", "--weights", str(tmp_path / "x.tflite"),
                           "--dataset", str(tmp_path), "--lpr", "--lpr_home_weight", "3"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("error: --lpr_home_weight sets how much the reads lean to "
                                                    "--lpr_home_region: give it too")


class FixedReader:
    """Reads every crop as the same text and remembers the crop sizes."""

    def __init__(self, text: str):
        self.text = text
        self.shapes: list = []

    def read(self, crops):
        from lprnet.reader import PlateRead

        self.shapes += [c.shape[:2] for c in crops]
        return [PlateRead(self.text, 0.9, True) for _ in crops]


def test_plate_read_accuracy(tmp_path):
    folder = _folder(tmp_path)
    # texts on two of the three plates; the third has no text and does not count
    (folder / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.5 0.7 0.2 0.05 12가3456\n", encoding="utf-8")
    (folder / "b.txt").write_text("0 0.25 0.5 0.3 0.6\n1 0.25 0.7 0.1 0.06 34나5678\n1 0.8 0.2 0.1 0.06\n",
                                  encoding="utf-8")
    reader = FixedReader("12가3456")
    report = evaluate_dataset(TruthBackend(folder), folder, NAMES, progress=False, reader=reader, crop_pad=0.0)
    lpr = dict(report.extra["lpr"])
    # both plates are 6 px tall and over 2.6 times as wide (32 x 6, 20 x 6)
    assert lpr.pop("by_size") == [{"shape": "wide", "height_px": [0, 12], "plates": 2, "found": 2, "read": 1}]
    assert lpr == {"plates": 2, "found": 2, "read": 1, "accuracy": 0.5, "accuracy_found": 0.5}
    # the detected plate boxes, cropped without pad (outer edges rounded outwards: +1 px where float rounding
    # bites); the reader's confident valid reads are not read again
    assert sorted(w for _, w in reader.shapes) == [20, 32] and all(h in (6, 7) for h, _ in reader.shapes)
    # a detector that misses plates: nothing found, nothing read
    report = evaluate_dataset(TruthBackend(folder, drop_class=1), folder, NAMES, progress=False,
                              reader=FixedReader("12가3456"))
    assert report.extra["lpr"]["found"] == 0 and report.extra["lpr"]["accuracy"] == 0.0


class DropBox(TruthBackend):
    """Returns the labels of the image except its box number ``skip``, each ``grow`` times as tall."""

    def __init__(self, folder: Path, skip: int, grow: float = 1.0):
        super().__init__(folder)
        self.skip = skip
        self.grow = grow

    def detect(self, bgr, score_threshold=0.25, iou_threshold=0.45) -> List[Detection]:
        out = []
        for k, d in enumerate(super().detect(bgr, score_threshold, iou_threshold)):
            if k != self.skip:
                x1, y1, x2, y2 = d.box
                half = (y2 - y1) * self.grow / 2
                out.append(Detection((x1, (y1 + y2) / 2 - half, x2, (y1 + y2) / 2 + half), d.score, d.class_id,
                                     d.class_name))
        return out


def test_plate_reads_by_size(tmp_path):
    """Counts split by the labelled plate's height in px and shape (narrow: width < 2.6 x height)."""
    from core.evaluation import size_table

    d = tmp_path / "sizes"
    d.mkdir()
    cv2.imwrite(str(d / "s.png"), np.full((400, 400, 3), 100, np.uint8))
    cv2.imwrite(str(d / "t.png"), np.full((416, 416, 3), 100, np.uint8))
    (d / "s.txt").write_text(
        "1 0.2 0.2 0.1 0.0525 서울12가3456\n"  # 40 x 21 px: narrow, 20-28
        "1 0.5 0.5 0.25 0.035 12가3456\n"  # 100 x 14: wide, 12-16
        "1 0.7 0.8 0.2 0.125 34나5678\n"  # 80 x 50: narrow, >= 40; not detected
        "1 0.3 0.65 0.13 0.05 12가3456\n"  # 52 x 20, exactly 2.6 times as wide: wide, 20-28
        "1 0.7 0.3 0.1275 0.05 34나5678\n"  # 51 x 20: narrow, 20-28
        "1 0.2 0.9 0.1 0.04 12가3456\n",  # 40 x 16: narrow, 16-20 (16 is in the upper bin)
        encoding="utf-8")
    # 0.028846 x 416 = 11.999936 px: a 12 px plate written with 6 decimals, wide, 12-16
    (d / "t.txt").write_text("1 0.5 0.5 0.3 0.028846 12가3456\n", encoding="utf-8")
    # detections 1.2 times as tall as the labels (IoU 0.83): the bins follow the labels, not the detections
    report = evaluate_dataset(DropBox(d, skip=2, grow=1.2), d, NAMES, progress=False,
                              reader=FixedReader("12가3456"), crop_pad=0.0)
    rows = report.extra["lpr"]["by_size"]
    assert rows == [
        {"shape": "narrow", "height_px": [16, 20], "plates": 1, "found": 1, "read": 1},
        {"shape": "narrow", "height_px": [20, 28], "plates": 2, "found": 2, "read": 0},
        {"shape": "narrow", "height_px": [40, None], "plates": 1, "found": 0, "read": 0},
        {"shape": "wide", "height_px": [12, 16], "plates": 2, "found": 2, "read": 2},
        {"shape": "wide", "height_px": [20, 28], "plates": 1, "found": 1, "read": 1},
    ]
    lpr = report.extra["lpr"]
    assert (lpr["plates"], lpr["found"], lpr["read"]) == (7, 6, 4)
    table = size_table(rows).splitlines()
    assert table[2].split() == ["narrow", ">=40", "px:", "1", "plates,", "0", "found,", "0", "read", "(0.000)"]
    assert table[3].split() == ["wide", "12-16", "px:", "2", "plates,", "2", "found,", "2", "read", "(1.000)"]
