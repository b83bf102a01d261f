"""core.detector: hand-computed decoding through a stub backend, quantized I/O, real tiny models, errors."""
from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pytest

from core.detector import Detector, StageTimings, TFLiteBackend, _Quant
from core.errors import AlprError
from core.model_info import OUTPUT_RAW, ModelInfo, YoloHead, save_model_info
from tests.test_tflite_export import TINY_NAMES, tiny_models


class StubBackend:
    """Returns a fixed raw head whatever the input; records the input it was given."""

    kind = "stub"

    def __init__(self, outputs):
        self.outputs = outputs
        self.seen = None

    def input_from_rgb(self, rgb):
        return rgb[None].astype(np.float32) / 255.0

    def quantize_input(self, x):
        return x

    def run(self, x):
        self.seen = x
        return self.outputs


def _hand_model(score_threshold: float = 0.3) -> Detector:
    """64x64 input, one 4x4 head, anchor (32, 8) px, 2 classes; one confident cell at row 1, col 2."""
    info = ModelInfo(input_size=(64, 64), class_names=("a", "b"),
                     heads=(YoloHead(grid=(4, 4), anchors=((32.0, 8.0),)),), output=OUTPUT_RAW,
                     source={"score_threshold": score_threshold})
    raw = np.full((1, 4, 4, 7), -20.0, np.float32)
    raw[0, 1, 2] = [0.0, 0.0, 0.0, 0.0, 20.0, 0.0, math.log(0.9 / 0.1)]  # tx ty tw th obj cls_a cls_b
    return Detector(StubBackend({"head_0": raw}), info)


def test_decoding_by_hand_in_original_pixels():
    det = _hand_model()
    img = np.zeros((64, 128, 3), np.uint8)  # 128 wide, 64 high: scale 0.5, 16 px bands top and bottom
    out = det.detect(img)
    # cell centre (2.5/4, 1.5/4) of 64 px = (40, 24); size 32 x 8 -> input box (24, 20, 56, 28)
    # original: x / 0.5, (y - 16) / 0.5 -> (48, 8, 112, 24); class b 0.9, class a 0.5 (same box)
    assert [(d.class_name, round(d.score, 4)) for d in out] == [("b", 0.9), ("a", 0.5)]
    for d in out:
        assert np.allclose(d.box, (48, 8, 112, 24), atol=1e-3)
    assert det.detect(img, score_threshold=0.6)[0].class_name == "b" and len(det.detect(img, 0.6)) == 1
    assert det.detect(img, score_threshold=0.95) == []
    # the default threshold is the model's (0.3 here; 0.55 drops class a)
    assert len(_hand_model(0.55).detect(img)) == 1
    # the letterbox grey bands reached the backend: rows 0..15 are 128/255
    seen = det.backend.seen
    assert seen.shape == (1, 64, 64, 3) and np.allclose(seen[0, :16], 128 / 255) and np.allclose(seen[0, 16:48], 0)


def test_stage_timings_recorded():
    det = _hand_model()
    assert det.last_timings is None
    det.detect(np.zeros((50, 70, 3), np.uint8))
    t = det.last_timings
    assert isinstance(t, StageTimings)
    assert t.preprocess_ms >= 0 and t.inference_ms >= 0 and t.postprocess_ms > 0
    assert t.total_ms == pytest.approx(t.preprocess_ms + t.inference_ms + t.postprocess_ms)


def _bare_tflite_backend(input_quant: _Quant) -> TFLiteBackend:
    b = object.__new__(TFLiteBackend)
    b.input_quant = input_quant
    return b


def test_quantized_input_from_pixels():
    rgb = np.array([[[0, 51, 255], [128, 1, 254]]], np.uint8)
    u8 = _bare_tflite_backend(_Quant(1 / 255, 0, np.dtype(np.uint8))).input_from_rgb(rgb)
    assert u8.dtype == np.uint8 and np.array_equal(u8[0], rgb)
    i8 = _bare_tflite_backend(_Quant(1 / 255, -128, np.dtype(np.int8))).input_from_rgb(rgb)
    assert i8.dtype == np.int8 and i8[0].tolist() == [[[-128, -77, 127], [0, -127, 126]]]
    # a general scale/zero point: q = round(p / 255 / 0.01 + 3), clipped to int8
    g = _bare_tflite_backend(_Quant(0.01, 3, np.dtype(np.int8))).input_from_rgb(rgb)
    assert g[0].tolist() == [[[3, 23, 103], [53, 3, 103]]]
    f = _bare_tflite_backend(_Quant(0.0, 0, np.dtype(np.float32))).input_from_rgb(rgb)
    assert f.dtype == np.float32 and np.allclose(f[0], rgb / 255.0)


