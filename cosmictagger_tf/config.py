"""Typed configuration of a run: network, data, optimisation and run settings, plus presets.

Command-line flags are turned into these dataclasses once, at the entry point. Building a model,
a dataset or a training step reads only these objects, never global flags, so notebooks and
tests can use every component without absl.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Tuple

from cosmictagger_tf.data import larcv3_format as fmt

CONNECTIONS = ("concat", "sum", "none")
DOWNSAMPLING = ("max_pool", "convolutional")
UPSAMPLING = ("interpolation", "convolutional")
GROWTH = ("additive", "multiplicative")
NORMALIZATION = ("batch", "none")
LOSS_BALANCE_SCHEMES = ("none", "light", "even", "focal")
PRECISIONS = ("float32", "mixed", "bfloat16")
DATA_FORMATS = ("channels_last", "channels_first")
COMPRESSIONS = ("none", "fp16", "bf16")
LR_SCALINGS = ("none", "linear", "sqrt")


class ConfigError(ValueError):
    """An invalid combination of settings, reported before anything is built or read."""


@dataclass
class NetworkConfig:
    """Architecture of the multi-plane UResNet (defaults are the ``uresnet`` preset)."""

    n_initial_filters: int = 16          # filters after the initial 5x5 convolution
    network_depth: int = 6               # number of downsampling steps
    blocks_per_layer: int = 2            # blocks before and after each downsampling step
    blocks_deepest_layer: int = 5        # blocks in the shared bottleneck where planes meet
    blocks_final: int = 5                # blocks at full width before the classifier
    filter_size_deepest: int = 5         # kernel size of the bottleneck blocks
    bottleneck_deepest: int = 256        # channels of the shared bottleneck
    residual: bool = True                # residual blocks instead of plain blocks
    connections: str = "concat"          # skip merge: concat (+1x1 block), sum, none
    downsampling: str = "max_pool"       # max_pool + 1x1 block, or strided 2x2 convolution
    upsampling: str = "interpolation"    # bilinear x2 + 1x1 block, or transposed convolution
    growth_rate: str = "additive"        # width of level i: n0*(i+1) or n0*2**i
    normalization: str = "batch"         # batch norm after every convolution, or none
    use_bias: bool = True
    independent_planes: bool = False     # separate encoder/decoder weights per plane
    num_classes: int = fmt.NUM_CLASSES
    num_planes: int = fmt.NUM_PLANES

    def validate(self):
        _check_choice("connections", self.connections, CONNECTIONS)
        _check_choice("downsampling", self.downsampling, DOWNSAMPLING)
        _check_choice("upsampling", self.upsampling, UPSAMPLING)
        _check_choice("growth_rate", self.growth_rate, GROWTH)
        _check_choice("normalization", self.normalization, NORMALIZATION)
        for name in ("n_initial_filters", "network_depth", "bottleneck_deepest",
                     "filter_size_deepest"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("blocks_per_layer", "blocks_deepest_layer", "blocks_final"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be 0 or more, got {getattr(self, name)}")

    def level_widths(self):
        """Return the channel count of every level, from full resolution to the deepest."""
        levels = range(self.network_depth + 1)
        if self.growth_rate == "additive":
            return [self.n_initial_filters * (level + 1) for level in levels]
        return [self.n_initial_filters * 2 ** level for level in levels]


PRESETS = {
    "uresnet": NetworkConfig(),
    "a21": NetworkConfig(n_initial_filters=8, network_depth=6, blocks_per_layer=2,
                         blocks_deepest_layer=5, blocks_final=0, filter_size_deepest=5,
                         bottleneck_deepest=256, residual=False, connections="sum"),
    "polaris": NetworkConfig(n_initial_filters=16, network_depth=7, blocks_per_layer=2,
                             blocks_deepest_layer=2, blocks_final=2, filter_size_deepest=5,
                             bottleneck_deepest=96, residual=False, connections="sum"),
}


def network_preset(name, **overrides):
    """Return a copy of preset ``name`` with the given fields replaced."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


