"""Command-line flags of the training command and their conversion into a RunConfig.

Every flag is optional so that modules importing this one stay importable in tests. Network
flags default to None: a flag given on the command line overrides the field of the chosen
``--preset``; the others keep the preset's value. Values are resolved in a fixed order: preset,
then ``--flagfile`` contents, then the command line (absl applies the last two in order).
"""
from absl import flags

from cosmictagger_tf import config as config_lib

FLAGS = flags.FLAGS

# Data.
# A multi-string flag, so that a repeated --data_file adds files instead of replacing the earlier
# ones, as a repeated list flag would. Each value may still be a comma-separated list.
flags.DEFINE_multi_string("data_file", [], "Training larcv3 file(s): paths or globs, "
                          "comma-separated or in repeated flags. Without it (and without "
                          "--synthetic) the run trains on the built-in default dataset: "
                          "simulated SBND-like events, made once into --cache_dir.")
flags.DEFINE_integer("default_train_events", 320, "Events in the simulated default training "
                     "file.", lower_bound=1)
flags.DEFINE_integer("default_validation_events", 64, "Events in the simulated default "
                     "validation file.", lower_bound=1)
flags.DEFINE_string("cache_dir", None, "Folder of the simulated default dataset (default: "
                    "$COSMICTAGGER_CACHE or ~/.cache/cosmictagger_tf).")
flags.DEFINE_multi_string("aux_file", [], "Validation larcv3 file(s), comma-separated or in "
                          "repeated flags, evaluated every --aux_iteration steps on one "
                          "minibatch.")
flags.DEFINE_bool("skip_bad_files", False, "Skip input files that fail the larcv3 checks at "
                  "start-up, with a warning naming each, instead of stopping; the run fails "
                  "when every file is bad.")
flags.DEFINE_string("image_producer", "sbndwire", "sparse2d producer holding the wire charge.")
flags.DEFINE_string("label_producer", "sbnd_cosmicseg", "sparse2d producer holding the labels.")
flags.DEFINE_integer("downsample", 1, "Shrink each plane by 2**downsample per axis "
                     "(1: 640 x 1024, 0: full 1280 x 2048).", lower_bound=0)
flags.DEFINE_bool("synthetic", False, "Train on random events of the real shape (no file I/O), "
                  "for compute benchmarks.")
flags.DEFINE_bool("shuffle", True, "Shuffle the events each epoch with --seed.")
flags.DEFINE_integer("reader_threads", 2, "Events densified in parallel by tf.data.")
flags.DEFINE_integer("prefetch", 2, "Minibatches prepared ahead of the training step.")

# Network: None keeps the preset's value.
flags.DEFINE_enum("preset", "uresnet", list(config_lib.PRESETS), "Network preset.")
flags.DEFINE_integer("n_initial_filters", None, "Filters after the initial convolution.")
flags.DEFINE_integer("network_depth", None, "Number of downsampling levels.")
flags.DEFINE_integer("blocks_per_layer", None, "Blocks before and after each downsampling.")
flags.DEFINE_integer("blocks_deepest_layer", None, "Blocks in the shared bottleneck.")
flags.DEFINE_integer("blocks_final", None, "Blocks at full width before the classifier.")
flags.DEFINE_integer("filter_size_deepest", None, "Kernel size in the shared bottleneck.")
flags.DEFINE_integer("bottleneck_deepest", None, "Channels of the shared bottleneck.")
flags.DEFINE_bool("residual", None, "Use residual blocks.")
flags.DEFINE_enum("connections", None, list(config_lib.CONNECTIONS), "Skip connections.")
flags.DEFINE_enum("downsampling", None, list(config_lib.DOWNSAMPLING), "Downsampling layer.")
flags.DEFINE_enum("upsampling", None, list(config_lib.UPSAMPLING), "Upsampling layer.")
flags.DEFINE_enum("growth_rate", None, list(config_lib.GROWTH), "Width growth per level.")
flags.DEFINE_enum("normalization", None, list(config_lib.NORMALIZATION), "Normalisation.")
flags.DEFINE_bool("use_bias", None, "Give convolutions a bias.")
flags.DEFINE_bool("independent_planes", None, "Give each plane its own encoder and decoder "
                  "weights instead of sharing them.")

# Optimisation.
flags.DEFINE_integer("minibatch_size", 2, "Global minibatch: events per step over all ranks.")
flags.DEFINE_integer("iterations", 100, "Optimiser steps to reach (a resumed run continues up "
                     "to this step).")
flags.DEFINE_float("learning_rate", 3e-4, "Peak learning rate of Adam.")
flags.DEFINE_enum("lr_schedule", "reference", ["reference", "constant"], "reference: linear "
                  "warm-up over the first epoch, flat to epoch 21, then exponential decay.")
flags.DEFINE_enum("loss_balance_scheme", "focal", list(config_lib.LOSS_BALANCE_SCHEMES),
                  "Per-pixel loss weights.")
flags.DEFINE_float("weight_decay", 0.1, "Coefficient of the weight-decay term (0 disables).")
flags.DEFINE_enum("precision", "float32", list(config_lib.PRECISIONS), "float32; mixed "
                  "(float16 with loss scaling); bfloat16 (mixed_bfloat16 policy).")
flags.DEFINE_enum("data_format", "channels_last", list(config_lib.DATA_FORMATS), "Tensor layout "
                  "inside the model: channels_last (NHWC) or channels_first (NCHW). The model's "
                  "input and output stay channels-last. A device that cannot run channels_first "
                  "stops the run at start-up with status 2.")
flags.DEFINE_integer("gradient_accumulation", 1, "Minibatches per optimiser update.")
flags.DEFINE_bool("skip_nonfinite_steps", False, "Skip the update of a step whose loss or "
                  "gradients are NaN or infinite, and go on, instead of stopping the run "
                  "with status 1.")
