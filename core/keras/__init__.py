"""The TensorFlow/Keras side: model builder, converter, training (not imported by the edge runtime)."""
import os
from typing import MutableMapping, Optional

PRECISIONS = ("float32", "mixed_bfloat16")  # train.py --precision: Keras dtype policies


def check_precision(name: str) -> None:
    """An AlprError unless ``name`` is one of ``PRECISIONS`` (here, without TensorFlow, for the recipes too)."""
    if name not in PRECISIONS:
        from core.errors import AlprError

        raise AlprError(f"precision must be one of {', '.join(PRECISIONS)}, not {name!r}")


ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def set_onednn(choice: Optional[bool] = None, env: Optional[MutableMapping[str, str]] = None) -> None:
    """Choose TensorFlow's oneDNN CPU kernels for this process and its children (or in ``env``, a child's
    environment); call it before TensorFlow is imported (TensorFlow reads the variable once). True / False
    set ``TF_ENABLE_ONEDNN_OPTS`` to 1 / 0; None sets 1 unless the variable is set already (the training
    programs' default, ``enable_onednn``).

    TensorFlow's Linux x86 builds turn the kernels on by themselves only on CPUs with neural-network
    instructions such as AVX512_VNNI, AVX512_BF16 or AMX. On an AVX2 CPU without them (the AMD EPYC of
    session 33) the reader's float32 training step of 64 crops took 2.19 s with TensorFlow's own kernels and
    1.12 s with oneDNN's, the three-head detector's at 544 4.39 s and 3.46 s (``tools.train_step_benchmark``).
    """
    env = os.environ if env is None else env
    if choice is None:
        env.setdefault(ONEDNN_VARIABLE, "1")
    else:
        env[ONEDNN_VARIABLE] = "1" if choice else "0"


def enable_onednn() -> None:
    """oneDNN on unless the user chose (``set_onednn(None)``): called first thing by ``train.py`` and
    ``train_lprnet.py``. Only the training processes ask for it; exporting, converting and evaluating keep
    TensorFlow's default (an int8 export's bytes can differ in the last bit of a scale between the two)."""
    set_onednn(None)
