"""Layers that move the wire planes between the batch axis and the channel axis.

The encoder and decoder weights are shared across planes, so the three planes of a minibatch
run through them as one batch of ``planes * events`` single-channel images: one call per layer
instead of three. The planes meet only at the deepest level, where they are laid side by side
along the channel axis and split again afterwards. Batch layout is plane-major: rows
``p * B : (p + 1) * B`` of a folded tensor hold plane ``p`` of the ``B`` events.

Every layer takes ``data_format``, the layout inside the model: ``channels_last`` (``[N, H, W,
C]``, the default) or ``channels_first`` (``[N, C, H, W]``). The model's input and output are
channels-last in both cases, so FoldPlanes and UnfoldPlanes convert between the two layouts.

All layers are registered for Keras serialisation, so a saved model loads with only this package.
"""
import tensorflow as tf

_PACKAGE = "cosmictagger_tf"


class _PlaneLayer(tf.keras.layers.Layer):
    """Base of the plane layers: stores ``data_format`` and the channel axis it implies."""

    def __init__(self, data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be channels_last or channels_first, "
                             f"got {data_format!r}")
        self.data_format = data_format
        self.channels_first = data_format == "channels_first"
        self.channel_axis = 1 if self.channels_first else -1

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class FoldPlanes(_PlaneLayer):
    """Turn channels-last ``[B, H, W, P]`` into ``[P * B, H, W, 1]`` (or ``[P * B, 1, H, W]``)."""

    def call(self, planes):
        height, width = tf.shape(planes)[1], tf.shape(planes)[2]
        plane_major = tf.transpose(planes, [3, 0, 1, 2])
        if self.channels_first:
            return tf.reshape(plane_major, [-1, 1, height, width])
        return tf.reshape(plane_major, [-1, height, width, 1])

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] * input_shape[3]
        if self.channels_first:
            return tf.TensorShape([batch, 1, input_shape[1], input_shape[2]])
        return tf.TensorShape([batch, input_shape[1], input_shape[2], 1])


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class PlanesToChannels(_PlaneLayer):
    """Turn folded ``[P * B, h, w, F]`` into ``[B, h, w, P * F]`` (plane 0's channels first).

    Channels-first: ``[P * B, F, h, w]`` into ``[B, P * F, h, w]``, with the same channel order.
    """

    def __init__(self, num_planes, **kwargs):
        super().__init__(**kwargs)
        self.num_planes = num_planes

    def call(self, folded):
        shape = tf.shape(folded)
        channels = folded.shape[self.channel_axis]
        if self.channels_first:
            per_plane = tf.reshape(folded, [self.num_planes, -1, channels, shape[2], shape[3]])
            side_by_side = tf.transpose(per_plane, [1, 0, 2, 3, 4])
            return tf.reshape(side_by_side,
                              [-1, self.num_planes * channels, shape[2], shape[3]])
        per_plane = tf.reshape(folded, [self.num_planes, -1, shape[1], shape[2], channels])
        side_by_side = tf.transpose(per_plane, [1, 2, 3, 0, 4])
        return tf.reshape(side_by_side, [-1, shape[1], shape[2], self.num_planes * channels])

    def get_config(self):
        return {**super().get_config(), "num_planes": self.num_planes}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class ChannelsToPlanes(_PlaneLayer):
    """Turn ``[B, h, w, P * F]`` back into folded ``[P * B, h, w, F]``.

    Channels-first: ``[B, P * F, h, w]`` back into ``[P * B, F, h, w]``.
    """

    def __init__(self, num_planes, **kwargs):
        super().__init__(**kwargs)
        self.num_planes = num_planes

    def call(self, merged):
        shape = tf.shape(merged)
        channels = merged.shape[self.channel_axis] // self.num_planes
        if self.channels_first:
            per_plane = tf.reshape(merged, [-1, self.num_planes, channels, shape[2], shape[3]])
            plane_major = tf.transpose(per_plane, [1, 0, 2, 3, 4])
            return tf.reshape(plane_major, [-1, channels, shape[2], shape[3]])
        per_plane = tf.reshape(merged, [-1, shape[1], shape[2], self.num_planes, channels])
        plane_major = tf.transpose(per_plane, [3, 0, 1, 2, 4])
        return tf.reshape(plane_major, [-1, shape[1], shape[2], channels])

    def get_config(self):
        return {**super().get_config(), "num_planes": self.num_planes}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class UnfoldPlanes(_PlaneLayer):
    """Split folded ``[P * B, H, W, C]`` into a list of ``P`` tensors ``[B, H, W, C]``.

    Channels-first: each ``[B, C, H, W]`` part is transposed back to channels-last.
    """

    def __init__(self, num_planes, **kwargs):
        super().__init__(**kwargs)
        self.num_planes = num_planes

    def call(self, folded):
        planes = tf.split(folded, self.num_planes, axis=0)
        if self.channels_first:
            return [tf.transpose(plane, [0, 2, 3, 1]) for plane in planes]
        return planes

    def get_config(self):
        return {**super().get_config(), "num_planes": self.num_planes}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class SplitChannels(_PlaneLayer):
    """Split the channel axis of ``P * C`` channels into a list of ``P`` tensors of ``C``."""

    def __init__(self, num_planes, **kwargs):
        super().__init__(**kwargs)
        self.num_planes = num_planes

    def call(self, merged):
        return tf.split(merged, self.num_planes, axis=self.channel_axis)

    def get_config(self):
        return {**super().get_config(), "num_planes": self.num_planes}
