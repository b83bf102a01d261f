"""The TensorFlow/Keras side: model builder, converter, training (not imported by the edge runtime)."""
import os
import sys

PRECISIONS = ("float32", "mixed_bfloat16")  # train.py --precision: Keras dtype policies


def check_precision(name: str) -> None:
    """An AlprError unless ``name`` is one of ``PRECISIONS`` (here, without TensorFlow, for the recipes too)."""
    if name not in PRECISIONS:
        from core.errors import AlprError

        raise AlprError(f"precision must be one of {', '.join(PRECISIONS)}, not {name!r}")


def enable_onednn() -> bool:
    """Ask TensorFlow for its oneDNN CPU kernels, unless ``TF_ENABLE_ONEDNN_OPTS`` is already set.

    TensorFlow turns them on by itself only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX; on others (an
    AMD EPYC with AVX2, session 33) the reader's training step took 2.1 s at batch 64 without them and
    1.1 s with them, the detector's 1.6 s and 1.3 s. The training entry points call this before TensorFlow
    is imported; the inference side keeps TensorFlow's default (its parity tests compare with OpenCV).
    Returns whether the setting can still take effect (TensorFlow not yet imported).
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    return "tensorflow" not in sys.modules
