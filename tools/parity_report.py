"""Print the converter's parity with OpenCV DNN as a markdown table (the figures in the README).

    python -m tools.parity_report [--shared ../shared]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.darknet.cfg import load_cfg  # noqa: E402
from core.darknet.weights import random_weights, read_weights, write_weights  # noqa: E402
from core.keras.builder import build_model  # noqa: E402
from core.keras.convert import run_keras  # noqa: E402
from core.keras.darknet_io import load_darknet_weights  # noqa: E402
from core.yolo import letterbox_image, to_input_tensor  # noqa: E402
from tools.opencv_reference import opencv_heads, opencv_net  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WEIGHT_SCALE = {"yolov4": 0.8, "yolov3": 0.6}  # see tests/test_converter_parity.py


def _sized(cfg_path: Path, size: int, tmp: Path) -> Path:
    out = tmp / f"{cfg_path.stem}-{size}.cfg"
    lines = []
    for line in cfg_path.read_text(encoding="utf-8").splitlines():
        key = line.replace(" ", "").split("=")[0]
        lines.append(f"{key}={size}" if key in ("width", "height") else line)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def random_case(cfg_path: Path, size: int, tmp: Path) -> float:
    cfg = load_cfg(cfg_path).with_input_size(size)
    weights = random_weights(cfg, seed=7, scale=WEIGHT_SCALE.get(cfg_path.stem, 1.0), head_gain=8.0)
    wpath = tmp / "w.weights"
    write_weights(wpath, cfg, weights)
    model = build_model(cfg)
    load_darknet_weights(model, cfg, weights)
    x = np.random.default_rng(0).uniform(0, 1, (1, size, size, 3)).astype(np.float32)
    ref = opencv_heads(opencv_net(_sized(cfg_path, size, tmp), wpath), cfg, x)
    return max(float(np.abs(o - r).max()) for o, r in zip(run_keras(model, x), ref))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    args = ap.parse_args()
    darknet = Path(args.shared) / "assets" / "darknet"
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name in ("yolov4-tiny", "yolov3-tiny", "yolov4-tiny-3l", "yolov4", "yolov3"):
            rows.append((f"data/cfg/{name}.cfg", "random", 416, random_case(REPO / "data" / "cfg" / f"{name}.cfg",
                                                                             416, tmp)))
        for name, sizes in (("yolov4-tiny", (416, 608)), ("yolov4", (416, 320))):
            for size in sizes:
                if (darknet / f"{name}.cfg").is_file():
                    rows.append((f"{name}.cfg (AlexeyAB)", "random", size, random_case(darknet / f"{name}.cfg",
                                                                                       size, tmp)))
        cfg_path = darknet / "yolo-fastest-1.1.cfg"
        if cfg_path.is_file():
            cfg = load_cfg(cfg_path)
            wpath = darknet / "yolo-fastest-1.1.weights"
            _, weights = read_weights(wpath, cfg)
            model = build_model(cfg)
            load_darknet_weights(model, cfg, weights)
            net = opencv_net(cfg_path, wpath)
            worst = 0.0
            for photo in sorted((Path(args.shared) / "data" / "scenes").glob("*.jpg")):
                rgb, _ = letterbox_image(cv2.imread(str(photo)), 320, 320)
                x = to_input_tensor(rgb)
                worst = max(worst, max(float(np.abs(o - r).max())
                                       for o, r in zip(run_keras(model, x), opencv_heads(net, cfg, x))))
            rows.append(("yolo-fastest-1.1 (real weights)", "real, 4 photos", 320, worst))
    print("| model | weights | input | max abs diff vs OpenCV DNN |\n|---|---|---|---|")
    for name, kind, size, diff in rows:
        print(f"| {name} | {kind} | {size} | {diff:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
