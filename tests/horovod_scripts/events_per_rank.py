"""Run under horovodrun: read minibatches as the training loop does and record the events seen.

Usage: events_per_rank.py FILE LOCAL_MINIBATCH STEPS OUTPUT_DIR

Each rank writes ``OUTPUT_DIR/rank<R>.json`` with the event index of every event it read, step
by step. Events are identified by their total charge, which differs between the events of the
test files.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd  # noqa: E402
import numpy as np  # noqa: E402

from cosmictagger_tf.data import read_events  # noqa: E402
from cosmictagger_tf.data.pipeline import EventSource, larcv3_dataset  # noqa: E402


def main(path, local_minibatch, steps, output_dir):
    hvd.init()
    images, _ = read_events(path)
    totals = images.sum(axis=(1, 2, 3))

    source = EventSource(path, "sbndwire", "sbnd_cosmicseg")
    dataset = larcv3_dataset(source, local_minibatch, downsample=0, seed=17, rank=hvd.rank(),
                             num_ranks=hvd.size())
    seen = []
    for minibatch, _ in dataset.take(steps):
        sums = minibatch.numpy().sum(axis=(1, 2, 3))
        seen.append([int(np.argmin(np.abs(totals - value))) for value in sums])

    with open(os.path.join(output_dir, f"rank{hvd.rank()}.json"), "w") as handle:
        json.dump({"rank": hvd.rank(), "size": hvd.size(), "steps": seen}, handle)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
