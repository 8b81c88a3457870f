"""A leaky ReLU layer whose gradient reads its output, so that its input is not kept for backprop.

In every block the leaky ReLU follows batch normalisation. TensorFlow's own gradient of leaky
ReLU reads the layer's input, which keeps the batch-norm output of every block in memory until
the backward pass reaches it. For a positive slope the output has the sign of the input, so the
gradient can read the output instead, which the next convolution keeps anyway. The forward
result and the gradient are the same; the saving is one full-size tensor per block.
"""
import tensorflow as tf

_PACKAGE = "cosmictagger_tf"


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class OutputGradientLeakyReLU(tf.keras.layers.Layer):
    """Leaky ReLU ``max(x, slope * x)`` for ``0 < slope < 1``, with the gradient read from ``y``."""

    def __init__(self, slope=0.2, **kwargs):
        super().__init__(**kwargs)
        if not 0 < slope < 1:
            raise ValueError(f"slope must be between 0 and 1, got {slope}")
        self.slope = slope

    def call(self, features):
        return leaky_relu_output_gradient(features, self.slope)

    def get_config(self):
        return {**super().get_config(), "slope": self.slope}


def leaky_relu_output_gradient(features, slope):
    """Return ``tf.nn.leaky_relu(features, slope)`` whose gradient reads only the output."""

    @tf.custom_gradient
    def forward(inputs):
        outputs = tf.nn.leaky_relu(inputs, alpha=slope)
        # The gradient op goes under the layer's name, as TensorFlow's own gradients do, so
        # profiles attribute it to the layer.
        layer_scope = tf.get_current_name_scope()

        def gradient(upstream):
            # LeakyReluGrad passes the upstream gradient where its "features" are positive and
            # scales it by the slope elsewhere. The output is positive exactly where the input is.
            with tf.name_scope(f"gradient_tape/{layer_scope}/" if layer_scope else ""):
                return tf.raw_ops.LeakyReluGrad(gradients=upstream, features=outputs,
                                                alpha=slope)

        return outputs, gradient

    return forward(features)