@dataclass
class DataConfig:
    """Event source and minibatch shaping settings."""

    data_files: Tuple[str, ...] = ()     # larcv3 training files; empty: the simulated default
    cache_dir: Optional[str] = None      # folder of the simulated default dataset
    default_events: Tuple[int, int] = (320, 64)  # training, validation events of that dataset
    aux_files: Tuple[str, ...] = ()      # validation files, may be empty
    image_producer: str = fmt.DEFAULT_IMAGE_PRODUCER
    label_producer: str = fmt.DEFAULT_LABEL_PRODUCER
    skip_bad_files: bool = False         # skip files that fail the larcv3 checks, with a warning
    downsample: int = 1                  # images shrink by 2**downsample per axis
    synthetic: bool = False              # random events of the real shape, no file I/O
    shuffle: bool = True
    seed: int = 0
    prefetch: int = 2                    # minibatches prepared ahead of the training step
    reader_threads: int = 2              # parallel densification calls in tf.data

    def validate(self):
        if not 0 <= self.downsample <= 8:
            raise ConfigError(f"--downsample must be between 0 and 8, got {self.downsample}")
        if self.synthetic and self.data_files:
            raise ConfigError("--synthetic and --data_file exclude each other: drop --synthetic "
                              "to train on the files, or --data_file for random events")

    def uses_default_dataset(self):
        """Return True when no file and no synthetic data is given: the simulated default."""
        return not self.synthetic and not self.data_files

    def image_shape(self):
        """Return (height, width) of one plane after downsampling."""
        scale = 2 ** self.downsample
        return fmt.IMAGE_HEIGHT // scale, fmt.IMAGE_WIDTH // scale


@dataclass
class OptimizerConfig:
    """Loss, optimiser and learning-rate schedule."""

    learning_rate: float = 3e-4          # peak (flat-phase) learning rate of Adam
    warmup_learning_rate: float = 1e-4   # rate at step 0, rising linearly over the first epoch
    floor_learning_rate: float = 1e-4    # rate approached during the exponential decay
    lr_schedule: str = "reference"       # reference (warm-up, flat, decay) or constant
    flat_epochs: float = 21.0            # decay starts at this epoch
    decay_rate: float = 0.999            # exponential decay per epoch after flat_epochs
    loss_balance_scheme: str = "focal"
    weight_decay: float = 0.1            # coefficient of the reference weight-decay term
    gradient_accumulation: int = 1       # minibatches summed before each optimiser update
    skip_nonfinite_steps: bool = False   # skip non-finite updates instead of stopping the run
    max_consecutive_skips: int = 10      # stop after this many non-finite steps in a row

    def validate(self):
        _check_choice("loss_balance_scheme", self.loss_balance_scheme, LOSS_BALANCE_SCHEMES)
        _check_choice("lr_schedule", self.lr_schedule, ("reference", "constant"))
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning_rate must be positive, got {self.learning_rate}")
        if self.gradient_accumulation < 1:
            raise ConfigError("--gradient_accumulation must be at least 1, "
                              f"got {self.gradient_accumulation}")
        if self.max_consecutive_skips < 1:
            raise ConfigError("--max_consecutive_skips must be at least 1, "
                              f"got {self.max_consecutive_skips}")


@dataclass
class DistributedConfig:
    """Horovod and learning-rate settings that matter when training on many ranks."""

    fusion_threshold_mb: Optional[float] = None   # HOROVOD_FUSION_THRESHOLD; None: Horovod's 128 MB
    num_groups: int = 0                  # gradient allreduce groups; 0 fuses by threshold only
    compression: str = "none"            # gradients sent as float16 or bfloat16, or unchanged
    timeline: Optional[str] = None       # HOROVOD_TIMELINE output file
    stall_shutdown_s: int = 120          # seconds a rank may stall before the job stops
    lr_scaling: str = "none"             # scale the learning rates with the global minibatch
    lr_reference_minibatch: int = 2      # global minibatch the given learning rates are for
    rank_summaries: bool = False         # every rank writes ranks/rank<R>.json at the end

    def validate(self):
        _check_choice("horovod_compression", self.compression, COMPRESSIONS)
        _check_choice("lr_scaling", self.lr_scaling, LR_SCALINGS)
        if self.num_groups < 0:
            raise ConfigError(f"--horovod_num_groups must be 0 or more, got {self.num_groups}")
        if self.lr_reference_minibatch < 1:
            raise ConfigError("--lr_reference_minibatch must be at least 1, "
                              f"got {self.lr_reference_minibatch}")

    def learning_rate_factor(self, minibatch_size):
        """Return the factor applied to every learning rate for a global ``minibatch_size``."""
        ratio = minibatch_size / self.lr_reference_minibatch
        if self.lr_scaling == "linear":
            return ratio
        if self.lr_scaling == "sqrt":
            return ratio ** 0.5
        return 1.0


