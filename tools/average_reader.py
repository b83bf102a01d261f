"""Average two LPRNet readers weight by weight: ``(1 - share) * base + share * tuned``.

Averaging a fine-tune with the model it started from (weight-space ensembling, "WiSE-FT") keeps
some of what the fine-tune learned and some of what it forgot: in session 22 run 12 (then the shipped
Chinese reader) and its ``--clip`` fine-tune read 0.886 and 0.8815 of the held-out crops in int8,
their average 0.8955 at ``--share 0.3`` (model card). Both files must hold the same architecture
(both with or both without the STN); batch-norm statistics are averaged like every other array.
Only fine-tunes of one parent are worth averaging: two models trained from different starts have
unrelated weights, and their mean reads nothing. Then export and score the result as usual::

    python -m tools.average_reader --base checkpoints/lprnet-cn.weights.h5 \\
        --tuned runs/ft/best.weights.h5 --share 0.3 --out runs/avg.weights.h5
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
from absl import app, flags

from core.cli import atomic_path, guarded
from core.errors import AlprError

FLAGS = flags.FLAGS


def average_arrays(base: Sequence[np.ndarray], tuned: Sequence[np.ndarray], share: float) -> List[np.ndarray]:
    """``(1 - share) * base + share * tuned`` for each pair; the two lists must match in length and shapes."""
    if not 0.0 <= share <= 1.0:
        raise AlprError(f"--share must be between 0 and 1, got {share}")
    if len(base) != len(tuned):
        raise AlprError(f"the models differ: {len(base)} weight arrays against {len(tuned)} "
                        "(one with the STN, one without?)")
    out = []
    for i, (a, b) in enumerate(zip(base, tuned)):
        if a.shape != b.shape:
            raise AlprError(f"the models differ at weight array {i}: shape {a.shape} against {b.shape}")
        out.append(((1.0 - share) * a.astype(np.float64) + share * b.astype(np.float64)).astype(a.dtype))
    return out


def average_reader(base: str, tuned: str, share: float, out: str) -> Path:
    """Load both weight files, average them and write ``out`` (a ``.weights.h5``) atomically."""
    from lprnet.model import load_keras_model

    if not out.endswith(".weights.h5"):
        raise AlprError(f"--out must end in .weights.h5, got {out}")
    for path in (base, tuned):
        if not Path(path).is_file():
            raise AlprError(f"no such weights file: {path}")
    model = load_keras_model(base)
    other = load_keras_model(tuned)
    model.set_weights(average_arrays(model.get_weights(), other.get_weights(), share))
    with atomic_path(out, suffix=".weights.h5") as tmp:
        model.save_weights(str(tmp))
    return Path(out)


def main(argv: Sequence[str]) -> None:
    del argv
    out = average_reader(FLAGS.base, FLAGS.tuned, FLAGS.share, FLAGS.out)
    print(f"wrote {out} ({1 - FLAGS.share:g} x {FLAGS.base} + {FLAGS.share:g} x {FLAGS.tuned})")


if __name__ == "__main__":
    flags.DEFINE_string("base", None, "the parent reader (*.weights.h5), e.g. checkpoints/lprnet-cn.weights.h5")
    flags.DEFINE_string("tuned", None, "a fine-tune of it (*.weights.h5)")
    flags.DEFINE_float("share", 0.5, "weight of --tuned in the mean (0: --base, 1: --tuned)")
    flags.DEFINE_string("out", None, "output *.weights.h5")
    flags.mark_flags_as_required(["base", "tuned", "out"])
    app.run(guarded(main))
