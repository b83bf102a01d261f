"""Keras layers shared by the detector and the reader (TF backend)."""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="alpr")
class BatchNormalization(layers.BatchNormalization):
    """BatchNormalization whose training step runs TF's fused kernel.

    Keras 3 normalises with separate moment, subtract and scale ops; on a 2-core CPU that made the
    BatchNorm layers about half of an LPRNet training step. The fused kernel computes the
    same thing (biased batch variance for the output and the moving statistics, as Keras does) in
    one pass. Inference, frozen layers and anything unusual (masks, non-float32, renorm, synchronized
    statistics, another axis or backend) take Keras's own path. The class keeps Keras's name on
    purpose: Keras 3 keys a layer's entry in a .weights.h5 file by its class name, so weights saved
    with either class load into the other.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm or self.synchronized \
                or not self.scale or not self.center or inputs.dtype != tf.float32 \
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