@dataclass
class RunConfig:
    """Everything a training run needs; built once from flags or by hand in a notebook."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    preset: str = "uresnet"
    minibatch_size: int = 2              # global batch: events per step over all ranks
    iterations: int = 100
    precision: str = "float32"
    data_format: str = "channels_last"   # layout inside the model; its input and output stay NHWC
    output_dir: Optional[str] = None
    checkpoint_iteration: int = 500
    aux_iteration: int = 10
    aux_minibatch_size: Optional[int] = None
    log_iteration: int = 1
    max_checkpoints: int = 3
    inter_op_threads: int = 0            # 0 lets TensorFlow choose
    intra_op_threads: int = 0
    jit_compile: bool = False
    deterministic: bool = False          # deterministic TensorFlow ops

    def validate(self, num_ranks=1):
        """Check every setting and raise ConfigError with one line saying what to change."""
        self.network.validate()
        self.data.validate()
        self.optimizer.validate()
        self.distributed.validate()
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("data_format", self.data_format, DATA_FORMATS)
        self._validate_image_size()
        self._validate_batch(num_ranks)
        for name in ("iterations", "checkpoint_iteration", "aux_iteration", "log_iteration"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}")

    def _validate_image_size(self):
        # The image size of real files is known once they are open; the loop checks it then.
        if self.data.synthetic:
            self.check_image_shape(self.data.image_shape())

    def check_image_shape(self, image_shape):
        """Raise ConfigError unless the network can halve ``image_shape`` network_depth times."""
        height, width = image_shape
        factor = 2 ** self.network.network_depth
        if height % factor or width % factor:
            raise ConfigError(
                f"image {height} x {width} (downsample {self.data.downsample}) is not divisible "
                f"by 2**network_depth = {factor}; lower --network_depth or --downsample (for "
                f"SBND images, downsample + network_depth <= 8)")

    def _validate_batch(self, num_ranks):
        if self.minibatch_size < 1:
            raise ConfigError(f"--minibatch_size must be at least 1, got {self.minibatch_size}")
        if self.minibatch_size % num_ranks:
            raise ConfigError(
                f"--minibatch_size={self.minibatch_size} is the global batch and must divide "
                f"evenly over {num_ranks} ranks; use a multiple of {num_ranks}")

    def local_minibatch_size(self, num_ranks=1):
        """Return the events per step on one rank."""
        return self.minibatch_size // num_ranks

    def to_dict(self):
        return dataclasses.asdict(self)

    def check_resumable(self, previous, run_folder):
        """Raise ConfigError unless this run can continue the run whose config.json is ``previous``.

        The network and the downsampling must match, because the checkpoint contains weights of that
        exact shape. Other settings (iterations, learning rate, files) may change on resume.
        """
        previous_network = previous.get("network", {})
        differences = [f"{name}={previous_network.get(name)!r} (now {value!r})"
                       for name, value in self.to_dict()["network"].items()
                       if previous_network.get(name) != value]
        previous_downsample = previous.get("data", {}).get("downsample")
        if previous_downsample != self.data.downsample:
            differences.append(f"downsample={previous_downsample!r} "
                               f"(now {self.data.downsample!r})")
        if differences:
            raise ConfigError(
                f"run folder {run_folder} was trained with {', '.join(differences)}; resume with "
                f"the same network flags and --downsample, or choose a new --output_dir")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"--{name}={value!r} is not valid; choose one of {', '.join(choices)}")
