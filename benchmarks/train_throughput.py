"""Training throughput, peak memory and fraction of the machine's limit for one process, as JSON.

    .venv/bin/python benchmarks/train_throughput.py --preset=a21 --downsample=1 \
        --minibatch_size=2 --precision=float32 --warmup_steps=3 --steps=10 --repeats=3

The step is the training command's full step on synthetic events: forward, loss, weight decay,
metrics, backward, the optimiser update and the stacked scalar allreduce. Each repeat runs
``--steps`` steps after the warm-up steps and reads the step's scalars on the host before the
clock is read. The throughput is total events over total time, with the spread over repeats.

The same run also measures a large matmul in the step's precision (the machine's practical
peak) and reports the convolution FLOPs per event, counted from the model, so the fraction of
the limit reached is ``flops_per_event * events_per_second / matmul_peak``. Peak memory is the
process's peak resident set after the timed steps.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import sys  # noqa: E402

from absl import app, flags  # noqa: E402

import common  # noqa: E402

flags.DEFINE_enum("preset", "a21", ["uresnet", "a21", "polaris"], "Network preset.")
flags.DEFINE_integer("downsample", 1, "Shrink each plane by 2**downsample per axis.")
flags.DEFINE_integer("minibatch_size", 2, "Events per step.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed", "bfloat16"], "Precision.")
flags.DEFINE_integer("warmup_steps", 3, "Steps run before timing (tracing, allocation).")
flags.DEFINE_integer("steps", 10, "Timed steps per repeat.")
flags.DEFINE_integer("repeats", 3, "Timed repeats.")
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads (0: TensorFlow's choice).")
flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads (0: TensorFlow's choice).")
flags.DEFINE_bool("measure_peak", True, "Measure the matmul peak and the fraction of it reached.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.minibatch_size < 1 or FLAGS.steps < 1 or FLAGS.repeats < 1:
        sys.exit("error: --minibatch_size, --steps and --repeats must be at least 1")
    from cosmictagger_tf.data.pipeline import synthetic_dataset
    from cosmictagger_tf.distributed.runtime import configure_threads
    from cosmictagger_tf.model import count_parameters

    configure_threads(FLAGS.intra_op_threads, FLAGS.inter_op_threads)
    model, image_shape = common.build_preset_model(FLAGS.preset, FLAGS.downsample,
                                                   FLAGS.precision)
    trainer = common.single_process_trainer(model, FLAGS.precision)
    minibatches = iter(synthetic_dataset(FLAGS.minibatch_size, image_shape))

    def train_once():
        return trainer.train_step(*next(minibatches))

    for _ in range(FLAGS.warmup_steps):
        train_once().numpy()
    rates = common.timed_repeats(train_once, FLAGS.minibatch_size, FLAGS.steps, FLAGS.repeats)
    summary = common.rate_summary(rates, FLAGS.steps * FLAGS.minibatch_size)
    peak_memory = common.peak_memory_bytes()

    result = {
        "benchmark": "train_throughput",
        "preset": FLAGS.preset, "image_shape": image_shape, "precision": FLAGS.precision,
        "minibatch_size": FLAGS.minibatch_size, "warmup_steps": FLAGS.warmup_steps,
        "steps": FLAGS.steps, "repeats": FLAGS.repeats,
        "parameters": count_parameters(model)[1],
        "events_per_second": summary["rate"],
        "events_per_second_repeats": summary["repeats"],
        "spread": summary["spread"],
        "peak_memory_gb": peak_memory / 1e9,
        "training_gflop_per_event": common.training_flops_per_event(model) / 1e9,
    }
    if FLAGS.measure_peak:
        result.update(_limit_fraction(result))
    result["machine"] = common.machine_description(FLAGS)
    print(json.dumps(result, indent=2))


def _limit_fraction(result):
    """Measure the matmul peak in the step's precision and the fraction of it the step reached."""
    peak_precision = "bfloat16" if FLAGS.precision == "bfloat16" else "float32"
    peak = common.matmul_peak_gflops(peak_precision)
    achieved = result["training_gflop_per_event"] * result["events_per_second"]
    return {"matmul_peak_precision": peak_precision, "matmul_peak_gflops": peak,
            "achieved_gflops": achieved, "limit_events_per_second":
                peak / result["training_gflop_per_event"],
            "fraction_of_limit": achieved / peak}


if __name__ == "__main__":
    app.run(main)
