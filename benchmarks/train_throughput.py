"""Training throughput of one process on synthetic events, printed as JSON.

    .venv/bin/python benchmarks/train_throughput.py --preset=a21 --downsample=1 \
        --minibatch_size=2 --precision=float32 --warmup_steps=3 --steps=10 --repeats=3

Each repeat runs ``--steps`` train steps after the warm-up steps. The step's scalars are read on
the host before each clock read, so the time covers finished work only. Throughput is
total events over total time; the spread over repeats is reported too.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402

flags.DEFINE_enum("preset", "a21", ["uresnet", "a21", "polaris"], "Network preset.")
flags.DEFINE_integer("downsample", 1, "Shrink each plane by 2**downsample per axis.")
flags.DEFINE_integer("minibatch_size", 2, "Events per step.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed", "bfloat16"], "Precision.")
flags.DEFINE_integer("warmup_steps", 3, "Steps run before timing (tracing, allocation).")
flags.DEFINE_integer("steps", 10, "Timed steps per repeat.")
flags.DEFINE_integer("repeats", 3, "Timed repeats.")
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads (0: TensorFlow's choice).")
FLAGS = flags.FLAGS


def machine_description():
    import tensorflow as tf

    cpu_model = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu_model = next(line.split(":", 1)[1].strip() for line in handle
                             if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    description = {"cpu": cpu_model, "cores": os.cpu_count(), "tensorflow": tf.__version__,
                   "python": platform.python_version()}
    for module in ("intel_extension_for_tensorflow", "horovod"):
        try:
            description[module] = __import__(module).__version__
        except ImportError:
            description[module] = None
    return description


def main(argv):
    del argv
    import tensorflow as tf

    from cosmictagger_tf.config import OptimizerConfig, network_preset
    from cosmictagger_tf.data.pipeline import synthetic_dataset
    from cosmictagger_tf.distributed.runtime import SingleProcessRuntime, configure_threads
    from cosmictagger_tf.model import build_uresnet, count_parameters
    from cosmictagger_tf.training.trainer import Trainer

    configure_threads(FLAGS.intra_op_threads, 0)
    scale = 2 ** FLAGS.downsample
    image_shape = (1280 // scale, 2048 // scale)
    if FLAGS.minibatch_size < 1 or FLAGS.steps < 1 or FLAGS.repeats < 1:
        sys.exit("error: --minibatch_size, --steps and --repeats must be at least 1")
    try:
        model = build_uresnet(network_preset(FLAGS.preset), image_shape, FLAGS.precision)
    except ValueError as error:
        sys.exit(f"error: {error}")
    trainer = Trainer(model, tf.keras.optimizers.Adam(3e-4), SingleProcessRuntime(),
                      OptimizerConfig(), FLAGS.precision)
    minibatches = iter(synthetic_dataset(FLAGS.minibatch_size, image_shape))

    for _ in range(FLAGS.warmup_steps):
        trainer.train_step(*next(minibatches)).numpy()

    rates = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            scalars = trainer.train_step(*next(minibatches))
        scalars.numpy()
        rates.append(FLAGS.steps * FLAGS.minibatch_size / (time.perf_counter() - start))

    total_events = FLAGS.repeats * FLAGS.steps * FLAGS.minibatch_size
    result = {
        "benchmark": "train_throughput",
        "preset": FLAGS.preset, "image_shape": image_shape, "precision": FLAGS.precision,
        "minibatch_size": FLAGS.minibatch_size, "warmup_steps": FLAGS.warmup_steps,
        "steps": FLAGS.steps, "repeats": FLAGS.repeats,
        "parameters": count_parameters(model)[1],
        "events_per_second": total_events / sum(FLAGS.steps * FLAGS.minibatch_size / r
                                                for r in rates),
        "events_per_second_repeats": rates,
        "spread": (max(rates) - min(rates)) / statistics.mean(rates),
        "machine": machine_description(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    app.run(main)
