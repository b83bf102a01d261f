"""Detector latency per stage: TF SavedModel, TFLite float32/float16/int8 and OpenCV DNN, in one run.

    python benchmarks.py --cfg yolov4-tiny.cfg --weights yolov4-tiny.weights --input_size 416 \
        --image frame.jpg --threads 2 --runs 100 --out_dir runs/bench

Without ``--weights`` the cfg gets seeded random weights (the speed of a network does not depend on
its weights; the detections do). The .cfg/.weights are converted once (SavedModel with raw heads,
then the three TFLite models; int8 calibrated on ``--calib`` or, without it, on augmented crops of
the frame), then each backend runs in its own process, so that its peak RSS is its own and
TensorFlow is never loaded next to the TFLite runs. A backend warms up, then ``detect`` runs
``--runs`` times on the same frame (resized to ``--frame_size``, 720p by default); the table gives
the median and 90th percentile of each stage: pre-process (letterbox / blobFromImage), inference,
post-process (decode + score filter + NMS + back to frame pixels). OpenCV DNN runs the same
.cfg/.weights with its own pre-processing (blobFromImage) and NMS (NMSBoxesBatched).

Writes ``benchmark.md`` and ``benchmark.json`` into ``--out_dir``.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from core.cli import atomic_path, guarded  # noqa: E402
from core.errors import AlprError  # noqa: E402

BACKENDS = ("tf", "tflite_fp32", "tflite_fp16", "tflite_int8", "opencv")
LABELS = {"tf": "TF SavedModel", "tflite_fp32": "TFLite float32", "tflite_fp16": "TFLite float16",
          "tflite_int8": "TFLite int8", "opencv": "OpenCV DNN"}
STAGES = ("preprocess_ms", "inference_ms", "postprocess_ms", "total_ms")

FLAGS = flags.FLAGS
flags.DEFINE_string("cfg", None, "Darknet .cfg")
flags.DEFINE_string("weights", None, "Darknet .weights (default: seeded random weights)")
flags.DEFINE_string("classes", None, "class names file (default: data/classes/*.names that fits, else generic)")
flags.DEFINE_integer("input_size", 416, "network input size")
flags.DEFINE_string("image", None, "frame to run on: an image, or a video (its first frame)")
flags.DEFINE_string("frame_size", "1280x720", "resize the frame to WxH before the runs ('' keeps it)")
flags.DEFINE_string("calib", None, "int8 calibration images (folder/glob/list); default: crops of --image")
flags.DEFINE_integer("calib_count", 100, "int8 calibration images to use")
flags.DEFINE_list("backends", list(BACKENDS), "backends to run")
flags.DEFINE_integer("threads", 2, "threads for every backend")
flags.DEFINE_integer("runs", 100, "timed runs per backend, split over --rounds")
flags.DEFINE_integer("rounds", 3, "run the backends in turn this many times (each a fresh process), so that a "
                     "busy spell on a shared machine does not fall on one backend only")
flags.DEFINE_integer("warmup", 10, "untimed runs first")
flags.DEFINE_float("score", 0.25, "score threshold")
flags.DEFINE_float("iou", 0.45, "NMS IoU threshold")
flags.DEFINE_integer("seed", 0, "seed of the random weights")
flags.DEFINE_float("head_gain", 1.0, "random weights: gain of the layers feeding the yolo heads")
flags.DEFINE_float("obj_bias", -4.0, "random weights: objectness bias, so that few anchors score high "
                   "(as in a trained model; NMS time depends on it)")
flags.DEFINE_float("cls_bias", -3.0, "random weights: added to the class biases (a trained model is sure of one "
                   "class, not of half of them); with the defaults, about 30 detections on a 720p road frame")
flags.DEFINE_string("out_dir", "runs/bench", "where benchmark.md and benchmark.json go")
flags.DEFINE_string("work_dir", None, "keep the converted models here (default: a temp folder, removed)")
flags.DEFINE_string("worker", None, "internal: run one backend from this JSON spec and print JSON")


# ----------------------------------------------------------------------------- one backend (child process)
def _peak_rss_mb() -> Optional[float]:
    """This process's peak resident set. VmHWM first: ``ru_maxrss`` survives exec on Linux, so a child
    would report its parent's peak when that was higher."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _opencv_runner(spec: dict):
    import cv2

    cv2.setNumThreads(spec["threads"])
    net = cv2.dnn.readNetFromDarknet(spec["cfg"], spec["weights"])
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    names = net.getUnconnectedOutLayersNames()
    size = spec["input_size"]

    def run(frame):
        t0 = time.perf_counter()
        blob = cv2.dnn.blobFromImage(frame, 1 / 255.0, (size, size), swapRB=True, crop=False)
        t1 = time.perf_counter()
        net.setInput(blob)
        outs = net.forward(names)
        t2 = time.perf_counter()
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in outs])
        scores = rows[:, 5:]  # OpenCV's region layer already multiplied them by the objectness
        idx, cls = np.nonzero(scores >= spec["score"])
        h, w = frame.shape[:2]
        c = rows[idx]
        boxes = np.stack([(c[:, 0] - c[:, 2] / 2) * w, (c[:, 1] - c[:, 3] / 2) * h, c[:, 2] * w, c[:, 3] * h], 1)
        keep = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores[idx, cls].tolist(), cls.tolist(), spec["score"],
                                       spec["iou"]) if len(idx) else []
        n = len(np.asarray(keep).reshape(-1))
        t3 = time.perf_counter()
        return n, ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)

    return run


