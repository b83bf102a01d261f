"""Where the two lines of a rendered two-line plate really are, to score ``line_split_row`` against.

``render_with_lines`` renders a plate exactly as ``tools.synth.plates.render_plate`` does (same random
stream, same crop) and also returns a map of the crop: 1 where a top-line glyph landed, 2 where a
bottom-line glyph landed, 0 elsewhere. It watches the renderer's glyph blending and its perspective
warp, then warps the glyph map the same way; the renderer itself is unchanged.

``cut_score(label, row)``: the share of glyph pixels a horizontal cut at ``row`` leaves on their own
line's side; ``best_cut`` the best a horizontal cut can do (rotated plates keep it below 1).

Command line: split quality of ``lprnet.preprocess.line_split_row`` on each two-line kind, on the crop as
it is and straightened first (``lprnet.preprocess.line_shear``), as the reader's stitch does::

    python -m tools.synth.line_truth --count 300 --seed 4242
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Sequence, Tuple

import cv2
import numpy as np

from tools.synth import plates as P

TWO_LINE_KINDS = (("cn", "cn_yellow2"), ("kr", "kr_yellow2"), ("kr", "kr_green2"))


@contextlib.contextmanager
def _watch(rec: dict) -> Iterator[None]:
    blend, draw, warp = P._blend, P.draw_plate, P.cv2.warpPerspective

    def blend_w(canvas, alpha, color, x, y):  # type: ignore[no-untyped-def]
        if rec.get("drawing"):
            rec["glyphs"].append((alpha > 96, x, y, canvas.shape[:2]))
        blend(canvas, alpha, color, x, y)

    def draw_w(rng, kind, text, px_per_mm=0.6, decorate=True, **kwargs):  # type: ignore[no-untyped-def]
        rec["glyphs"], rec["drawing"] = [], True
        canvas, box = draw(rng, kind, text, px_per_mm, decorate, **kwargs)
        rec["drawing"] = False
        rec["box"], rec["framed"] = box, canvas.shape[:2]
        return canvas, box

    def warp_w(src, m, size, *args, **kwargs):  # type: ignore[no-untyped-def]
        rec["m"], rec["size"], rec["src"] = m, size, src.shape[:2]
        return warp(src, m, size, *args, **kwargs)

    P._blend, P.draw_plate, P.cv2.warpPerspective = blend_w, draw_w, warp_w
    try:
        yield
    finally:
        P._blend, P.draw_plate, P.cv2.warpPerspective = blend, draw, warp


def render_with_lines(rng: np.random.Generator, charset: str, kind: str,
                      shear: float = 0.0) -> Tuple[np.ndarray, str, np.ndarray]:
    """(crop, text, label map) of one two-line plate; the crop is what ``render_plate`` gives."""
    rec: dict = {}
    with _watch(rec):
        crop, text, pk = P.render_plate(rng, charset, kind, shear=shear)
    if pk.lines != 2:
        raise ValueError(f"{kind} is not a two-line kind")
    glyphs = rec["glyphs"]
    ph, pw = glyphs[0][3]
    ys = [y for _, _, y, _ in glyphs]
    middle = (min(ys) + max(ys)) / 2  # the top line's glyphs start above it, the bottom line's below
    lab = np.zeros((ph, pw), np.uint8)
    for mask, x, y, _ in glyphs:
        h, w = mask.shape
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, pw), min(y + h, ph)
        if x1 > x0 and y1 > y0:
            lab[y0:y1, x0:x1][mask[y0 - y:y1 - y, x0 - x:x1 - x]] = 1 if y < middle else 2
    # the same placements as render_plate: the plate in its frame, the frame on a piece of car body
    bx1, by1 = rec["box"][:2]
    fh, fw = rec["framed"]
    framed = np.zeros((fh, fw), np.uint8)
    framed[by1:by1 + ph, bx1:bx1 + pw] = lab
    my, mx = int(fh * 1.0), int(fw * 0.45)
    patch = np.zeros(rec["src"], np.uint8)
    patch[my:my + fh, mx:mx + fw] = framed
    label = cv2.warpPerspective(patch, rec["m"], rec["size"], flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT)
    if label.shape != crop.shape[:2]:
        raise RuntimeError(f"label map {label.shape} does not match the crop {crop.shape[:2]}")
    return crop, text, label


def cut_score(label: np.ndarray, row: int, shear: float = 0.0) -> float:
    """Share of glyph pixels on their own line's side of a horizontal cut at ``row``; with ``shear``, of a
    cut at ``row`` of the crop un-sheared by it (``lprnet.preprocess.unshear``), which in the crop is the
    slanted line ``y = row + shear * (x - centre)``."""
    ys, xs = np.nonzero(label)
    top = (ys - shear * (xs - (label.shape[1] - 1) / 2.0)) < row
    lines = label[ys, xs]
    right = int(np.sum(top & (lines == 1)) + np.sum(~top & (lines == 2)))
    return right / max(1, ys.size)


def best_cut(label: np.ndarray) -> Tuple[int, float]:
    ones, twos = (label == 1).sum(axis=1), (label == 2).sum(axis=1)
    total = max(1, int(ones.sum() + twos.sum()))
    # a cut at row r leaves rows < r above it: scores[r - 1] for r = 1 .. height - 1
    scores = (np.cumsum(ones)[:-1] + (int(twos.sum()) - np.cumsum(twos)[:-1])) / total
    i = int(np.argmax(scores))
    return i + 1, float(scores[i])


def split_quality(count: int, seed: int, kinds: Sequence[Tuple[str, str]] = TWO_LINE_KINDS) -> List[dict]:
    """Per kind: mean cut score of ``line_split_row`` on the crop as it is and on the crop straightened as
    the reader stitches it (``lprnet.preprocess.line_shear``; keys prefixed ``straight_``), the share of
    cuts scoring >= 0.98 and < 0.9, and the share of crops whose best horizontal cut scores >= 0.98."""
    from lprnet.preprocess import line_shear, line_split_row, unshear

    out = []
    for charset, kind in kinds:
        rng = np.random.default_rng(seed)
        got, straight, best = [], [], []
        for _ in range(count):
            crop, _, label = render_with_lines(rng, charset, kind)
            got.append(cut_score(label, line_split_row(crop)))
            shear = line_shear(crop)
            straight.append(cut_score(label, line_split_row(unshear(crop, shear)), shear))
            best.append(best_cut(label)[1])
        g, t, b = np.array(got), np.array(straight), np.array(best)
        out.append({"kind": kind, "count": count, "mean": float(g.mean()), "good": float((g >= 0.98).mean()),
                    "wrong": float((g < 0.9).mean()), "straight_mean": float(t.mean()),
                    "straight_good": float((t >= 0.98).mean()), "straight_wrong": float((t < 0.9).mean()),
                    "best_good": float((b >= 0.98).mean())})
    return out


def main(argv: Sequence[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    print("kind         count  cut on       mean score  cuts >= 0.98  cuts < 0.9  best level cut >= 0.98")
    for r in split_quality(f.count, f.seed):
        for label, pre in (("the crop", ""), ("straightened", "straight_")):
            print(f"{r['kind']:<12} {r['count']:>5}  {label:<12} {r[pre + 'mean']:>10.3f}  {r[pre + 'good']:>12.3f}"
                  f"  {r[pre + 'wrong']:>10.3f}  {r['best_good']:>22.3f}")


if __name__ == "__main__":
    from absl import app, flags

    from core.cli import guarded

    flags.DEFINE_integer("count", 300, "plates of each two-line kind")
    flags.DEFINE_integer("seed", 4242, "random seed")
    app.run(guarded(main))
