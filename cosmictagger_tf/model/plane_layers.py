"""Layers that move the wire planes between the batch axis and the channel axis.

The encoder and decoder weights are shared across planes, so the three planes of a minibatch
run through them as one batch of ``planes * events`` single-channel images: one call per layer
instead of three. The planes meet only at the deepest level, where they are laid side by side
along the channel axis and split again afterwards. Batch layout is plane-major: rows
``p * B : (p + 1) * B`` of a folded tensor hold plane ``p`` of the ``B`` events.

All layers are registered for Keras serialisation, so a saved model loads with only this package.
"""
import tensorflow as tf

_PACKAGE = "cosmictagger_tf"


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class FoldPlanes(tf.keras.layers.Layer):
    """Turn ``[B, H, W, P]`` into ``[P * B, H, W, 1]`` (plane-major)."""

    def call(self, planes):
        height, width = tf.shape(planes)[1], tf.shape(planes)[2]
        plane_major = tf.transpose(planes, [3, 0, 1, 2])
        return tf.reshape(plane_major, [-1, height, width, 1])

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * input_shape[3]
        return tf.TensorShape([batch, input_shape[1], input_shape[2], 1])


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class PlanesToChannels(tf.keras.layers.Layer):
    """Turn folded ``[P * B, h, w, F]`` into ``[B, h, w, P * F]`` (plane 0's channels first)."""

    def __init__(self, num_planes, **kwargs):
        super().__init__(**kwargs)
        self.num_planes = num_planes

    def call(self, folded):
        shape = tf.shape(folded)
        channels = folded.shape[-1]
        per_plane = tf.reshape(folded, [self.num_planes, -1, shape[1], shape[2], channels])
        side_by_side = tf.transpose(per_plane, [1, 2, 3, 0, 4])
        return tf.reshape(side_by_side, [-1, shape[1], shape[2], self.num_planes * channels])

    def get_config(self):
        return {**super().get_config(), "num_planes": self.num_planes}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class ChannelsToPlanes(tf.keras.layers.Layer):
    """Turn ``[B, h, w, P * F]`` back into folded ``[P * B, h, w, F]``."""

    def __init__(self, num_planes, **kwargs):
        super().__init__(**kwargs)
        self.num_planes = num_planes

    def call(self, merged):
        shape = tf.shape(merged)
        channels = merged.shape[-1] // self.num_planes
        per_plane = tf.reshape(merged, [-1, shape[1], shape[2], self.num_planes, channels])
        plane_major = tf.transpose(per_plane, [3, 0, 1, 2, 4])
        return tf.reshape(plane_major, [-1, shape[1], shape[2], channels])

    def get_config(self):
        return {**super().get_config(), "num_planes": self.num_planes}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class UnfoldPlanes(tf.keras.layers.Layer):
    """Split folded ``[P * B, H, W, C]`` into a list of ``P`` tensors ``[B, H, W, C]``."""

    def __init__(self, num_planes, **kwargs):
        super().__init__(**kwargs)
        self.num_planes = num_planes

    def call(self, folded):
        return tf.split(folded, self.num_planes, axis=0)

    def get_config(self):
        return {**super().get_config(), "num_planes": self.num_planes}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class SplitChannels(tf.keras.layers.Layer):
    """Split ``[..., P * C]`` into a list of ``P`` tensors ``[..., C]`` (one per plane)."""

    def __init__(self, num_planes, **kwargs):
        super().__init__(**kwargs)
        self.num_planes = num_planes

    def call(self, merged):
        return tf.split(merged, self.num_planes, axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_planes": self.num_planes}
