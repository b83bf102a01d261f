"""How well a read's format validity and CTC confidence separate right from wrong reads, on labelled crops.

The figures behind ``detect_video.py``'s event defaults (``core.tracking.EventFilter``, applied here
through its own ``keeps``): for each confidence threshold, how many reads of the crops are kept and how
many of those are right, with and without the format-valid condition. These are single reads of single
crops; an event's confidence is the mean over the frames that voted for its text.

    python -m tools.event_filter_check                                   # shipped readers, ../shared crops
    python -m tools.event_filter_check --charset cn --images DIR --weights lprnet-cn-int8.tflite
    python -m tools.event_filter_check --charset cn --home_region 皖        # reads leaning to a home province

Crops are named by their plate text (``lprnet.dataset``), as in ``../shared/data/cn_plates_dev``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from absl import app, flags

from core.cli import guarded
from core.errors import AlprError
from core.tracking import EventFilter, Read, usable_min_confidence
from tools.recipe import REPO, SHARED

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined only when run as a script: importing ``table`` (the tests) must not claim absl's global flag
    names, which other front ends define too."""
    flags.DEFINE_enum("charset", None, ["kr", "cn"], "one reader only (default: both)")
    flags.DEFINE_string("images", None, "crop folder or label file (default: ../shared/data/<charset>_plates_dev)")
    flags.DEFINE_string("weights", None, "reader .tflite (default: checkpoints/lprnet-<charset>-int8.tflite)")
    flags.DEFINE_list("thresholds", ["0", "0.05", "0.1", "0.2", "0.3", "0.5", "0.7"], "confidence thresholds")
    flags.DEFINE_string("home_region", None, "the province (cn) or region (kr) the reads lean to, or several "
                        "comma-separated, as detect_video.py --home_region at its default weight (needs --charset; "
                        "default: none)")


# (read, right) per crop
Row = Tuple[Read, bool]


def read_rows(charset_name: str, images: str, weights: str, home_region: Optional[str] = None) -> List[Row]:
    """Read every crop with the reader as video does (one pass, no test-time zoom: ``detect_video.py``'s
    default), leaning to ``home_region`` if given, and compare with the crop's text."""
    from lprnet.charset import load_charset
    from lprnet.dataset import list_samples, load_crops
    from lprnet.evaluate import load_backend
    from lprnet.home import parse_home
    from lprnet.reader import read_crops

    charset = load_charset(charset_name)
    home = parse_home(home_region, charset)
    crops, texts = load_crops(list_samples(images, charset))
    logits_fn, _ = load_backend(weights, charset)
    reads = read_crops(crops, logits_fn, charset, batch_size=64, tta=False, retry_cuts=False,  # as video reads
                       home=home)
    return [(Read(r.text, float(r.confidence), bool(r.valid)), r.text == t) for r, t in zip(reads, texts)]


def table(rows: Sequence[Row], thresholds: Sequence[float]) -> List[str]:
    """One line per threshold: kept / right among kept, for any read and for format-valid reads only."""
    lines = [f"{'min conf':>8}  {'any read: kept  right  wrong':>28}  {'valid only: kept  right  wrong':>30}"]
    for t in thresholds:
        cells = []
        for valid_only in (False, True):
            rule = EventFilter(t, include_invalid=not valid_only)
            kept = [right for read, right in rows if rule.keeps(read)]
            right = sum(kept)
            cells.append(f"{len(kept):>5} {right:>6} {len(kept) - right:>6}")
        lines.append(f"{t:>8g}  {cells[0]:>28}  {cells[1]:>30}")
    invalid = [right for read, right in rows if not read.valid]
    lines.append(f"format-invalid reads: {len(invalid)} of {len(rows)}, right: {sum(invalid)}")
    return lines


def main(argv: Sequence[str]) -> None:
    del argv
    thresholds = []
    for t in FLAGS.thresholds:
        try:
            thresholds.append(float(t))
        except ValueError:
            raise AlprError(f"--thresholds: {t!r} is not a number") from None
        if not usable_min_confidence(thresholds[-1]):  # here, or EventFilter's message would name its own flag
            raise AlprError(f"--thresholds: {t!r} is not in [0, 1]")
    charsets = [FLAGS.charset] if FLAGS.charset else ["kr", "cn"]
    if (FLAGS.images or FLAGS.weights or FLAGS.home_region) and len(charsets) > 1:
        raise AlprError("--images, --weights and --home_region need --charset")
    for name in charsets:
        images: Optional[str] = FLAGS.images or str(SHARED / "data" / f"{name}_plates_dev")
        if not Path(images).exists():
            raise AlprError(f"no crops at {images} (pass --images)")
        weights = FLAGS.weights or str(REPO / "checkpoints" / f"lprnet-{name}-int8.tflite")
        rows = read_rows(name, images, weights, FLAGS.home_region)
        home = f", leaning to {FLAGS.home_region}" if FLAGS.home_region else ""
        print(f"{name}: {len(rows)} crops from {images}, reader {weights}{home}")
        print("\n".join(table(rows, thresholds)))


if __name__ == "__main__":
    define_flags()
    app.run(guarded(main))
