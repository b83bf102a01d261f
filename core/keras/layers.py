"""Keras layers shared by the detector and the reader (TF backend)."""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator, Optional, Sequence, Tuple

import keras
import tensorflow as tf
from keras import layers

from core.keras import check_precision


@lru_cache(maxsize=None)
def fused_dtypes() -> tuple:
    """Input dtypes the fused training path takes: float32 everywhere, bfloat16 too where oneDNN runs the
    CPU kernels (TensorFlow's own CPU kernel has no bfloat16 FusedBatchNorm)."""
    gpu = bool(tf.config.list_physical_devices("GPU"))
    return (tf.float32, tf.bfloat16) if onednn_enabled() and not gpu else (tf.float32,)


@keras.saving.register_keras_serializable(package="alpr")
class BatchNormalization(layers.BatchNormalization):
    """BatchNormalization whose training step runs TF's fused kernel.

    Keras 3 normalises with separate moment, subtract and scale ops; on a 2-core CPU that made the
    BatchNorm layers about half of an LPRNet training step. The fused kernel computes the
    same thing (biased batch variance for the output and the moving statistics, as Keras does) in
    one pass; with bfloat16 inputs (``mixed_bfloat16``) it does so too where oneDNN provides the kernel
    (``fused_dtypes``), keeping the statistics, gamma and beta in float32. Inference, frozen layers and
    anything unusual (masks, other dtypes, renorm, synchronized statistics, another axis or backend) take
    Keras's own path. The class keeps Keras's name on purpose: Keras 3 keys a layer's entry in a
    .weights.h5 file by its class name, so weights saved with either class load into the other.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm or self.synchronized \
                or not self.scale or not self.center or inputs.dtype not in fused_dtypes() \
                or len(inputs.shape) != 4 or self.axis not in (-1, 3) or keras.backend.backend() != "tensorflow":
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
        )
        # The kernel returns the unbiased (n - 1) variance; Keras tracks the biased one.
        n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
        variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its CPU kernels through oneDNN (on by default on CPUs with AVX512_VNNI,
    AVX512_BF16 or AMX; off with TF_ENABLE_ONEDNN_OPTS=0). Only oneDNN has a bfloat16 fused BatchNorm on CPU."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


def cpu_bfloat16(cpuinfo: str) -> bool:
    """Whether the ``flags`` lines of /proc/cpuinfo's text name bfloat16 instructions (AVX512_BF16 or AMX-BF16:
    the kernel's ``avx512_bf16`` and ``amx_bf16``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and {"avx512_bf16", "amx_bf16"} & set(value.split()):
            return True
    return False


def gpu_bfloat16(compute_capabilities: Sequence[Optional[Tuple[int, int]]]) -> bool:
    """Whether the visible GPUs (their CUDA compute capabilities, None where TensorFlow does not say, as for
    ROCm or plugin devices) all run bfloat16 natively: NVIDIA Ampere (8.0) or newer. An unknown capability
    counts as emulated: wrongly choosing bfloat16 costs several times the time, wrongly choosing float32 about
    1.5 times."""
    return bool(compute_capabilities) and all(c is not None and tuple(c) >= (8, 0) for c in compute_capabilities)


def _compute_capability(device: Any) -> Optional[Tuple[int, int]]:
    try:
        capability = tf.config.experimental.get_device_details(device).get("compute_capability")
    except (RuntimeError, ValueError):  # a malformed or missing description
        return None
    return tuple(capability) if capability else None


@lru_cache(maxsize=None)
def bfloat16_hardware() -> bool:
    """Whether bfloat16 training should be fast here: GPUs that run it natively (``gpu_bfloat16``), or, with
    no GPU, a CPU with bfloat16 instructions (``cpu_bfloat16``) and oneDNN on."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return gpu_bfloat16([_compute_capability(g) for g in gpus])
    if not onednn_enabled():
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return cpu_bfloat16(f.read())
    except OSError:
        return False


def host_precision(preferred: str) -> str:
    """A recipe's precision on this machine: ``preferred``, or float32 where it is bfloat16 and the machine
    has no bfloat16 hardware (``bfloat16_hardware``). Emulated bfloat16 is no saving: on a 2-core AMD EPYC
    without AVX-512 (session 32) a reader training step of 64 crops took 9.8 s in bfloat16 against 2.0 s in
    float32, where session 29's CPU with bfloat16 instructions took 0.38 s against 0.63."""
    check_precision(preferred)
    return "float32" if preferred != "float32" and not bfloat16_hardware() else preferred


def fallback_note(what: str, scheduled: str) -> str:
    """What a recipe says when ``what`` (its stages, say) train in float32 instead of ``scheduled``."""
    return (f"note: bfloat16 would be emulated here (it needs a CPU with AVX512_BF16 or AMX and oneDNN on, or "
            f"Ampere-or-newer GPUs), so {what} in float32, not {scheduled} (--precision {scheduled} forces it); "
            "the model card's times are from machines with it")


def slow_precision_note(name: str) -> Optional[str]:
    """The trainers' note when ``name`` asks for bfloat16 on a machine without bfloat16 instructions."""
    if host_precision(name) != name:
        return f"note: --precision {name} without bfloat16 instructions on this machine is usually slower"
    return None


@contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Build models inside this block with Keras's dtype policy ``name`` (``PRECISIONS``); the global
    policy is restored afterwards, and the layers keep the one they were built with. Under
    ``mixed_bfloat16`` the variables stay float32 (so checkpoints and exported weights do not change)
    and the layers compute in bfloat16, which oneDNN runs natively on CPUs with AVX512_BF16."""
    check_precision(name)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)