def _detector_runner(spec: dict):
    from core.detector import Detector

    det = Detector.open(spec["model"], num_threads=spec["threads"])

    def run(frame):
        dets = det.detect(frame, spec["score"], spec["iou"])
        t = det.last_timings
        return len(dets), (t.preprocess_ms, t.inference_ms, t.postprocess_ms)

    return run


def run_worker(spec: dict) -> dict:
    import cv2

    frame = cv2.imread(spec["frame"])
    run = _opencv_runner(spec) if spec["backend"] == "opencv" else _detector_runner(spec)
    for _ in range(spec["warmup"]):
        run(frame)
    times: List[tuple] = []
    count = 0
    cpu0 = time.process_time()
    for _ in range(spec["runs"]):
        count, t = run(frame)
        times.append(t)
    cpu_ms = (time.process_time() - cpu0) * 1e3 / spec["runs"]
    arr = np.asarray(times)
    arr = np.concatenate([arr, arr.sum(axis=1, keepdims=True)], axis=1)
    stats = {s: {"median": float(np.median(arr[:, i])), "p90": float(np.percentile(arr[:, i], 90))}
             for i, s in enumerate(STAGES)}
    return {"backend": spec["backend"], "stages": stats, "detections": count, "peak_rss_mb": _peak_rss_mb(),
            "runs": spec["runs"], "times_ms": arr.round(4).tolist(), "cpu_ms_per_frame": cpu_ms}


def _merge(parts: List[dict]) -> dict:
    """One backend's rounds -> median / p90 over all their runs, the largest peak RSS."""
    arr = np.concatenate([np.asarray(p["times_ms"]) for p in parts])
    stats = {s: {"median": float(np.median(arr[:, i])), "p90": float(np.percentile(arr[:, i], 90))}
             for i, s in enumerate(STAGES)}
    rss = [p["peak_rss_mb"] for p in parts if p.get("peak_rss_mb")]
    cpu = [p["cpu_ms_per_frame"] for p in parts if p.get("cpu_ms_per_frame") is not None]
    return {"backend": parts[0]["backend"], "stages": stats, "detections": parts[-1]["detections"],
            "peak_rss_mb": max(rss) if rss else None, "runs": int(arr.shape[0]), "rounds": len(parts),
            "round_medians_ms": [p["stages"]["total_ms"]["median"] for p in parts],
            "cpu_ms_per_frame": float(np.mean(cpu)) if cpu else None}


# ----------------------------------------------------------------------------- orchestration
def _first_frame(path: str):
    import cv2

    from core.images import is_image_name, read_image

    if is_image_name(path):
        return read_image(path)
    cap = cv2.VideoCapture(path)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise AlprError(f"cannot read an image or a first video frame from {path}")
    return frame


