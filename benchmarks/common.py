"""Shared parts of the benchmark commands: machine description, model set-up, timing, peaks and
model FLOPs.

Timing rules, the same for every command. Warm-up steps run untimed. Each repeat reads a result
on the host before the clock is read, so the time covers finished work only. The rate is total
items over total time, and the spread is (max - min) / mean over the repeats.
"""
import os
import platform
import resource
import statistics
import sys
import time

# A square matmul of this size is large enough for the BLAS and oneDNN kernels to reach their
# steady rate, and small enough to take well under a second per call on two cores.
MATMUL_SIZE = 4096


def machine_description(flag_values):
    """Return the CPU, core count, software versions and the command's own flags as a dict.

    ``flag_values`` is absl's FlagValues. Only the flags the command defines are listed.
    """
    import tensorflow as tf

    own_flags = {flag.name: flag.value
                 for flag in flag_values.get_key_flags_for_module(sys.argv[0])}
    description = {"cpu": _cpu_model(), "cores": os.cpu_count(),
                   "cpu_flags": _vector_flags(), "python": platform.python_version(),
                   "tensorflow": tf.__version__, "flags": own_flags}
    for module in ("intel_extension_for_tensorflow", "horovod"):
        try:
            description[module] = __import__(module).__version__
        except ImportError:
            description[module] = None
    return description


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def _vector_flags():
    """Return the vector and matrix instruction sets the CPU reports that matter for TensorFlow."""
    reported_sets = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    try:
        with open("/proc/cpuinfo") as handle:
            reported = next(line.split(":", 1)[1].split() for line in handle
                            if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return [flag for flag in reported_sets if flag in reported]


def build_preset_model(preset, downsample, precision):
    """Build a preset's model for SBND planes shrunk by ``2**downsample``.

    Returns ``(model, image_shape)``, and exits with a one-line error on an impossible size.
    """
    from cosmictagger_tf.config import network_preset
    from cosmictagger_tf.model import build_uresnet

    scale = 2 ** downsample
    image_shape = (1280 // scale, 2048 // scale)
    try:
        return build_uresnet(network_preset(preset), image_shape, precision), image_shape
    except ValueError as error:
        sys.exit(f"error: {error}")


def single_process_trainer(model, precision):
    """Return the training command's Trainer (Adam, default optimiser settings) on one process."""
    import tensorflow as tf

    from cosmictagger_tf.config import OptimizerConfig
    from cosmictagger_tf.distributed.runtime import SingleProcessRuntime
    from cosmictagger_tf.training.trainer import Trainer

    return Trainer(model, tf.keras.optimizers.Adam(3e-4), SingleProcessRuntime(),
                   OptimizerConfig(), precision)


def timed_repeats(run_once, items_per_call, calls, repeats):
    """Time ``repeats`` x ``calls`` calls of ``run_once`` and return the rates in items/s.

    ``run_once`` returns a tensor or a list of tensors. The last call of each repeat is read on
    the host before the clock stops.
    """
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            result = run_once()
        _read_on_host(result)
        rates.append(calls * items_per_call / (time.perf_counter() - start))
    return rates


def _read_on_host(result):
    for tensor in result if isinstance(result, (list, tuple)) else [result]:
        tensor.numpy()


def rate_summary(rates, items_per_repeat):
    """Return total items over total time, the per-repeat rates and their spread."""
    total_time = sum(items_per_repeat / rate for rate in rates)
    return {"rate": len(rates) * items_per_repeat / total_time, "repeats": rates,
            "spread": (max(rates) - min(rates)) / statistics.mean(rates)}


def matmul_peak_gflops(dtype_name, calls=5):
    """Measure the best rate of a large TensorFlow matmul in GFLOP/s, in float32 or bfloat16."""
    import tensorflow as tf

    dtype = tf.bfloat16 if dtype_name == "bfloat16" else tf.float32
    left = tf.random.normal([MATMUL_SIZE, MATMUL_SIZE], dtype=tf.float32)
    left = tf.cast(left, dtype)
    right = tf.cast(tf.random.normal([MATMUL_SIZE, MATMUL_SIZE]), dtype)
    multiply = tf.function(lambda: tf.matmul(left, right))
    multiply().numpy()

    best = 0.0
    for _ in range(calls):
        start = time.perf_counter()
        multiply().numpy()
        best = max(best, 2 * MATMUL_SIZE ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def convolution_macs_per_event(model):
    """Count the multiply-accumulates of every convolution in one forward pass of one event.

    The count reads each layer's kernel and output size from the built Keras model, so it
    follows the preset. With shared weights the planes of an event are folded into the batch
    axis, so a layer outside the bottleneck runs once per plane. The bottleneck layers (named
    ``deepest_*``) see the planes side by side and run once per event.
    """
    import tensorflow as tf

    folded = any(layer.__class__.__name__ == "FoldPlanes" for layer in model.layers)
    planes = model.input_shape[-1]
    macs = 0
    for layer in model.layers:
        if not isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose)):
            continue
        kernel_height, kernel_width, in_channels, out_channels = layer.kernel.shape
        if isinstance(layer, tf.keras.layers.Conv2DTranspose):
            # The transposed kernel is [kh, kw, out, in], and every input pixel scatters a kernel.
            pixels = _pixels(layer.input_shape)
        else:
            pixels = _pixels(layer.output_shape)
        images = planes if folded and not layer.name.startswith("deepest") else 1
        macs += images * pixels * kernel_height * kernel_width * in_channels * out_channels
    return macs


def _pixels(shape):
    return shape[1] * shape[2]


def training_flops_per_event(model):
    """Return the FLOPs of one training step per event: forward plus two backward convolutions.

    Each convolution costs 2 FLOPs per multiply-accumulate. The backward pass computes the input
    gradient and the kernel gradient, each as costly as the forward pass. Normalisation,
    activations, resampling, the loss and the optimiser are not counted: they are memory-bound
    and small in FLOPs.
    """
    return 3 * 2 * convolution_macs_per_event(model)


def inference_flops_per_event(model):
    """Return the FLOPs of one forward pass per event (convolutions only)."""
    return 2 * convolution_macs_per_event(model)


def peak_memory_bytes():
    """Return the peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
