"""Time the allreduce of one full set of UResNet gradients between Horovod ranks; print JSON.

Run under Horovod, for example on one machine with Gloo:

    .venv/bin/horovodrun -np 2 --gloo -H localhost:2 .venv/bin/python \
        benchmarks/allreduce_cost.py --preset=a21 --repeats=20

Every rank allreduces tensors shaped like the model's trainable variables, as the distributed
gradient tape does each step. Rank 0 prints the payload size, the time per allreduce (median and
spread over repeats, after warm-up) and the resulting algorithm bandwidth.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402

import common  # noqa: E402

flags.DEFINE_enum("preset", "a21", ["uresnet", "a21", "polaris"], "Network preset.")
flags.DEFINE_integer("warmup", 3, "Allreduces run before timing.")
flags.DEFINE_integer("repeats", 20, "Timed allreduces.")
flags.DEFINE_enum("compression", "none", ["none", "fp16"], "Send gradients as float16.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from cosmictagger_tf.config import network_preset
    from cosmictagger_tf.model import build_uresnet

    hvd.init()
    model = build_uresnet(network_preset(FLAGS.preset), image_shape=(128, 128))
    gradients = [tf.random.normal(v.shape) for v in model.trainable_variables]
    payload_bytes = sum(int(tf.size(g)) * 4 for g in gradients)
    compression = hvd.Compression.fp16 if FLAGS.compression == "fp16" else hvd.Compression.none

    @tf.function
    def allreduce_all(tensors):
        reduced = hvd.grouped_allreduce(tensors, op=hvd.Average, compression=compression)
        return tf.add_n([tf.reduce_sum(r) for r in reduced])

    for _ in range(FLAGS.warmup):
        allreduce_all(gradients).numpy()
    seconds = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        allreduce_all(gradients).numpy()
        seconds.append(time.perf_counter() - start)

    if hvd.rank() == 0:
        median = statistics.median(seconds)
        print(json.dumps({
            "benchmark": "allreduce_cost", "preset": FLAGS.preset, "ranks": hvd.size(),
            "compression": FLAGS.compression, "tensors": len(gradients),
            "payload_mib": payload_bytes / 2**20, "seconds_median": median,
            "seconds_min": min(seconds), "seconds_max": max(seconds),
            "algorithm_bandwidth_gb_per_s": payload_bytes / median / 1e9,
            "machine": common.machine_description(FLAGS),
        }, indent=2))


if __name__ == "__main__":
    app.run(main)
