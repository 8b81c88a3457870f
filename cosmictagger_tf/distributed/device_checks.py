"""Start-up checks that the pinned device can run the chosen precision and data format.

The train command calls ``check_device`` after pinning the device and before reading data or
building the model. A setting the device cannot run raises ConfigError with one line saying
what to change, which the command turns into exit status 2. The decisions are plain functions
of their inputs (device kinds, CPU flags, a probe runner), so tests can inject every outcome.
"""
import tensorflow as tf

from cosmictagger_tf.config import ConfigError

ACCELERATOR_KINDS = ("GPU", "XPU")
# /proc/cpuinfo flags of native bfloat16 arithmetic; a CPU with either runs bfloat16 fast.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Largest relative difference between the float32 channels-first and channels-last probe results
# that still counts as the same result.
PROBE_TOLERANCE = 1e-3


def check_device(config, accelerator_kinds=None, cpu_flags=None, run_probe=None):
    """Raise ConfigError when the device cannot run ``config.precision`` or ``data_format``.

    By default the accelerators are those TensorFlow lists, the CPU flags come from
    /proc/cpuinfo, and the channels-first probe runs on the pinned device.
    """
    if accelerator_kinds is None:
        accelerator_kinds = visible_accelerator_kinds()
    if cpu_flags is None:
        cpu_flags = read_cpu_flags()

    problem = precision_problem(config.precision, accelerator_kinds, cpu_flags)
    if problem is None and config.data_format == "channels_first":
        problem = channels_first_problem(config.precision, run_probe)
    if problem is not None:
        raise ConfigError(problem)


def visible_accelerator_kinds():
    """Return the kinds of accelerator (GPU, XPU) TensorFlow lists, empty on a CPU-only host."""
    return [kind for kind in ACCELERATOR_KINDS if tf.config.list_physical_devices(kind)]


def read_cpu_flags(cpuinfo_path="/proc/cpuinfo"):
    """Return the feature flags of the first CPU in ``cpuinfo_path``, or None where unreadable."""
    try:
        with open(cpuinfo_path) as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() == "flags":
                    return set(value.split())
    except OSError:
        return None
    return None


def precision_problem(precision, accelerator_kinds, cpu_flags):
    """Return why ``precision`` cannot run on this process's devices, or None when it can.

    ``accelerator_kinds`` lists the accelerator kinds present (empty: CPUs only) and
    ``cpu_flags`` the CPU feature flags (None when unknown, which passes the bfloat16 check).
    """
    if accelerator_kinds:
        return None
    if precision == "mixed":
        return ("--precision=mixed (float16 with loss scaling) needs a GPU or an Intel XPU, and "
                "this process sees only CPUs, which have no fast float16 kernels; use "
                "--precision=bfloat16 or --precision=float32 on CPUs")
    if precision == "bfloat16" and cpu_flags is not None \
            and not set(BFLOAT16_CPU_FLAGS) & set(cpu_flags):
        return ("--precision=bfloat16 needs a CPU with bfloat16 instructions, and this CPU has "
                f"neither {' nor '.join(BFLOAT16_CPU_FLAGS)} among its /proc/cpuinfo flags; use "
                "--precision=float32 on this CPU")
    return None


def channels_first_problem(precision="float32", run_probe=None):
    """Return why channels-first layers cannot run on the pinned device, or None when they can.

    ``run_probe(precision)`` returns the relative difference between channels-first and
    channels-last results of the same small network, and raises when an op cannot run.
    """
    run_probe = run_probe or probe_channels_first
    try:
        difference = run_probe(precision)
    except (tf.errors.OpError, ValueError, TypeError, NotImplementedError) as error:
        return (f"--data_format=channels_first cannot run on this device: a channels-first "
                f"convolution, pooling or batch normalisation failed ({_error_reason(error)}); "
                f"use --data_format=channels_last")
    if not difference <= PROBE_TOLERANCE:
        return (f"--data_format=channels_first gives wrong results on this device: a small "
                f"channels-first network differs from its channels-last copy by {difference:.3g} "
                f"(relative, above {PROBE_TOLERANCE:g}); use --data_format=channels_last")
    return None


def probe_channels_first(precision="float32"):
    """Run a small network forward and backward in both layouts; return their relative difference.

    The network has the layer types of the UResNet (convolution, batch normalisation, max
    pooling, bilinear upsampling, transposed convolution) and runs in a tf.function, as the
    training step does. The comparison runs in float32, where both copies, which share their
    weights, must agree to rounding. For a 16-bit ``precision`` the channels-first network also
    runs once in that precision, which raises when the device lacks a kernel.
    """
    events = tf.random.stateless_uniform([2, 8, 8, 2], seed=[7, 11])
    events_first = tf.transpose(events, [0, 3, 1, 2])
    float32 = tf.keras.mixed_precision.Policy("float32")
    channels_last = _probe_network("channels_last", float32)
    channels_first = _probe_network("channels_first", float32)
    channels_first.set_weights(channels_last.get_weights())

    last_results = _forward_backward(channels_last, events)
    first_results = _forward_backward(channels_first, events_first, to_channels_last=True)
    difference = max(_relative_difference(last, first)
                     for last, first in zip(last_results, first_results))

    policy = _policy(precision)
    if policy.compute_dtype != "float32":
        _forward_backward(_probe_network("channels_first", policy), events_first)
    return difference


def _probe_network(data_format, policy):
    channels_first = data_format == "channels_first"
    layers = tf.keras.layers
    return tf.keras.Sequential([
        tf.keras.Input(shape=(2, 8, 8) if channels_first else (8, 8, 2)),
        # No bias: batch normalisation in training mode removes it, so its gradient is rounding
        # noise and would make the relative difference meaningless.
        layers.Conv2D(4, 3, padding="same", use_bias=False, data_format=data_format,
                      dtype=policy),
        layers.BatchNormalization(axis=1 if channels_first else -1, dtype="float32"),
        layers.MaxPooling2D(2, data_format=data_format, dtype=policy),
        layers.UpSampling2D(2, data_format=data_format, interpolation="bilinear", dtype=policy),
        layers.Conv2DTranspose(3, 2, strides=2, padding="same", data_format=data_format,
                               dtype=policy),
    ])


def _forward_backward(network, events, to_channels_last=False):
    @tf.function
    def step(events):
        with tf.GradientTape() as tape:
            tape.watch(events)
            outputs = tf.cast(network(events, training=True), tf.float32)
            loss = tf.reduce_sum(tf.square(outputs))
        gradients = tape.gradient(loss, [events, *network.trainable_variables])
        return outputs, gradients

    outputs, gradients = step(events)
    if to_channels_last:
        outputs = tf.transpose(outputs, [0, 2, 3, 1])
        gradients[0] = tf.transpose(gradients[0], [0, 2, 3, 1])
    return [outputs, *gradients]


def _relative_difference(expected, found):
    expected = tf.cast(expected, tf.float32)
    found = tf.cast(found, tf.float32)
    scale = tf.maximum(tf.reduce_max(tf.abs(expected)), 1e-6)
    return float(tf.reduce_max(tf.abs(expected - found)) / scale)


def _policy(precision):
    from cosmictagger_tf.model.uresnet import PRECISION_POLICIES

    return tf.keras.mixed_precision.Policy(PRECISION_POLICIES[precision])


def _error_reason(error):
    """Return the line of a TensorFlow error that names the failure, without node listings."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    skipped = ("[[", "File ", "Detected at node", "Graph execution error")
    reasons = [line for line in lines if not line.startswith(skipped)]
    if reasons:
        return reasons[-1]
    return lines[0] if lines else type(error).__name__