flags.DEFINE_integer("max_consecutive_skips", 10, "With --skip_nonfinite_steps, stop the "
                     "run after this many non-finite steps in a row.")
flags.DEFINE_integer("seed", 0, "Seed of the event order and of the weight initialisation.")

# Run.
flags.DEFINE_string("output_dir", None, "Run folder: checkpoints, metrics.jsonl, TensorBoard. "
                    "An existing run folder is resumed. Default: runs/<preset>-<time>.")
flags.DEFINE_integer("checkpoint_iteration", 500, "Steps between checkpoints.")
flags.DEFINE_integer("aux_iteration", 10, "Steps between validation minibatches.")
flags.DEFINE_integer("log_iteration", 5, "Steps between log lines.")
flags.DEFINE_integer("max_checkpoints", 3, "Checkpoints kept in the run folder.")
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads (0: TensorFlow's "
                     "choice).")
flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads (0: TensorFlow's "
                     "choice).")
flags.DEFINE_bool("jit_compile", False, "Compile the steps with XLA.")
flags.DEFINE_bool("deterministic", False, "Use deterministic TensorFlow ops, so a run repeats "
                  "bit for bit on the same machine and thread count (slower).")

# Distributed training.
flags.DEFINE_float("horovod_fusion_threshold_mb", None, "Horovod tensor fusion buffer in MB "
                   "(HOROVOD_FUSION_THRESHOLD; default: Horovod's 128 MB).")
flags.DEFINE_integer("horovod_num_groups", 0, "Split the gradient allreduce into this many "
                     "groups (0: fuse by the threshold only).")
flags.DEFINE_enum("horovod_compression", "none", list(config_lib.COMPRESSIONS), "Send "
                  "gradients between ranks as float16 (fp16) or bfloat16 (bf16).")
flags.DEFINE_string("horovod_timeline", None, "Write a Horovod timeline (Chrome trace JSON) to "
                    "this file.")
flags.DEFINE_integer("stall_shutdown_seconds", 120, "Stop the whole job when a rank has not "
                     "joined a collective for this many seconds.")
flags.DEFINE_enum("lr_scaling", "none", list(config_lib.LR_SCALINGS), "Scale the learning "
                  "rates by the global minibatch over --lr_reference_minibatch (linear or "
                  "square root).")
flags.DEFINE_integer("lr_reference_minibatch", 2, "Global minibatch the learning rates are "
                     "given for.")
flags.DEFINE_bool("rank_summaries", False, "Every rank writes ranks/rank<R>.json in the run "
                  "folder: digests of its weights and optimizer state and its last metrics.")

_NETWORK_FLAGS = ("n_initial_filters", "network_depth", "blocks_per_layer",
                  "blocks_deepest_layer", "blocks_final", "filter_size_deepest",
                  "bottleneck_deepest", "residual", "connections", "downsampling", "upsampling",
                  "growth_rate", "normalization", "use_bias", "independent_planes")


def config_from_flags(flag_values=FLAGS):
    """Build the RunConfig from parsed flags (preset first, then explicit network flags)."""
    overrides = {name: flag_values[name].value for name in _NETWORK_FLAGS
                 if flag_values[name].value is not None}
    network = config_lib.network_preset(flag_values.preset, **overrides)
    data = config_lib.DataConfig(
        data_files=tuple(flag_values.data_file), aux_files=tuple(flag_values.aux_file),
        cache_dir=flag_values.cache_dir,
        default_events=(flag_values.default_train_events, flag_values.default_validation_events),
        image_producer=flag_values.image_producer, label_producer=flag_values.label_producer,
        skip_bad_files=flag_values.skip_bad_files,
        downsample=flag_values.downsample, synthetic=flag_values.synthetic,
        shuffle=flag_values.shuffle, seed=flag_values.seed,
        reader_threads=flag_values.reader_threads, prefetch=flag_values.prefetch)
    optimizer = config_lib.OptimizerConfig(
        learning_rate=flag_values.learning_rate, lr_schedule=flag_values.lr_schedule,
        loss_balance_scheme=flag_values.loss_balance_scheme,
        weight_decay=flag_values.weight_decay,
        gradient_accumulation=flag_values.gradient_accumulation,
        skip_nonfinite_steps=flag_values.skip_nonfinite_steps,
        max_consecutive_skips=flag_values.max_consecutive_skips)
    distributed = config_lib.DistributedConfig(
        fusion_threshold_mb=flag_values.horovod_fusion_threshold_mb,
        num_groups=flag_values.horovod_num_groups, compression=flag_values.horovod_compression,
        timeline=flag_values.horovod_timeline,
        stall_shutdown_s=flag_values.stall_shutdown_seconds,
        lr_scaling=flag_values.lr_scaling,
        lr_reference_minibatch=flag_values.lr_reference_minibatch,
        rank_summaries=flag_values.rank_summaries)
    return config_lib.RunConfig(
        network=network, data=data, optimizer=optimizer, distributed=distributed,
        preset=flag_values.preset,
        minibatch_size=flag_values.minibatch_size, iterations=flag_values.iterations,
        precision=flag_values.precision, data_format=flag_values.data_format,
        output_dir=flag_values.output_dir,
        checkpoint_iteration=flag_values.checkpoint_iteration,
        aux_iteration=flag_values.aux_iteration, log_iteration=flag_values.log_iteration,
        max_checkpoints=flag_values.max_checkpoints,
        intra_op_threads=flag_values.intra_op_threads,
        inter_op_threads=flag_values.inter_op_threads, jit_compile=flag_values.jit_compile,
        deterministic=flag_values.deterministic)
