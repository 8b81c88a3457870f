"""The multi-plane UResNet as a Keras functional model, built from a NetworkConfig.

Each wire plane goes through a U-shaped encoder and decoder of convolution blocks. The planes meet
only at the deepest level, where their features are concatenated, passed through a shared
bottleneck and split again. With shared weights (the default) the planes are folded into the batch
axis, so every layer runs once on all planes. With ``independent_planes`` each plane gets its own
layers. The output is one logit tensor ``[B, H, W, num_classes]`` per plane, in float32.

Block = Conv2D (same padding) -> BatchNorm -> leaky ReLU (slope 0.2). Residual block = Block ->
Block without activation -> add the input -> leaky ReLU. The leaky ReLU takes its gradient from
its output (``activations.OutputGradientLeakyReLU``), which saves a full-size tensor per block.

``data_format="channels_first"`` runs every layer on ``[N, C, H, W]`` tensors. The model's input
and outputs stay channels-last: the planes are transposed once at the start and the logits once at
the end, and the weights have the same shapes in both layouts.

NOTE: on CPUs (TensorFlow 2.15 with oneDNN), eager channels-first max pooling gives wrong results
and its gradient raises. Inside a tf.function, where the train step runs, both are correct; call a
channels-first model through a tf.function on CPUs.
"""
import tensorflow as tf

from cosmictagger_tf.config import NetworkConfig
from cosmictagger_tf.model import plane_layers
from cosmictagger_tf.model.activations import OutputGradientLeakyReLU

LEAKY_RELU_SLOPE = 0.2
PRECISION_POLICIES = {"float32": "float32", "mixed": "mixed_float16",
                      "bfloat16": "mixed_bfloat16"}


class _Builder:
    """Creates and applies the layers of one model; each stream is a plane or all folded planes."""

    def __init__(self, config, precision, data_format="channels_last"):
        self.config = config
        self.data_format = data_format
        self.channel_axis = 1 if data_format == "channels_first" else -1
        self.policy = tf.keras.mixed_precision.Policy(PRECISION_POLICIES[precision])
        # In a bfloat16 model only the convolutions run in bfloat16. The memory-bound layers
        # (batch norm, leaky ReLU, sums, pooling, resampling) stay in float32: on CPUs their
        # bfloat16 kernels are 5 to 10 times slower than float32 ones (benchmarks/RESULTS.md),
        # while the casts into and out of each convolution cost little.
        self.memory_policy = "float32" if precision == "bfloat16" else self.policy
        self.widths = config.level_widths()

    def block(self, x, filters, kernel, name, activation=True, strides=1, transpose=False):
        conv_class = tf.keras.layers.Conv2DTranspose if transpose else tf.keras.layers.Conv2D
        x = conv_class(filters, kernel, strides=strides, padding="same",
                       data_format=self.data_format, use_bias=self.config.use_bias,
                       dtype=self.policy, name=f"{name}_conv")(x)
        if self.config.normalization == "batch":
            x = tf.keras.layers.BatchNormalization(axis=self.channel_axis, dtype=self.memory_policy,
                                                   name=f"{name}_norm")(x)
        if activation:
            x = OutputGradientLeakyReLU(LEAKY_RELU_SLOPE, dtype=self.memory_policy,
                                          name=f"{name}_relu")(x)
        return x

    def residual_block(self, x, filters, kernel, name):
        shortcut = x
        x = self.block(x, filters, kernel, f"{name}_a")
        x = self.block(x, filters, kernel, f"{name}_b", activation=False)
        x = tf.keras.layers.Add(dtype=self.memory_policy, name=f"{name}_add")([x, shortcut])
        return OutputGradientLeakyReLU(LEAKY_RELU_SLOPE, dtype=self.memory_policy,
                                         name=f"{name}_relu")(x)

    def block_series(self, x, count, filters, kernel, name):
        for index in range(count):
            block_name = f"{name}_block{index}"
            if self.config.residual:
                x = self.residual_block(x, filters, kernel, block_name)
            else:
                x = self.block(x, filters, kernel, block_name)
        return x

    def downsample(self, x, filters, name):
        if self.config.downsampling == "convolutional":
            return self.block(x, filters, 2, f"{name}_down", strides=2)
        x = tf.keras.layers.MaxPooling2D(2, data_format=self.data_format,
                                         dtype=self.memory_policy, name=f"{name}_pool")(x)
        return self.block(x, filters, 1, f"{name}_down")

    def upsample(self, x, filters, name):
        if self.config.upsampling == "convolutional":
            return self.block(x, filters, 2, f"{name}_up", strides=2, transpose=True)
        x = tf.keras.layers.UpSampling2D(2, data_format=self.data_format,
                                         interpolation="bilinear",
                                         dtype=self.memory_policy, name=f"{name}_resize")(x)
        return self.block(x, filters, 1, f"{name}_up")

    def merge(self, x, skip, filters, name):
        if self.config.connections == "sum":
            return tf.keras.layers.Add(dtype=self.memory_policy,
                                       name=f"{name}_sum")([x, skip])
        if self.config.connections == "concat":
            x = tf.keras.layers.Concatenate(axis=self.channel_axis, dtype=self.memory_policy,
                                            name=f"{name}_concat")([x, skip])
            return self.block(x, filters, 1, f"{name}_merge")
        return x

    def level(self, streams, level):
        """Apply U level ``level`` and everything below it to each stream."""
        if level == self.config.network_depth:
            return self.deepest(streams)

        width, deeper_width = self.widths[level], self.widths[level + 1]
        names = self.stream_names(streams, f"level{level}")
        encoded = [self.block_series(x, self.config.blocks_per_layer, width, 3, f"{name}_encode")
                   for x, name in zip(streams, names)]

        downsampled = [self.downsample(x, deeper_width, name) for x, name in zip(encoded, names)]
        deeper = self.level(downsampled, level + 1)
        upsampled = [self.upsample(x, width, name) for x, name in zip(deeper, names)]

        decoded = [self.block_series(x, self.config.blocks_per_layer, width, 3, f"{name}_decode")
                   for x, name in zip(upsampled, names)]
        return [self.merge(x, skip, width, name)
                for x, skip, name in zip(decoded, encoded, names)]

    def deepest(self, streams):
        """Lay the planes side by side, run the shared bottleneck, and split them again."""
        config = self.config
        planes_width = config.num_planes * self.widths[-1]
        if len(streams) == 1:
            x = plane_layers.PlanesToChannels(config.num_planes, data_format=self.data_format,
                                              dtype=self.policy, name="deepest_gather")(streams[0])
        else:
            x = tf.keras.layers.Concatenate(axis=self.channel_axis, dtype=self.policy,
                                            name="deepest_gather")(streams)

        x = self.block(x, config.bottleneck_deepest, 1, "deepest_in")
        x = self.block_series(x, config.blocks_deepest_layer, config.bottleneck_deepest,
                              config.filter_size_deepest, "deepest")
        x = self.block(x, planes_width, 1, "deepest_out")

        if len(streams) == 1:
            return [plane_layers.ChannelsToPlanes(config.num_planes, data_format=self.data_format,
                                                  dtype=self.policy, name="deepest_scatter")(x)]
        return plane_layers.SplitChannels(config.num_planes, data_format=self.data_format,
                                          dtype=self.policy, name="deepest_scatter")(x)

    def head(self, x, name):
        x = self.block_series(x, self.config.blocks_final, self.widths[0], 3, f"{name}_final")
        return tf.keras.layers.Conv2D(self.config.num_classes, 1, use_bias=True,
                                      data_format=self.data_format, dtype=self.policy,
                                      name=f"{name}_classifier")(x)

    @staticmethod
    def stream_names(streams, prefix):
        if len(streams) == 1:
            return [prefix]
        return [f"plane{index}_{prefix}" for index in range(len(streams))]