def test_quantized_output_dequantized():
    class FakeInterp:
        def set_tensor(self, index, x):
            self.x = x

        def invoke(self):
            pass

        def get_tensor(self, index):
            return np.array([-128, 0, 127], np.int8)

    b = object.__new__(TFLiteBackend)
    b.interpreter, b._in = FakeInterp(), {"index": 0}
    b.outputs = {"head_0": {"index": 1}}
    b.output_quant = {"head_0": _Quant(0.5, 10, np.dtype(np.int8))}
    assert b.run(np.zeros(1)).get("head_0").tolist() == [-69.0, -5.0, 58.5]


# ----------------------------------------------------------------------------- real tiny models
@pytest.fixture(scope="module")
def tiny():
    return tiny_models()


@pytest.fixture(scope="module")
def scene(tiny):
    return cv2.imread(str(sorted(tiny["calib"].glob("*.png"))[3]))



def _assert_same(a, b):
    assert [d.class_id for d in a] == [d.class_id for d in b]
    assert np.allclose([d.score for d in a], [d.score for d in b], atol=1e-4)
    assert np.allclose([d.box for d in a], [d.box for d in b], atol=1e-2)


def test_tflite_float32_matches_saved_model(tiny, scene):
    sm = Detector.open(tiny["saved_model"], num_threads=2)
    tfl = Detector.open(tiny["float32"], num_threads=2)
    assert sm.backend.kind == "saved_model" and tfl.backend.kind == "tflite"
    a, b = sm.detect(scene, 0.5), tfl.detect(scene, 0.5)
    assert 3 <= len(a) <= 200
    _assert_same(a, b)
    h, w = scene.shape[:2]
    assert all(0 <= d.box[0] <= d.box[2] <= w and 0 <= d.box[1] <= d.box[3] <= h for d in a)
    assert all(d.class_name == TINY_NAMES[d.class_id] for d in a)
    assert tfl.default_score_threshold == 0.3 and tfl.quantization == "float32"


def test_decoded_saved_model_matches_raw(tiny, scene, tmp_path):
    from core.keras.convert import convert_darknet

    out = tmp_path / "decoded"
    convert_darknet(str(tiny["cfg"]), str(tiny["weights"]), output=str(out), classes=str(tiny["names"]),
                    framework="tf", verify=False)
    dec, raw = Detector.open(out), Detector.open(tiny["float32"])
    a, b = dec.detect(scene, 0.5), raw.detect(scene, 0.5)
    assert 3 <= len(a) <= 200
    _assert_same(a, b)


def test_int8_detector_close_to_float(tiny):
    f32, i8 = Detector.open(tiny["float32"]), Detector.open(tiny["int8"])
    assert i8.backend.input_quant.is_quantized and i8.quantization == "int8"
    scores32, scores8 = [], []
    for p in sorted(tiny["calib"].glob("*.png"))[:6]:
        img = cv2.imread(str(p))
        b32, s32 = f32.candidates(f32.infer(f32.preprocess(img)[0]))
        b8, s8 = i8.candidates(i8.infer(i8.preprocess(img)[0]))
        scores32.append(s32)
        scores8.append(s8)
        live = s32.max(axis=1) > 0.05  # candidates that can become detections
        assert live.sum() >= 3
        assert np.median(np.abs(b8[live] - b32[live])) < 0.02  # box coordinates as fractions of the input
    s32, s8 = np.concatenate(scores32).ravel(), np.concatenate(scores8).ravel()
    assert np.corrcoef(s32, s8)[0, 1] > 0.95


def test_class_names_override(tiny, scene, tmp_path):
    det = Detector.open(tiny["float32"], class_names=["x", "y", "z"])
    assert det.class_names == ("x", "y", "z")
    assert {d.class_name for d in det.detect(scene, 0.05)} <= {"x", "y", "z"}
    names = tmp_path / "two.names"
    names.write_text("car\nplate\n")
    with pytest.raises(AlprError, match="the class file has 2 names but the model predicts 3 classes"):
        Detector.open(tiny["float32"], class_names=names)


def test_sidecar_that_does_not_fit_the_model(tiny, tmp_path):
    from core.model_info import load_model_info

    model = tmp_path / "m.tflite"
    shutil.copy(tiny["float32"], model)
    info = load_model_info(tiny["float32"])
    save_model_info(model, ModelInfo(info.input_size, info.class_names + ("extra",), info.heads, info.output,
                                     info.letterbox, info.source))
    with pytest.raises(AlprError) as exc:
        Detector.open(model)
    msg = str(exc.value)
    assert "\n" not in msg and "does not match" in msg and "4 classes" in msg and "[1, 8, 8, 24]" in msg