def prepare_models(cfg: str, weights: Optional[str], classes: Optional[str], input_size: int, work: Path,
                   calib: Optional[str], calib_count: int, frame_path: Path, backends: List[str], seed: int,
                   head_gain: float, obj_bias: float = -4.0, cls_bias: float = -3.0) -> Dict[str, str]:
    """Convert the cfg/weights once into every model the backends need; returns backend -> model path."""
    from tqdm import tqdm

    from core.darknet.cfg import load_cfg
    from core.darknet.weights import random_weights, write_weights
    from core.keras.convert import convert_darknet
    from core.keras.tflite_export import convert_saved_model, write_augmented_images

    if weights is None:
        dcfg = load_cfg(cfg)
        weights = str(work / f"{Path(cfg).stem}-random{seed}.weights")
        rand = random_weights(dcfg, seed=seed, head_gain=head_gain)
        for y in dcfg.yolo_layers:  # a trained detector's objectness is low almost everywhere
            per_anchor = 5 + y.classes
            bias = rand[y.index - 1].bias.reshape(-1, per_anchor)
            bias[:, 4] = obj_bias
            bias[:, 5:] += cls_bias
        write_weights(weights, dcfg, rand)
    if classes is None:
        from core.darknet.cfg import load_cfg as _load

        n = _load(cfg).num_classes
        try:
            from core.keras.convert import resolve_classes

            resolve_classes(None, n)
        except AlprError:
            classes = str(work / "classes.names")
            Path(classes).write_text("".join(f"class_{i}\n" for i in range(n)))
    models = {"weights": weights}
    saved = work / "saved_model"
    print(f"converting {cfg} at {input_size} ...", flush=True)
    convert_darknet(cfg, weights, output=str(saved), classes=classes, input_size=input_size, framework="tflite",
                    verify=False)
    models["tf"] = str(saved)
    modes = {"tflite_fp32": "float32", "tflite_fp16": "float16", "tflite_int8": "int8"}
    for backend, mode in modes.items():
        if backend not in backends:
            continue
        dataset = calib
        if mode == "int8" and dataset is None:
            dataset = str(work / "calib")
            write_augmented_images([str(frame_path)], dataset, calib_count, seed=seed)
        out = work / f"model_{mode}.tflite"
        report = convert_saved_model(saved, out, mode, dataset=dataset, calib_count=calib_count,
                                     progress=lambda it: tqdm(it, total=calib_count, desc="calibrating",
                                                              leave=False))
        print(report.describe(), flush=True)
        models[backend] = str(out)
    return models


def machine_description() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("tensorflow", "ai_edge_litert", "tflite_runtime", "cv2", "numpy"):
        try:
            from importlib.metadata import version

            dist = {"cv2": "opencv-python-headless", "tflite_runtime": "tflite-runtime",
                    "ai_edge_litert": "ai-edge-litert", "tensorflow": "tensorflow-cpu"}.get(mod, mod)
            versions[mod] = version(dist)
        except Exception:  # noqa: BLE001 - a missing package is just not listed
            continue
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions,
            "load_average_at_start": load}


