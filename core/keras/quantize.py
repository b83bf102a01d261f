"""Full-integer int8 with percentile activation ranges, shared by the detector and the reader export.

A few activations of a calibration set reach far beyond the bulk of their values; the converter's
min/max ranges then spend most int8 levels on them. ``quantize_with_percentile_ranges`` takes a
*calibrate-only* model (float, carrying min/max per activation; ``converter._experimental_calibrate_only``),
gives every activation between the input and the outputs the range [percentile(100 - p), percentile(p)]
of a sample of its calibration values (never wider than min/max, always containing 0), optionally
raises the outputs' lower bound (a logit floor), and runs the MLIR quantizer the converter itself
uses, fully quantized. Relies on TF internals (``mlir_quantize``, ``flatbuffer_utils``), which give
int8 model inputs and outputs.
"""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np


def quantize_with_percentile_ranges(calibrated: bytes, calib: Sequence[np.ndarray], percentile: Optional[float],
                                    output_floor: Optional[float] = None, seed: int = 0,
                                    per_sample: int = 512) -> bytes:
    """``calib``: model inputs, each with its batch dimension of 1. ``percentile`` None keeps min/max."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert
    from tensorflow.lite.tools import flatbuffer_utils

    from core.tflite_runtime import interpreter_class

    model = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    graph = model.subgraphs[0]
    outputs = {int(i) for i in graph.outputs}
    boundary = {int(i) for i in graph.inputs} | outputs
    if percentile is not None:
        ranged = [i for i, t in enumerate(graph.tensors)
                  if i not in boundary and t.quantization is not None and t.quantization.min is not None
                  and len(t.quantization.min) == 1]
        with warnings.catch_warnings():  # preserve_all_tensors is "intended for debugging": reading them is the point
            warnings.simplefilter("ignore")
            interp = interpreter_class()(model_content=calibrated, experimental_preserve_all_tensors=True)
        interp.allocate_tensors()
        index = interp.get_input_details()[0]["index"]
        rng = np.random.default_rng(seed)
        samples: Dict[int, List[np.ndarray]] = {i: [] for i in ranged}
        for x in calib:
            interp.set_tensor(index, np.asarray(x, np.float32))
            interp.invoke()
            for i in ranged:
                v = interp.get_tensor(i).ravel()
                samples[i].append(v if v.size <= per_sample else v[rng.integers(0, v.size, per_sample)])
        for i in ranged:
            v = np.concatenate(samples[i])
            q = graph.tensors[i].quantization
            lo = min(0.0, float(np.percentile(v, 100.0 - percentile)))
            hi = max(0.0, float(np.percentile(v, percentile)))
            q.min = np.array([max(float(q.min[0]), lo)], np.float32)
            q.max = np.array([min(float(q.max[0]), hi)], np.float32)
    if output_floor is not None:
        for i in outputs:
            q = graph.tensors[i].quantization
            if q is not None and q.min is not None and len(q.min):
                q.min = np.array([max(float(q.min[0]), output_floor)], np.float32)
    return tfl_convert.mlir_quantize(flatbuffer_utils.convert_object_to_bytearray(model), fully_quantize=True,
                                     input_data_type=tf.int8, output_data_type=tf.int8)
