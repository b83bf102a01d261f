"""The TensorFlow/Keras side: model builder, converter, training (not imported by the edge runtime)."""

PRECISIONS = ("float32", "mixed_bfloat16")  # train.py --precision: Keras dtype policies
