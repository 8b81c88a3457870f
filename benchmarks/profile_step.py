"""Profile of one training step: kernel time by layer type and by U-Net level, as JSON.

    .venv/bin/python benchmarks/profile_step.py --preset=a21 --precision=float32 --steps=2

The command runs warm-up steps, then records ``--steps`` steps with the TensorFlow profiler and
sums the duration of every kernel on the compute threads. Kernels are grouped by layer type
(convolution, batch norm, activation, resampling, pooling, loss, optimiser, other). They are
also grouped by the level their op name belongs to: ``initial``, ``level0`` at full resolution,
and so on down to ``deepest`` and ``head``, with ``loss_metrics`` for ops outside the model.
Times are milliseconds per step. With two intra-op threads the kernels run one after another, so
the sum is close to the step time.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import collections  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402

from absl import app, flags  # noqa: E402

import common  # noqa: E402

flags.DEFINE_enum("preset", "a21", ["uresnet", "a21", "polaris"], "Network preset.")
flags.DEFINE_integer("downsample", 1, "Shrink each plane by 2**downsample per axis.")
flags.DEFINE_integer("minibatch_size", 2, "Events per step.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed", "bfloat16"], "Precision.")
flags.DEFINE_integer("warmup_steps", 2, "Steps run before profiling.")
flags.DEFINE_integer("steps", 2, "Profiled steps.")
FLAGS = flags.FLAGS

# Op types by layer type, and the first match wins. The patterns match TensorFlow and Intel
# Extension kernel names (for example Conv2DBackpropFilter and _ITEXConv2DBackpropFilterWithBias).
LAYER_TYPES = (
    ("convolution", re.compile(r"Conv2D")),
    ("batch_norm", re.compile(r"BatchNorm")),
    ("activation", re.compile(r"LeakyRelu|Relu")),
    ("resampling", re.compile(r"Resize")),
    ("pooling", re.compile(r"Pool")),
    ("cast", re.compile(r"Cast")),
    ("loss", re.compile(r"Softmax|CrossEntropy")),
)
LEVEL = re.compile(r"(?:^|/)(initial|level\d+|deepest|head)_")


def main(argv):
    del argv
    import tensorflow as tf

    from cosmictagger_tf.data.pipeline import synthetic_dataset

    model, image_shape = common.build_preset_model(FLAGS.preset, FLAGS.downsample,
                                                   FLAGS.precision)
    trainer = common.single_process_trainer(model, FLAGS.precision)
    minibatches = iter(synthetic_dataset(FLAGS.minibatch_size, image_shape))
    for _ in range(FLAGS.warmup_steps):
        trainer.train_step(*next(minibatches)).numpy()

    with tempfile.TemporaryDirectory() as log_dir:
        tf.profiler.experimental.start(log_dir)
        for _ in range(FLAGS.steps):
            trainer.train_step(*next(minibatches)).numpy()
        tf.profiler.experimental.stop()
        kernels = _kernel_times(log_dir)

    print(json.dumps(_breakdown(kernels, FLAGS.steps), indent=2))


def _kernel_times(log_dir):
    """Return ``(op name, op type, milliseconds)`` for every kernel of the recorded trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())

    kernels = []
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:
                    op_name, op_type = name.rsplit(":", 1)
                    kernels.append((op_name, op_type, event.duration_ps / 1e9))
    return kernels


def _breakdown(kernels, steps):
    by_type, by_level, by_op = (collections.Counter() for _ in range(3))
    for op_name, op_type, milliseconds in kernels:
        layer_type = _layer_type(op_name, op_type)
        level = _level(op_name)
        by_type[layer_type] += milliseconds / steps
        by_level[f"{level}/{layer_type}"] += milliseconds / steps
        by_op[op_type] += milliseconds / steps

    total = sum(by_type.values())
    return {
        "benchmark": "profile_step", "preset": FLAGS.preset, "precision": FLAGS.precision,
        "minibatch_size": FLAGS.minibatch_size, "steps": FLAGS.steps,
        "kernel_ms_per_step": total,
        "by_layer_type_ms": _rounded(by_type),
        "by_level_and_type_ms": _rounded(by_level),
        "top_kernels_ms": _rounded(collections.Counter(dict(by_op.most_common(15)))),
        "machine": common.machine_description(FLAGS),
    }


def _layer_type(op_name, op_type):
    if op_name.startswith("Adam") or "/Adam/" in op_name:
        return "optimizer"
    for layer_type, pattern in LAYER_TYPES:
        if pattern.search(op_type):
            return layer_type
    return "other"


def _level(op_name):
    match = LEVEL.search(op_name)
    return match.group(1) if match else "loss_metrics"


def _rounded(counter):
    return {key: round(value, 1) for key, value in counter.most_common()}


if __name__ == "__main__":
    app.run(main)
