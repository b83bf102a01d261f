"""The reader's test-time zoom (lprnet.preprocess.zoom, lprnet.reader.zoomed_logits / read_crops)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax

from lprnet.charset import load_charset
from lprnet.preprocess import TTA_ZOOMS, zoom
from lprnet.reader import read_crops, zoomed_logits


def _ramps(n: int = 2, h: int = 24, w: int = 94) -> np.ndarray:
    """Channel 0 = x, channel 1 = y, channel 2 = a constant: bilinear sampling of these is exact."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    one = np.stack([xs, ys, np.full_like(xs, 0.25)], axis=-1)
    return np.stack([one] * n)


@pytest.mark.parametrize("scale", [1.06, 0.94, 1.5, 0.5])
def test_zoom_samples_about_the_centre(scale: float) -> None:
    """Pixel x of the result is the input at c + (x - c) / scale (c = (w - 1) / 2), clamped to the image
    where it falls outside (edges replicated); by hand for a linear ramp, per axis."""
    out = zoom(_ramps(), scale)
    assert out.shape == (2, 24, 94, 3) and out.dtype == np.float32
    cx, cy = 46.5, 11.5
    want_x = np.clip(cx + (np.arange(94) - cx) / scale, 0, 93)
    want_y = np.clip(cy + (np.arange(24) - cy) / scale, 0, 23)
    # OpenCV's warp resolves sample positions to 1/32 pixel
    np.testing.assert_allclose(out[0, 5, :, 0], want_x, atol=1 / 32 + 1e-4)
    np.testing.assert_allclose(out[1, :, 40, 1], want_y, atol=1 / 32 + 1e-4)
    np.testing.assert_allclose(out[..., 2], 0.25, atol=1e-6)


def test_zoom_by_one_is_the_identity_and_keeps_single_channels() -> None:
    x = np.random.default_rng(0).normal(size=(3, 24, 94, 1)).astype(np.float32)
    out = zoom(x, 1.0)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, x, atol=1e-6)
    assert zoom(np.zeros((0, 24, 94, 3), np.float32), 1.06).shape == (0, 24, 94, 3)


def test_zoom_rejects_a_single_image() -> None:
    with pytest.raises(Exception, match="N,H,W,C"):
        zoom(np.zeros((24, 94, 3), np.float32), 1.06)


def _recording_model(rng_seed: int = 1):
    """A fake reader: logits depend on the pixels (a fixed random projection), every call recorded."""
    proj = np.random.default_rng(rng_seed).normal(size=(24 * 94 * 3, 18 * 68)).astype(np.float32) * 0.05
    calls = []

    def logits_fn(x: np.ndarray) -> np.ndarray:
        calls.append(np.array(x))
        return (x.reshape(len(x), -1) @ proj).reshape(len(x), 18, 68)

    return logits_fn, calls


def test_zoomed_logits_average_the_passes_log_probabilities() -> None:
    x = np.random.default_rng(2).uniform(-1, 1, size=(4, 24, 94, 3)).astype(np.float32)
    fn, calls = _recording_model()
    got = zoomed_logits(x, fn, (1.06, 0.94))
    # one call holding the plain batch, then each zoom's, in that order
    assert len(calls) == 1 and calls[0].shape == (12, 24, 94, 3)
    np.testing.assert_array_equal(calls[0][:4], x)
    np.testing.assert_array_equal(calls[0][4:8], zoom(x, 1.06))
    np.testing.assert_array_equal(calls[0][8:], zoom(x, 0.94))
    plain = fn(x)
    want = (log_softmax(plain, -1) + log_softmax(fn(zoom(x, 1.06)), -1) + log_softmax(fn(zoom(x, 0.94)), -1)) / 3
    np.testing.assert_allclose(got, want, atol=1e-4)
    # smaller batches give the same result
    fn2, calls2 = _recording_model()
    np.testing.assert_allclose(zoomed_logits(x, fn2, (1.06, 0.94), batch_size=5), got, atol=1e-5)
    assert [len(c) for c in calls2] == [5, 5, 2]


def test_zoomed_logits_without_zooms_are_the_model_s_logits() -> None:
    x = np.random.default_rng(3).uniform(-1, 1, size=(2, 24, 94, 3)).astype(np.float32)
    fn, calls = _recording_model()
    np.testing.assert_array_equal(zoomed_logits(x, fn, ()), fn(x))
    assert len(calls) == 2 and len(calls[0]) == 2


def _peaked(text_ids, charset, strength: float) -> np.ndarray:
    """[18, classes] logits: the symbols of ``text_ids`` on odd frames, blank elsewhere."""
    steps = np.full(18, charset.blank)
    steps[1 : 2 * len(text_ids) : 2] = text_ids
    out = np.zeros((18, charset.num_classes), np.float32)
    out[np.arange(18), steps] = strength
    return out


def test_read_crops_sends_three_passes_and_the_average_decides() -> None:
    """The plain pass reads 12가3457 weakly, both zoomed passes 12가3456 firmly: with the zoom the
    average reads 12가3456, without it the plain read stands."""
    cs = load_charset("kr")
    weak = _peaked(cs.encode("12가3457"), cs, 2.0)
    firm = _peaked(cs.encode("12가3456"), cs, 6.0)
    seen = []

    def fn(x: np.ndarray) -> np.ndarray:
        seen.append(len(x))
        # one wide crop -> one candidate; the passes arrive as [plain, zoom a, zoom b]
        return np.stack([weak] + [firm] * (len(x) - 1)) if len(x) == 3 else np.stack([weak] * len(x))

    crop = np.full((24, 94, 3), 128, np.uint8)
    with_tta = read_crops([crop], fn, cs, decoder="greedy")
    without = read_crops([crop], fn, cs, decoder="greedy", tta=False)
    assert seen == [1 + len(TTA_ZOOMS), 1]
    assert with_tta[0].text == "12가3456"
    assert without[0].text == "12가3457"
