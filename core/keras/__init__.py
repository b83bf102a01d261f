"""The TensorFlow/Keras side: model builder, converter, training (not imported by the edge runtime)."""

PRECISIONS = ("float32", "mixed_bfloat16")  # train.py --precision: Keras dtype policies


def check_precision(name: str) -> None:
    """An AlprError unless ``name`` is one of ``PRECISIONS`` (here, without TensorFlow, for the recipes too)."""
    if name not in PRECISIONS:
        from core.errors import AlprError

        raise AlprError(f"precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
