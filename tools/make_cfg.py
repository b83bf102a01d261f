"""Write Darknet cfgs for the architectures the project ships, for any class count.

    python -m tools.make_cfg --model yolov4-tiny --classes 3 --size 416 --out data/cfg/yolov4-tiny.cfg
    python -m tools.make_cfg --all --classes 3 --outdir data/cfg

The layer structure of each architecture is the published one (tests check that the generated
yolov4 and yolov4-tiny parse to the same layers as the canonical Darknet cfgs); only the class
count, the filters of the convolutions before each ``[yolo]`` and the training schedule differ.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

YOLOV4_ANCHORS = ((12, 16), (19, 36), (40, 28), (36, 75), (76, 55), (72, 146), (142, 110), (192, 243),
                  (459, 401))
YOLOV3_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198),
                  (373, 326))
TINY_ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
TINY_3L_ANCHORS = ((12, 16), (19, 36), (40, 28), (36, 75), (76, 55), (72, 146), (142, 110), (192, 243),
                   (459, 401))


class CfgWriter:
    """Emits sections and counts layers so routes can name layers by index."""

    def __init__(self) -> None:
        self.parts: List[str] = []
        self.count = 0

    def _section(self, name: str, **opts: object) -> int:
        lines = [f"[{name}]"] + [f"{k}={v}" for k, v in opts.items() if v is not None]
        self.parts.append("\n".join(lines))
        self.count += 1
        return self.count - 1

    def net(self, size: int, batch: int, subdivisions: int, lr: float, burn_in: int, max_batches: int,
            mosaic: bool) -> None:
        steps = f"{int(max_batches * 0.8)},{int(max_batches * 0.9)}"
        opts = dict(batch=batch, subdivisions=subdivisions, width=size, height=size, channels=3,
                    momentum=0.949, decay=0.0005, angle=0, saturation=1.5, exposure=1.5, hue=0.1,
                    learning_rate=lr, burn_in=burn_in, max_batches=max_batches, policy="steps", steps=steps,
                    scales=".1,.1", mosaic=1 if mosaic else None)
        self.parts.append("\n".join(["[net]"] + [f"{k}={v}" for k, v in opts.items() if v is not None]))

    def conv(self, filters: int, size: int, stride: int = 1, act: str = "leaky", bn: bool = True,
             groups: Optional[int] = None) -> int:
        return self._section("convolutional", batch_normalize=1 if bn else None, filters=filters, size=size,
                             stride=stride, pad=1, groups=groups, activation=act)

    def route(self, *layers: int, groups: Optional[int] = None, group_id: Optional[int] = None) -> int:
        return self._section("route", layers=",".join(str(x) for x in layers), groups=groups, group_id=group_id)

    def shortcut(self, src: int) -> int:
        return self._section("shortcut", **{"from": src, "activation": "linear"})

    def maxpool(self, size: int, stride: int) -> int:
        return self._section("maxpool", size=size, stride=stride)

    def upsample(self, stride: int = 2) -> int:
        return self._section("upsample", stride=stride)

    def yolo(self, mask: Sequence[int], anchors: Sequence[Tuple[int, int]], classes: int, scale_x_y: float,
             ignore_thresh: float = 0.7) -> int:
        a = ",  ".join(f"{w},{h}" for w, h in anchors)
        return self._section("yolo", mask=",".join(map(str, mask)), anchors=a, classes=classes, num=len(anchors),
                             jitter=0.3, scale_x_y=scale_x_y, cls_normalizer=1.0, iou_normalizer=0.07,
                             iou_loss="ciou", ignore_thresh=ignore_thresh, truth_thresh=1, random=0,
                             nms_kind="greedynms", beta_nms=0.6)

    def head(self, mask: Sequence[int], anchors, classes: int, scale_x_y: float) -> int:
        self.conv(len(mask) * (classes + 5), 1, act="linear", bn=False)
        return self.yolo(mask, anchors, classes, scale_x_y)

    def text(self, title: str) -> str:
        return f"# {title} (written by tools/make_cfg.py)\n" + "\n\n".join(self.parts) + "\n"


def _schedule(classes: int) -> int:
    return max(6000, classes * 2000)


def _tiny_backbone(w: CfgWriter) -> List[int]:
    """yolov4-tiny's CSP backbone up to the last 3x3 conv; returns the three CSP merge convs."""
    w.conv(32, 3, 2)
    w.conv(64, 3, 2)
    csp = []
    for filters in (64, 128, 256):
        w.conv(filters, 3)
        w.route(-1, groups=2, group_id=1)
        w.conv(filters // 2, 3)
        w.conv(filters // 2, 3)
        w.route(-1, -2)
        csp.append(w.conv(filters, 1))
        w.route(-6, -1)
        if filters < 256:
            w.maxpool(2, 2)
    w.maxpool(2, 2)
    w.conv(512, 3)
    w.conv(256, 1)
    w.conv(512, 3)
    return csp


def yolov4_tiny(classes: int, size: int) -> str:
    w = CfgWriter()
    w.net(size, 64, 1, 0.00261, 1000, _schedule(classes), mosaic=False)
    csp = _tiny_backbone(w)
    w.head((3, 4, 5), TINY_ANCHORS, classes, 1.05)
    w.route(-4)
    w.conv(128, 1)
    w.upsample()
    w.route(-1, csp[2])
    w.conv(256, 3)
    w.head((1, 2, 3), TINY_ANCHORS, classes, 1.05)
    return w.text(f"yolov4-tiny, {classes} classes")


def yolov4_tiny_3l(classes: int, size: int) -> str:
    w = CfgWriter()
    w.net(size, 64, 1, 0.00261, 1000, _schedule(classes), mosaic=False)
    csp = _tiny_backbone(w)
    w.head((6, 7, 8), TINY_3L_ANCHORS, classes, 1.05)
    w.route(-4)
    w.conv(128, 1)
    w.upsample()
    w.route(-1, csp[2])
    w.conv(256, 3)
    w.head((3, 4, 5), TINY_3L_ANCHORS, classes, 1.05)
    w.route(-3)
    w.conv(64, 1)
    w.upsample()
    w.route(-1, csp[1])
    w.conv(128, 3)
    w.head((0, 1, 2), TINY_3L_ANCHORS, classes, 1.05)
    return w.text(f"yolov4-tiny-3l, {classes} classes")


def yolov3_tiny(classes: int, size: int) -> str:
    w = CfgWriter()
    w.net(size, 64, 2, 0.001, 1000, _schedule(classes), mosaic=False)
    skip = None
    for i, filters in enumerate((16, 32, 64, 128, 256, 512)):
        out = w.conv(filters, 3)
        if filters == 256:
            skip = out
        w.maxpool(2, 1 if i == 5 else 2)
    w.conv(1024, 3)
    w.conv(256, 1)
    w.conv(512, 3)
    w.head((3, 4, 5), TINY_ANCHORS, classes, 1.0)
    w.route(-4)
    w.conv(128, 1)
    w.upsample()
    w.route(-1, skip)
    w.conv(256, 3)
    w.head((0, 1, 2), TINY_ANCHORS, classes, 1.0)
    return w.text(f"yolov3-tiny, {classes} classes")


def _darknet53_residuals(w: CfgWriter, filters: int, blocks: int) -> None:
    for _ in range(blocks):
        w.conv(filters // 2, 1)
        w.conv(filters, 3)
        w.shortcut(-3)


def yolov3(classes: int, size: int) -> str:
    w = CfgWriter()
    w.net(size, 64, 16, 0.001, 1000, _schedule(classes), mosaic=False)
    w.conv(32, 3)
    taps = []
    for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        w.conv(filters, 3, 2)
        _darknet53_residuals(w, filters, blocks)
        taps.append(w.count - 1)
    for i, (filters, mask) in enumerate(((512, (6, 7, 8)), (256, (3, 4, 5)), (128, (0, 1, 2)))):
        if i:
            w.route(-4)
            w.conv(filters, 1)
            w.upsample()
            w.route(-1, taps[4 - i])
        for _ in range(3):
            w.conv(filters, 1)
            w.conv(filters * 2, 3)
        w.head(mask, YOLOV3_ANCHORS, classes, 1.0)
    return w.text(f"yolov3, {classes} classes")


def _csp_stage(w: CfgWriter, filters: int, blocks: int, first: bool) -> int:
    """One CSPDarknet53 stage (down-sampling conv, split, residual blocks, merge); returns its output."""
    down = w.conv(filters, 3, 2, act="mish")
    inner = filters if first else filters // 2
    part2 = w.conv(inner, 1, act="mish")
    w.route(down)
    w.conv(inner, 1, act="mish")
    for _ in range(blocks):
        w.conv(filters // 2 if first else inner, 1, act="mish")
        w.conv(inner, 3, act="mish")
        w.shortcut(-3)
    w.conv(inner, 1, act="mish")
    w.route(-1, part2)
    return w.conv(filters, 1, act="mish")


def yolov4(classes: int, size: int) -> str:
    w = CfgWriter()
    w.net(size, 64, 8, 0.0013, 1000, _schedule(classes), mosaic=True)
    w.conv(32, 3, act="mish")
    taps = []
    for filters, blocks in ((64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)):
        taps.append(_csp_stage(w, filters, blocks, first=filters == 64))
    # SPP neck
    w.conv(512, 1)
    w.conv(1024, 3)
    spp_in = w.conv(512, 1)
    p1 = w.maxpool(5, 1)
    w.route(spp_in)
    p2 = w.maxpool(9, 1)
    w.route(spp_in)
    p3 = w.maxpool(13, 1)
    w.route(p3, p2, p1, spp_in)
    w.conv(512, 1)
    w.conv(1024, 3)
    p5 = w.conv(512, 1)
    # PAN top-down
    outs = {}
    for filters, tap in ((256, taps[3]), (128, taps[2])):
        w.conv(filters, 1)
        up = w.upsample()
        w.route(tap)
        w.conv(filters, 1)
        w.route(-1, up)
        for _ in range(2):
            w.conv(filters, 1)
            w.conv(filters * 2, 3)
        outs[filters] = w.conv(filters, 1)
    w.conv(256, 3)
    w.head((0, 1, 2), YOLOV4_ANCHORS, classes, 1.2)
    # PAN bottom-up
    for filters, lateral, mask, sxy in ((256, outs[256], (3, 4, 5), 1.1), (512, p5, (6, 7, 8), 1.05)):
        w.route(w.count - 4)
        w.conv(filters, 3, 2)
        w.route(-1, lateral)
        for _ in range(2):
            w.conv(filters, 1)
            w.conv(filters * 2, 3)
        w.conv(filters, 1)
        w.conv(filters * 2, 3)
        w.head(mask, YOLOV4_ANCHORS, classes, sxy)
    return w.text(f"yolov4, {classes} classes")


ARCHITECTURES: Dict[str, Callable[[int, int], str]] = {
    "yolov4": yolov4, "yolov4-tiny": yolov4_tiny, "yolov4-tiny-3l": yolov4_tiny_3l,
    "yolov3": yolov3, "yolov3-tiny": yolov3_tiny,
}


def make_cfg(model: str, classes: int, size: int = 416) -> str:
    if model not in ARCHITECTURES:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[model](classes, size)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(ARCHITECTURES))
    ap.add_argument("--all", action="store_true", help="write every architecture into --outdir")
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--out", help="output .cfg (with --model)")
    ap.add_argument("--outdir", default="data/cfg", help="output folder (with --all)")
    args = ap.parse_args(argv)
    if args.size % 32 or args.classes < 1:
        print("error: --size must be a multiple of 32 and --classes >= 1", file=sys.stderr)
        return 2
    targets = ([(m, Path(args.outdir) / f"{m}.cfg") for m in ARCHITECTURES] if args.all
               else [(args.model, Path(args.out or f"{args.model}.cfg"))])
    if not args.all and not args.model:
        print("error: give --model or --all", file=sys.stderr)
        return 2
    for model, path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make_cfg(model, args.classes, args.size), encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
