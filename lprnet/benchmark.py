"""Per-plate latency of a TFLite reader (edge runtime, TF-free): batch of 1, the whole read() path.

python -m lprnet.benchmark --model reader.tflite --charset cn [--images DIR] [--runs 300] [--threads 2]
    [--decoder format|greedy|beam] [--notta] [--province CHECK.tflite[,CHECK2.tflite]] [--home_region 皖]

Reports the median and 90th percentile of (a) the interpreter alone and (b) PlateReader.read on one
crop (resize + normalise + invoke + CTC decode with ``decoder``, the runtime's by default; with the
runtime's test-time zoom unless ``--notta``, the checks with ``--province``, leaning to ``--home_region``), after
warm-up runs.
"""
from __future__ import annotations

import json
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from lprnet.ctc import DECODERS


def _stats(times_s: List[float]) -> Dict[str, float]:
    ms = np.asarray(times_s) * 1000.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms)}


def benchmark(
    model_path: str,
    charset: str,
    crops: Optional[Sequence[np.ndarray]] = None,
    runs: int = 300,
    warmup: int = 20,
    num_threads: Optional[int] = None,
    decoder: str = DECODERS[0],
    tta: bool = True,
    retry_cuts: bool = True,
    province: Optional[str] = None,
    home_region: Optional[str] = None,
) -> Dict[str, Dict[str, float]]:
    """Latency of the interpreter and of a full one-plate read, batch of 1; ``province``: check models
    (``lprnet.province``, comma-separated, run in order) checking each read; opt-in here, no check without it;
    ``home_region``: the province or region the reads lean to (``lprnet.home``)."""
    from core.pipeline import NO_PROVINCE, open_plate_reader
    from lprnet.home import home_record

    reader = open_plate_reader(model_path, charset, num_threads, decoder, tta, retry_cuts, province or NO_PROVINCE,
                               home_region)
    if not crops:
        rng = np.random.default_rng(0)
        crops = [rng.integers(0, 256, size=(24, 94, 3), dtype=np.uint8)]
    from lprnet.preprocess import preprocess_batch

    batches = [preprocess_batch([c]) for c in crops[:64]]
    for i in range(warmup):
        reader.logits(batches[i % len(batches)])
    invoke, read = [], []
    for i in range(runs):
        b = batches[i % len(batches)]
        t0 = time.perf_counter()
        reader.logits(b)
        invoke.append(time.perf_counter() - t0)
    for i in range(runs):
        c = crops[i % len(crops)]
        t0 = time.perf_counter()
        reader.read([c])
        read.append(time.perf_counter() - t0)
    from lprnet.province import check_record

    # the checks as read() ran them: a check's gate decides how many reads pay for it
    return {"interpreter": _stats(invoke), "read": _stats(read), **check_record(reader.province),
            **home_record(reader.home)}


def main(argv: Sequence[str]) -> None:
    from absl import flags

    from lprnet.charset import load_charset
    from lprnet.dataset import list_samples, read_image

    del argv
    f = flags.FLAGS
    crops = None
    if f.images:
        listing = list_samples(f.images, load_charset(f.charset))
        crops = [read_image(s.path) for s in listing.samples[:64]]
    result = benchmark(f.model, f.charset, crops, f.runs, num_threads=f.threads, decoder=f.decoder, tta=f.tta,
                       retry_cuts=f.retry, province=f.province, home_region=f.home_region)
    result["model"] = f.model  # type: ignore[assignment]
    result["threads"] = f.threads  # type: ignore[assignment]
    result["decoder"] = f.decoder  # type: ignore[assignment]
    result["tta"] = f.tta  # type: ignore[assignment]
    result["retry_cuts"] = f.retry  # type: ignore[assignment]
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    from absl import app, flags

    from core.cli import guarded

    flags.DEFINE_string("model", None, "TFLite reader model")
    flags.DEFINE_string("charset", "cn", "charset (cn, kr or a file)")
    flags.DEFINE_string("images", None, "optional folder of real crops (else a random crop)")
    flags.DEFINE_integer("runs", 300, "timed runs")
    flags.DEFINE_integer("threads", 2, "interpreter threads")
    flags.DEFINE_enum("decoder", DECODERS[0], list(DECODERS), "CTC decoding of read()")
    flags.DEFINE_boolean("tta", True, "read() also zoomed in and out, as the runtime does (--notta: one pass)")
    flags.DEFINE_boolean("retry", True, "read() retries weak reads of narrow crops with other line cuts, as "
                         "detect.py does; --notta --noretry: as detect_video.py reads")
    flags.DEFINE_string("province", None, "checks of each read (lprnet.province: province and top-line "
                        "letter (cn), region, top-line digits and Hangul letter (kr); comma-separated, run in "
                        "order), as detect.py does by default; they act only on crops more than 24 rows tall (not "
                        "on 94x24 crops, nor on the random crop used without --images), and a gated check only on "
                        "reads less sure than its read_confidence_below")
    flags.DEFINE_string("home_region", None, "the province (cn) or region (kr) the reads lean to, or several "
                        "comma-separated, as detect.py --home_region at its default weight (lprnet.home; default: "
                        "none)")
    flags.mark_flag_as_required("model")
    app.run(guarded(main))