def markdown_table(results: List[dict], title: str) -> str:
    lines = [f"### {title}", "",
             "| backend | pre-process ms (median / p90) | inference ms | decode+NMS ms | whole detector ms | "
             "speed-up vs OpenCV | CPU ms per frame | peak RSS MB | detections |",
             "|---|---|---|---|---|---|---|---|---|"]
    ocv = next((r for r in results if r["backend"] == "opencv"), None)
    for r in results:
        st = r["stages"]
        cells = [f"{st[s]['median']:.2f} / {st[s]['p90']:.2f}" for s in STAGES]
        speed = f"{ocv['stages']['total_ms']['median'] / st['total_ms']['median']:.2f}x" if ocv else "-"
        rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "-"
        cpu = f"{r['cpu_ms_per_frame']:.1f}" if r.get("cpu_ms_per_frame") is not None else "-"
        lines.append(f"| {LABELS[r['backend']]} | " + " | ".join(cells)
                     + f" | {speed} | {cpu} | {rss} | {r['detections']} |")
    lines.append("")
    lines.append("CPU ms per frame: process CPU time (all threads) per detect call, which a busy shared machine "
                 "inflates less than wall time.")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if FLAGS.worker:
        print("WORKER_RESULT " + json.dumps(run_worker(json.loads(FLAGS.worker))), flush=True)
        return 0
    if not FLAGS.cfg or not FLAGS.image:
        raise AlprError("--cfg and --image are required")
    unknown = [b for b in FLAGS.backends if b not in BACKENDS]
    if unknown:
        raise AlprError(f"unknown backend(s) {', '.join(unknown)}: choose from {', '.join(BACKENDS)}")
    for p in (FLAGS.cfg, FLAGS.image):
        if not Path(p).exists():
            raise AlprError(f"file not found: {p}")
    import cv2

    frame = _first_frame(FLAGS.image)
    if FLAGS.frame_size:
        try:
            fw, fh = (int(v) for v in FLAGS.frame_size.lower().split("x"))
        except ValueError:
            raise AlprError(f"--frame_size {FLAGS.frame_size!r} is not WxH") from None
        frame = cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA)
    machine = machine_description()
    tmp = None
    if FLAGS.work_dir:
        work = Path(FLAGS.work_dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="alpr_bench_")
        work = Path(tmp.name)
    try:
        frame_path = work / "frame.png"
        cv2.imwrite(str(frame_path), frame)
        models = prepare_models(FLAGS.cfg, FLAGS.weights, FLAGS.classes, FLAGS.input_size, work, FLAGS.calib,
                                FLAGS.calib_count, frame_path, FLAGS.backends, FLAGS.seed, FLAGS.head_gain,
                                FLAGS.obj_bias, FLAGS.cls_bias)
        per_round = max(1, FLAGS.runs // max(1, FLAGS.rounds))
        raw: Dict[str, List[dict]] = {b: [] for b in FLAGS.backends}
        for rnd in range(max(1, FLAGS.rounds)):
            for backend in FLAGS.backends:
                spec = {"backend": backend, "model": models.get(backend), "cfg": str(FLAGS.cfg),
                        "weights": models["weights"], "input_size": FLAGS.input_size, "frame": str(frame_path),
                        "threads": FLAGS.threads, "runs": per_round, "warmup": FLAGS.warmup,
                        "score": FLAGS.score, "iou": FLAGS.iou}
                print(f"round {rnd + 1}/{FLAGS.rounds}: {LABELS[backend]} ({FLAGS.warmup} warm-up + {per_round} "
                      f"runs) ...", flush=True)
                proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                                      capture_output=True, text=True, cwd=str(Path(__file__).resolve().parent))
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WORKER_RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    print(f"{LABELS[backend]}: failed ({err})", flush=True)
                    continue
                raw[backend].append(json.loads(line[len("WORKER_RESULT "):]))
        results = [_merge(raw[b]) for b in FLAGS.backends if raw[b]]
    finally:
        if tmp is not None:
            tmp.cleanup()
    title = (f"{Path(FLAGS.cfg).stem} at {FLAGS.input_size}x{FLAGS.input_size}, {frame.shape[1]}x{frame.shape[0]} "
             f"frame, {FLAGS.threads} threads, {FLAGS.runs} runs in {FLAGS.rounds} rounds after {FLAGS.warmup} warm-up "
             f"each, on {machine['cpu']} "
             f"({machine['cores']} cores)")
    table = markdown_table(results, title)
    summary = _targets(results)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load_end is not None:
        machine["load_average_at_end"] = load_end
        start = machine.get("load_average_at_start")
        summary.append(f"- load average (1/5/15 min) at start {' / '.join(f'{v:.1f}' for v in start)}, at end "
                       f"{' / '.join(f'{v:.1f}' for v in load_end)} ({machine['cores']} cores; a shared machine)")
    out_dir = Path(FLAGS.out_dir)
    with atomic_path(out_dir / "benchmark.md") as tmp_md:
        tmp_md.write_text(table + "\n" + "\n".join(summary) + "\n", encoding="utf-8")
    payload = {"title": title, "machine": machine, "flags": {k: FLAGS[k].value for k in (
        "cfg", "weights", "input_size", "image", "frame_size", "threads", "runs", "rounds", "warmup", "score", "iou",
        "calib", "calib_count", "seed", "head_gain", "obj_bias", "cls_bias")}, "results": results, "summary": summary}
    with atomic_path(out_dir / "benchmark.json") as tmp_json:
        tmp_json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(table)
    print("\n".join(summary))
    print(f"wrote {out_dir / 'benchmark.md'} and {out_dir / 'benchmark.json'}")
    return 0


def _targets(results: List[dict]) -> List[str]:
    by = {r["backend"]: r for r in results}
    out = []
    if "tflite_int8" in by:
        inf = by["tflite_int8"]["stages"]["inference_ms"]["median"]
        out.append(f"- int8 inference median {inf:.2f} ms (target <= 12 ms: {'met' if inf <= 12 else 'missed'})")
        if "opencv" in by:
            ratio = by["opencv"]["stages"]["total_ms"]["median"] / by["tflite_int8"]["stages"]["total_ms"]["median"]
            out.append(f"- whole int8 detector {ratio:.2f}x faster than OpenCV DNN "
                       f"(target >= 2.5x: {'met' if ratio >= 2.5 else 'missed'})")
    return out


if __name__ == "__main__":
    sys.exit(app.run(guarded(main)))
