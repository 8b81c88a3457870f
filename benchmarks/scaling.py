"""Weak scaling on one machine: one rank with every core against N ranks sharing the cores.

    .venv/bin/python benchmarks/scaling.py --preset=a21 --downsample=2 --ranks=2 \
        --minibatch_per_rank=2 --iterations=12

Both runs train on synthetic events with ``--minibatch_per_rank`` events per rank and step, so
the global minibatch grows with the rank count. The single rank gets every core as intra-op
threads, and each of the N ranks gets ``cores / N``. Throughput is the training command's own
figure: total events over the time of all steps after the first. The efficiency printed is N-rank
throughput over one-rank throughput. On one machine the cores are fixed, so 1.0 means the
allreduce and the extra processes cost nothing. Each run is timed once, so there is no spread.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import app, flags

import common

flags.DEFINE_enum("preset", "a21", ["uresnet", "a21", "polaris"], "Network preset.")
flags.DEFINE_integer("downsample", 2, "Shrink each plane by 2**downsample per axis.")
flags.DEFINE_integer("ranks", 2, "Ranks of the multi-rank run.")
flags.DEFINE_integer("minibatch_per_rank", 2, "Events per rank and step.")
flags.DEFINE_integer("iterations", 12, "Training steps per run; the first is not timed.")
FLAGS = flags.FLAGS

REPO_DIR = Path(__file__).resolve().parents[1]
RATE = re.compile(r"finished at step \d+: ([0-9.]+) events/s")


def train_command(output_dir, ranks, threads):
    return [sys.executable, "-m", "cosmictagger_tf.train", "--synthetic",
            f"--preset={FLAGS.preset}", f"--downsample={FLAGS.downsample}",
            f"--minibatch_size={ranks * FLAGS.minibatch_per_rank}",
            f"--iterations={FLAGS.iterations}", f"--intra_op_threads={threads}",
            "--log_iteration=1000", "--checkpoint_iteration=100000", f"--output_dir={output_dir}"]


def measure(ranks, threads, folder):
    command = train_command(Path(folder) / f"ranks{ranks}", ranks, threads)
    if ranks > 1:
        horovodrun = Path(sys.executable).parent / "horovodrun"
        command = [str(horovodrun), "-np", str(ranks), "--gloo", "-H", f"localhost:{ranks}",
                   *command]
    result = subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True)
    output = result.stdout + result.stderr
    match = RATE.search(output)
    if result.returncode != 0 or match is None:
        sys.exit(f"run with {ranks} rank(s) failed (exit {result.returncode}):\n{output[-3000:]}")
    return float(match.group(1))


def main(argv):
    del argv
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as folder:
        single = measure(1, cores, folder)
        multi = measure(FLAGS.ranks, max(1, cores // FLAGS.ranks), folder)
    print(json.dumps({
        "benchmark": "scaling", "preset": FLAGS.preset, "downsample": FLAGS.downsample,
        "cores": cores, "minibatch_per_rank": FLAGS.minibatch_per_rank,
        "iterations": FLAGS.iterations,
        "events_per_second_1_rank": single,
        f"events_per_second_{FLAGS.ranks}_ranks": multi,
        "efficiency": multi / single,
        "machine": common.machine_description(FLAGS),
    }, indent=2))


if __name__ == "__main__":
    app.run(main)