def test_bad_models_and_images(tiny, tmp_path):
    with pytest.raises(AlprError, match="model not found"):
        Detector.open(tmp_path / "nope.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    shutil.copy(str(tiny["float32"]) + ".json", str(junk) + ".json")
    with pytest.raises(AlprError, match="not a TFLite model"):
        Detector.open(junk)
    trunc = tmp_path / "trunc.tflite"
    trunc.write_bytes(tiny["float32"].read_bytes()[:3000])
    shutil.copy(str(tiny["float32"]) + ".json", str(trunc) + ".json")
    with pytest.raises(AlprError, match="cannot load TFLite model .*trunc.tflite"):
        Detector.open(trunc)
    bare = tmp_path / "bare.tflite"
    shutil.copy(tiny["float32"], bare)
    with pytest.raises(AlprError, match="no metadata file bare.tflite.json"):
        Detector.open(bare)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "alpr_model.json").write_text(json.dumps({"input_size": [64, 64], "class_names": ["a"],
                                                          "heads": []}))
    with pytest.raises(AlprError, match="not a SavedModel"):
        Detector.open(folder)
    det = Detector.open(tiny["float32"])
    with pytest.raises(AlprError, match="could not be decoded"):
        det.detect(None)
    with pytest.raises(AlprError, match="not an image"):
        det.detect(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(AlprError, match="uint8"):
        det.detect(np.zeros((8, 8, 3), np.float32))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    with pytest.raises(AlprError, match="not an image or corrupt"):
        det.detect_file(broken)
    with pytest.raises(AlprError, match=r"thresholds must lie in \[0, 1\]"):
        det.detect(np.zeros((8, 8, 3), np.uint8), score_threshold=1.5)


def test_grey_and_bgra_images(tiny):
    det = Detector.open(tiny["float32"])
    bgr = cv2.imread(str(sorted(tiny["calib"].glob("*.png"))[0]))
    _assert_same(det.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), 0.5), det.detect(bgr, 0.5))
    assert isinstance(det.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 0.05), list)



def _random_two_head_model(new_coords: bool):
    heads = (YoloHead(grid=(4, 4), anchors=((30.0, 20.0), (50.0, 60.0)), scale_x_y=1.05),
             YoloHead(grid=(8, 8), anchors=((8.0, 6.0), (12.0, 16.0)), scale_x_y=1.0, new_coords=new_coords))
    info = ModelInfo(input_size=(64, 64), class_names=("a", "b", "c"), heads=heads, output=OUTPUT_RAW)
    rng = np.random.default_rng(int(new_coords))
    raws = [rng.normal(-1.0, 2.0, (1, 4, 4, 16)).astype(np.float32),
            rng.normal(-1.0, 2.0, (1, 8, 8, 16)).astype(np.float32)]
    if new_coords:
        raws[1] = 1.0 / (1.0 + np.exp(-raws[1]))
    return info, {"head_0": raws[0], "head_1": raws[1]}


@pytest.mark.parametrize("new_coords", [False, True])
def test_filtered_decoding_equals_full_decoding(new_coords):
    from core.yolo import decode_heads, filter_and_nms, letterbox_params

    info, outs = _random_two_head_model(new_coords)
    det = Detector(StubBackend(outs), info)
    lb = letterbox_params(64, 64, 64, 64)
    for thr in (0.0, 0.05, 0.3, 0.7):
        boxes, scores = decode_heads([outs["head_0"][0], outs["head_1"][0]], info.heads, 3, 64, 64)
        rb, rs, rc = filter_and_nms(boxes, scores, thr, 0.45)
        got = det.postprocess(outs, lb, thr, 0.45)
        assert len(got) == len(rb) > 0 or thr == 0.7
        assert [d.class_id for d in got] == rc.tolist()
        assert np.allclose([d.score for d in got], rs, atol=1e-6)
        assert np.allclose(np.array([d.box for d in got]).reshape(-1, 4), np.clip(rb * 64, 0, 64), atol=1e-3)


def test_candidate_cap_keeps_the_best_pairs():
    info, outs = _random_two_head_model(False)
    det = Detector(StubBackend(outs), info)
    full_b, full_s = det.candidates_above(outs, 0.0)
    det.max_candidates = 10
    b, s = det.candidates_above(outs, 0.0)
    kept = np.sort(s[s >= 0.0])[::-1]
    assert kept.size == 10 and np.allclose(kept, np.sort(full_s.ravel())[::-1][:10])
    assert b.shape[0] == s.shape[0] <= 10