def build_uresnet(config: NetworkConfig, image_shape=(640, 1024), precision="float32",
                  name="uresnet", data_format="channels_last"):
    """Build the multi-plane UResNet for planes of ``image_shape`` = (height, width).

    The input is ``[B, height, width, num_planes]`` float32 charge; the outputs are
    ``num_planes`` float32 logit tensors ``[B, height, width, num_classes]``, in plane order.
    ``data_format`` is the layout inside the model and changes neither of them.
    """
    config.validate()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be channels_last or channels_first, got "
                         f"{data_format!r}")
    height, width = image_shape
    factor = 2 ** config.network_depth
    if height % factor or width % factor:
        raise ValueError(f"image {height} x {width} is not divisible by 2**network_depth = "
                         f"{factor}; lower network_depth or use a larger image")

    builder = _Builder(config, precision, data_format)
    planes = tf.keras.Input(shape=(height, width, config.num_planes), name="planes")
    channels_first = data_format == "channels_first"

    if config.independent_planes:
        inputs = (tf.keras.layers.Permute((3, 1, 2), name="planes_to_channels_first")(planes)
                  if channels_first else planes)
        streams = plane_layers.SplitChannels(config.num_planes, data_format=data_format,
                                             name="split_planes")(inputs)
    else:
        streams = [plane_layers.FoldPlanes(data_format=data_format, name="fold_planes")(planes)]

    names = builder.stream_names(streams, "initial")
    streams = [builder.block(x, config.n_initial_filters, 5, stream_name)
               for x, stream_name in zip(streams, names)]
    streams = builder.level(streams, 0)

    names = builder.stream_names(streams, "head")
    logits = [builder.head(x, stream_name) for x, stream_name in zip(streams, names)]
    if len(logits) == 1:
        logits = plane_layers.UnfoldPlanes(config.num_planes, data_format=data_format,
                                           dtype="float32", name="unfold_planes")(logits[0])
    else:
        if channels_first:
            logits = [tf.keras.layers.Permute((2, 3, 1), dtype=builder.policy,
                                              name=f"plane{index}_to_channels_last")(plane_logits)
                      for index, plane_logits in enumerate(logits)]
        logits = [tf.keras.layers.Activation("linear", dtype="float32",
                                             name=f"plane{index}_logits")(plane_logits)
                  for index, plane_logits in enumerate(logits)]
    return tf.keras.Model(inputs=planes, outputs=list(logits), name=name)


def count_parameters(model):
    """Return ``(trainable, total)`` parameter counts; total includes batch-norm statistics."""
    trainable = sum(int(tf.size(weight)) for weight in model.trainable_weights)
    total = trainable + sum(int(tf.size(weight)) for weight in model.non_trainable_weights)
    return trainable, total


def convolution_kernels(model):
    """Return the kernels of every convolution, the variables the weight-decay term covers."""
    conv_types = (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose)
    return [layer.kernel for layer in model.layers if isinstance(layer, conv_types)]
