"""Input pipeline throughput: larcv3 events decoded, densified and downsampled per second, as JSON.

    .venv/bin/python benchmarks/input_pipeline.py --cores=1,2 --simulated_events=1000

Each measurement runs in its own process pinned to the first N cores (``--cores``), with the
reader threads and TensorFlow's thread pools sized to N, so "one core" means one core. The
stream is the training command's: the tf.data pipeline of ``larcv3_dataset`` over an EventSource,
shuffled, at ``--downsample`` (1 gives 640 x 1024 per plane from the SBND images), batched into
minibatches. Nothing consumes the minibatches but the clock.

With ``--processes=N`` the command also runs N single-core workers at once, each pinned to its own
core, as N ranks of one node would read, and reports their summed rate. h5py serialises every
HDF5 call of a process under one lock, so reader threads within a process gain less than separate
processes, which do not share that lock.

Two inputs are measured: the real sample (``--data_file``, the five-event file in ../shared when
present), read again and again, and a simulated file of ``--simulated_events`` events written
once to ``--simulated_file`` when it does not exist yet. An existing file must hold that many
events.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from absl import app, flags  # noqa: E402

import common  # noqa: E402

REPO_DIR = Path(__file__).resolve().parents[1]
SAMPLE = REPO_DIR.parent / "shared" / "data" / "cosmic_tagging_light.h5"

flags.DEFINE_string("data_file", str(SAMPLE) if SAMPLE.exists() else None,
                    "Real larcv3 file to read; empty to skip.")
flags.DEFINE_integer("simulated_events", 1000, "Events of the simulated file; 0 to skip it.")
flags.DEFINE_string("simulated_file", None,
                    "Simulated larcv3 file; written first when it does not exist. Default: "
                    "cosmictagger_benchmark_N.h5 in the system's temporary folder, N the events.")
flags.DEFINE_list("cores", ["1", "2"], "Core counts to measure, each in its own process.")
flags.DEFINE_integer("processes", 0, "Also run this many single-core workers at once (0: skip).")
flags.DEFINE_integer("downsample", 1, "Shrink each plane by 2**downsample per axis.")
flags.DEFINE_integer("minibatch_size", 2, "Events per minibatch.")
flags.DEFINE_integer("warmup_minibatches", 5, "Minibatches read before timing.")
flags.DEFINE_integer("minibatches", 50, "Timed minibatches per repeat.")
flags.DEFINE_integer("repeats", 3, "Timed repeats.")
flags.DEFINE_string("worker", None, "Internal: measure this file in this process.")
flags.DEFINE_integer("worker_cores", 1, "Internal: cores of the worker process.")
flags.DEFINE_integer("worker_first_core", 0, "Internal: first core of the worker process.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.worker:
        print(json.dumps(_measure(FLAGS.worker, FLAGS.worker_cores, FLAGS.worker_first_core)))
        return

    inputs = []
    if FLAGS.data_file:
        inputs.append(("real", FLAGS.data_file))
    if FLAGS.simulated_events > 0:
        inputs.append(("simulated", _simulated_file()))
    if not inputs:
        sys.exit("error: nothing to measure; give --data_file or --simulated_events > 0")

    results = [_run_worker(kind, path, int(cores)) for kind, path in inputs
               for cores in FLAGS.cores]
    if FLAGS.processes > 0:
        results.extend(_run_concurrent_workers(kind, path) for kind, path in inputs)
    print(json.dumps({"benchmark": "input_pipeline", "results": results,
                      "machine": _machine()}, indent=2))


def _simulated_file():
    """Return the simulated file, written first when absent. An existing one must fit the flag."""
    path = Path(FLAGS.simulated_file or Path(tempfile.gettempdir())
                / f"cosmictagger_benchmark_{FLAGS.simulated_events}.h5")
    if path.exists():
        events = _count_events(path)
        if events != FLAGS.simulated_events:
            sys.exit(f"error: {path} holds {events} events, not --simulated_events="
                     f"{FLAGS.simulated_events}; remove it or give another --simulated_file")
    else:
        print(f"simulating {FLAGS.simulated_events} events into {path} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "cosmictagger_tf.simulate", f"--output={path}",
                        f"--events={FLAGS.simulated_events}", "--seed=1000"],
                       cwd=REPO_DIR, check=True)
    return str(path)


def _count_events(path):
    import h5py

    with h5py.File(path, "r", locking=False) as handle:
        return len(handle["Events/event_id"])


def _run_worker(kind, path, cores):
    if cores < 1 or cores > os.cpu_count():
        sys.exit(f"error: --cores={cores} is outside 1..{os.cpu_count()}")
    worker = subprocess.Popen(_worker_command(path, cores, first_core=0), cwd=REPO_DIR,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return {"input": kind, **_worker_result(worker, path)}


def _run_concurrent_workers(kind, path):
    """Run ``--processes`` single-core workers at once and return their summed rate."""
    if FLAGS.processes > os.cpu_count():
        sys.exit(f"error: --processes={FLAGS.processes} exceeds the {os.cpu_count()} cores")
    workers = [subprocess.Popen(_worker_command(path, 1, first_core=core), cwd=REPO_DIR,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for core in range(FLAGS.processes)]
    results = [_worker_result(worker, path) for worker in workers]
    return {"input": kind, "file": path, "processes": FLAGS.processes, "cores": FLAGS.processes,
            "events_per_second": sum(result["events_per_second"] for result in results),
            "events_per_second_per_process": [result["events_per_second"]
                                              for result in results]}


def _worker_command(path, cores, first_core):
    return [sys.executable, __file__, f"--worker={path}", f"--worker_cores={cores}",
            f"--worker_first_core={first_core}", f"--downsample={FLAGS.downsample}",
            f"--minibatch_size={FLAGS.minibatch_size}",
            f"--warmup_minibatches={FLAGS.warmup_minibatches}",
            f"--minibatches={FLAGS.minibatches}", f"--repeats={FLAGS.repeats}"]


def _worker_result(worker, path):
    stdout, stderr = worker.communicate()
    if worker.returncode:
        sys.exit(f"error: the measurement of {path} failed:\n{stderr[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def _measure(path, cores, first_core):
    """Pin this process to ``cores`` cores and time the training input pipeline on ``path``."""
    os.sched_setaffinity(0, set(range(first_core, first_core + cores)))
    import tensorflow as tf

    from cosmictagger_tf.data import larcv3_format, pipeline

    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    source = pipeline.EventSource([path], larcv3_format.DEFAULT_IMAGE_PRODUCER,
                                  larcv3_format.DEFAULT_LABEL_PRODUCER)
    dataset = pipeline.larcv3_dataset(source, FLAGS.minibatch_size, FLAGS.downsample, seed=0,
                                      reader_threads=cores, prefetch=2)
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    minibatches = iter(dataset.with_options(options))

    for _ in range(FLAGS.warmup_minibatches):
        next(minibatches)[0].numpy()
    rates = common.timed_repeats(lambda: next(minibatches)[0], FLAGS.minibatch_size,
                                 FLAGS.minibatches, FLAGS.repeats)
    summary = common.rate_summary(rates, FLAGS.minibatches * FLAGS.minibatch_size)
    image_shape = list(next(minibatches)[0].shape[1:3])
    return {"file": path, "file_events": source.num_events, "cores": cores,
            "image_shape": image_shape, "events_per_second": summary["rate"],
            "events_per_second_repeats": summary["repeats"], "spread": summary["spread"],
            "peak_memory_gb": common.peak_memory_bytes() / 1e9}


def _machine():
    return common.machine_description(FLAGS)


if __name__ == "__main__":
    app.run(main)
