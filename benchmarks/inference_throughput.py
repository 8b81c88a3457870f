"""Inference throughput of one process, and its ratio to training measured in the same run, as JSON.

    .venv/bin/python benchmarks/inference_throughput.py --preset=a21 --precision=float32 \
        --minibatch_size=2 --warmup_steps=2 --steps=10 --repeats=3

Inference is the model's forward pass in inference mode (batch norm with its moving statistics)
on synthetic events, compiled once as a tf.function, with the class scores read on the host
before each clock read. With ``--compare_training`` the same process then times training steps
of the same model and precision, so the ratio of the two rates comes from one run.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import sys  # noqa: E402

from absl import app, flags  # noqa: E402

import common  # noqa: E402

flags.DEFINE_enum("preset", "a21", ["uresnet", "a21", "polaris"], "Network preset.")
flags.DEFINE_integer("downsample", 1, "Shrink each plane by 2**downsample per axis.")
flags.DEFINE_integer("minibatch_size", 2, "Events per call.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "Precision.")
flags.DEFINE_integer("warmup_steps", 2, "Calls run before timing.")
flags.DEFINE_integer("steps", 10, "Timed calls per repeat.")
flags.DEFINE_integer("repeats", 3, "Timed repeats.")
flags.DEFINE_bool("compare_training", True, "Also time training steps, for the ratio.")
flags.DEFINE_integer("training_steps", 4, "Timed training steps per repeat.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.minibatch_size < 1 or FLAGS.steps < 1 or FLAGS.repeats < 1:
        sys.exit("error: --minibatch_size, --steps and --repeats must be at least 1")
    import tensorflow as tf

    from cosmictagger_tf.data.pipeline import synthetic_dataset

    model, image_shape = common.build_preset_model(FLAGS.preset, FLAGS.downsample,
                                                   FLAGS.precision)
    minibatches = iter(synthetic_dataset(FLAGS.minibatch_size, image_shape))
    images, labels = next(minibatches)
    infer = tf.function(lambda planes: model(planes, training=False))

    def infer_once():
        return infer(images)

    for _ in range(FLAGS.warmup_steps):
        common.timed_repeats(infer_once, FLAGS.minibatch_size, 1, 1)
    rates = common.timed_repeats(infer_once, FLAGS.minibatch_size, FLAGS.steps, FLAGS.repeats)
    summary = common.rate_summary(rates, FLAGS.steps * FLAGS.minibatch_size)

    result = {
        "benchmark": "inference_throughput",
        "preset": FLAGS.preset, "image_shape": image_shape, "precision": FLAGS.precision,
        "minibatch_size": FLAGS.minibatch_size, "warmup_steps": FLAGS.warmup_steps,
        "steps": FLAGS.steps, "repeats": FLAGS.repeats,
        "events_per_second": summary["rate"],
        "events_per_second_repeats": summary["repeats"],
        "spread": summary["spread"],
        "inference_gflop_per_event": common.inference_flops_per_event(model) / 1e9,
    }
    if FLAGS.compare_training:
        result.update(_training_rate(model, minibatches))
        result["inference_over_training"] = (result["events_per_second"]
                                             / result["training_events_per_second"])
    result["peak_memory_gb"] = common.peak_memory_bytes() / 1e9
    result["machine"] = common.machine_description(FLAGS)
    print(json.dumps(result, indent=2))


def _training_rate(model, minibatches):
    """Time training steps of the same model and report inference over training throughput."""
    trainer = common.single_process_trainer(model, FLAGS.precision)

    def train_once():
        return trainer.train_step(*next(minibatches))

    for _ in range(2):
        train_once().numpy()
    rates = common.timed_repeats(train_once, FLAGS.minibatch_size, FLAGS.training_steps,
                                 FLAGS.repeats)
    summary = common.rate_summary(rates, FLAGS.training_steps * FLAGS.minibatch_size)
    return {"training_events_per_second": summary["rate"],
            "training_spread": summary["spread"]}


if __name__ == "__main__":
    app.run(main)
