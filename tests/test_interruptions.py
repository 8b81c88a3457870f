"""Runs that end early: SIGTERM and SIGINT, SIGKILL at random moments, exact resume, non-finite
losses, an output folder that is read-only, too small or fills up, and use without absl flags.

Every run is ``python -m cosmictagger_tf.train`` in a subprocess on a small larcv3 file, as users
run it. Disk tests mount a tmpfs of a chosen size in a private mount namespace (``unshare -rm``).
"""
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import larcv3_factory as factory
from conftest import REPO_DIR
from cosmictagger_tf.data import larcv3_format as fmt
from test_horovod import find_rank_process

# Small enough that tracing the step takes about 5 s and a step about 0.1 s on two busy cores.
NETWORK = dict(n_initial_filters=2, network_depth=2, blocks_per_layer=0, blocks_deepest_layer=0,
               blocks_final=0, bottleneck_deepest=8, connections="sum")
NETWORK_FLAGS = ["--preset=uresnet", "--downsample=0"] + [
    f"--{name}={value}" for name, value in NETWORK.items()]
HEIGHT, WIDTH, EVENTS = 32, 64, 7
# Steps of the runs that are compared with one straight run, step by step.
STEPS = 12
COMPARED_RUN = ["--deterministic", "--minibatch_size=2", "--log_iteration=100",
                f"--iterations={STEPS}"]
TIMEOUT = 240
HOROVODRUN = Path(sys.executable).parent / "horovodrun"


def train_command(*flags):
    return [sys.executable, "-m", "cosmictagger_tf.train", *flags]


def run_train(*flags):
    return subprocess.run(train_command(*flags), cwd=REPO_DIR, capture_output=True, text=True,
                          timeout=TIMEOUT)


def start_train(command, log_path):
    """Start a command with its output going to ``log_path`` (no pipe to fill up)."""
    log = open(log_path, "w")
    process = subprocess.Popen(command, cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT,
                               text=True)
    log.close()
    return process


def wait_for(condition, process, timeout=TIMEOUT, description="condition"):
    """Poll ``condition()`` every 20 ms until it returns a true value, and return that value.

    Fails when ``process`` ends first or after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"process ended with {process.returncode} before "
                                 f"{description}")
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {description}")


def train_rows(output_dir):
    path = Path(output_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [row for row in rows if row["split"] == "train"]


def newest_checkpoint(output_dir):
    """Return the step of the checkpoint the ``checkpoint`` index file names, or None."""
    index = Path(output_dir) / "checkpoints" / "checkpoint"
    if not index.exists():
        return None
    found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', index.read_text(), re.M)
    return int(found.group(1)) if found else None


def assert_checkpoint_complete(output_dir, step):
    prefix = Path(output_dir) / "checkpoints" / f"ckpt-{step}"
    assert Path(f"{prefix}.index").stat().st_size > 0
    assert Path(f"{prefix}.data-00000-of-00001").stat().st_size > 0


def assert_rows_once(output_dir, last_step):
    """Each step 1..last_step has exactly one train row, in order."""
    assert [row["step"] for row in train_rows(output_dir)] == list(range(1, last_step + 1))


def losses(output_dir):
    """Return ``{step: (loss, learning rate)}`` of the train rows."""
    return {row["step"]: (row["loss"], row["learning_rate"]) for row in train_rows(output_dir)}


def assert_losses_match(output_dir, reference):
    resumed = losses(output_dir)
    assert sorted(resumed) == sorted(reference)
    for step, (loss, learning_rate) in reference.items():
        assert resumed[step][0] == pytest.approx(loss, rel=1e-6, abs=0), f"loss at step {step}"
        assert resumed[step][1] == learning_rate, f"learning rate at step {step}"


def checkpoint_values_finite(prefix):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    names = [name for name, dtype in reader.get_variable_to_dtype_map().items()
             if dtype.is_floating]
    return len(names) > 0 and all(np.all(np.isfinite(reader.get_tensor(name)))
                                  for name in names)


def restored_step(prefix):
    """Restore a checkpoint into the run's network and return the restored step."""
    import tensorflow as tf

    from cosmictagger_tf.config import network_preset
    from cosmictagger_tf.model import build_uresnet

    model = build_uresnet(network_preset("uresnet", **NETWORK), (HEIGHT, WIDTH), "float32")
    step = tf.Variable(0, dtype=tf.int64)
    restored = tf.train.Checkpoint(model=model, step=step).restore(str(prefix))
    restored.assert_existing_objects_matched()
    assert all(np.all(np.isfinite(variable.numpy())) for variable in model.variables)
    return int(step.numpy())


def poison_charge(path, entries):
    """Set the first charge voxel of plane 0 of each entry to NaN."""
    with h5py.File(path, "r+") as handle:
        group = handle[factory.sparse2d_group_path(fmt.DEFAULT_IMAGE_PRODUCER)]
        for entry in entries:
            row = int(group["extents"][entry]["first"])
            first = int(group["voxel_extents"][row]["first"])
            voxel = group["voxels"][first]
            voxel["value"] = np.nan
            group["voxels"][first] = voxel
    return path


@pytest.fixture(scope="module")
def event_file(tmp_path_factory):
    """Seven events, so an epoch ends inside a minibatch of two."""
    folder = tmp_path_factory.mktemp("interruptions")
    path, _, _ = factory.make_valid_file(folder / "events.h5", num_events=EVENTS, height=HEIGHT,
                                         width=WIDTH, seed=3)
    return path


@pytest.fixture(scope="module")
def straight_losses(event_file, tmp_path_factory):
    """Per-step losses and learning rates of a deterministic run straight to STEPS, shuffled."""
    output_dir = tmp_path_factory.mktemp("straight") / "run"
    result = run_train(f"--data_file={event_file}", f"--output_dir={output_dir}",
                       *COMPARED_RUN, *NETWORK_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_rows_once(output_dir, STEPS)
    return losses(output_dir)


# ---- SIGTERM and SIGINT ----------------------------------------------------------------------

def stop_with_signal(command, output_dir, log_path, signal_number):
    """Start a run and send ``signal_number`` once metrics.jsonl has two steps.

    Returns the exit status and the seconds from the signal to the exit.
    """
    process = start_train(command, log_path)
    try:
        wait_for(lambda: len(train_rows(output_dir)) >= 2, process,
                 description="two metrics rows")
        process.send_signal(signal_number)
        sent = time.monotonic()
        status = process.wait(timeout=TIMEOUT)
        return status, time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()


def test_sigterm_checkpoints_then_rerun_continues(event_file, straight_losses, tmp_path):
    output_dir = tmp_path / "run"
    command = train_command(f"--data_file={event_file}", f"--output_dir={output_dir}",
                            "--checkpoint_iteration=1000", *COMPARED_RUN, *NETWORK_FLAGS)

    status, seconds = stop_with_signal(command, output_dir, tmp_path / "first.log",
                                       signal.SIGTERM)
    log = (tmp_path / "first.log").read_text()
    print(f"SIGTERM to exit: {seconds:.2f} s")
    assert status == 143, log[-3000:]
    found = re.search(r"stopped by SIGTERM at step (\d+); checkpoint saved to (\S+); rerun the "
                      r"same command to continue", log)
    assert found, log[-3000:]
    stopped = int(found.group(1))
    assert 2 <= stopped < STEPS
    assert found.group(2) == str(output_dir / "checkpoints" / f"ckpt-{stopped}")
    assert newest_checkpoint(output_dir) == stopped
    assert_checkpoint_complete(output_dir, stopped)
    assert_rows_once(output_dir, stopped)
    assert "Traceback" not in log

    rerun = subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"ckpt-{stopped} at step {stopped}" in rerun.stderr
    assert_rows_once(output_dir, STEPS)
    assert_losses_match(output_dir, straight_losses)


def test_sigint_checkpoints_and_exits_130(event_file, tmp_path):
    output_dir = tmp_path / "run"
    command = train_command(f"--data_file={event_file}", f"--output_dir={output_dir}",
                            "--iterations=1000", "--log_iteration=100", *NETWORK_FLAGS)
    status, _ = stop_with_signal(command, output_dir, tmp_path / "run.log", signal.SIGINT)
    log = (tmp_path / "run.log").read_text()
    assert status == 130, log[-3000:]
    found = re.search(r"stopped by SIGINT at step (\d+); checkpoint saved to", log)
    assert found, log[-3000:]
    stopped = int(found.group(1))
    assert newest_checkpoint(output_dir) == stopped
    assert_rows_once(output_dir, stopped)
    assert "KeyboardInterrupt" not in log


# ---- exact resume ----------------------------------------------------------------------------

def test_resume_by_iterations_matches_straight(event_file, straight_losses, tmp_path):
    output_dir = tmp_path / "run"
    common = [f"--data_file={event_file}", f"--output_dir={output_dir}", *COMPARED_RUN,
              *NETWORK_FLAGS]
    # With 3.5 steps per epoch, step 3 is inside the learning-rate warm-up, and the minibatch
    # of step 4 (stream positions 6 and 7) spans the end of the first epoch.
    first = run_train(*common, "--iterations=3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert newest_checkpoint(output_dir) == 3

    second = run_train(*common)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "ckpt-3 at step 3" in second.stderr
    assert_rows_once(output_dir, STEPS)
    assert_losses_match(output_dir, straight_losses)


# ---- SIGKILL at random moments ----------------------------------------------------------------

def test_sigkill_resumes_from_newest_checkpoint(event_file, tmp_path):
    output_dir = tmp_path / "run"
    iterations = 16
    command = train_command(f"--data_file={event_file}", f"--output_dir={output_dir}",
                            f"--iterations={iterations}", "--checkpoint_iteration=1",
                            "--log_iteration=100", *NETWORK_FLAGS)
    rng = random.Random(20261204)
    resumed_from = None
    kills = []
    for attempt in range(3):
        log_path = tmp_path / f"killed{attempt}.log"
        process = start_train(command, log_path)
        try:
            wait_for(lambda: (newest_checkpoint(output_dir) or 0) > (resumed_from or 0),
                     process, description="a new checkpoint")
            delay = rng.uniform(0.0, 0.5)
            time.sleep(delay)
            process.kill()
            process.wait(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
        log = log_path.read_text()
        if resumed_from is not None:
            assert f"ckpt-{resumed_from} at step {resumed_from}" in log, log[-3000:]
        resumed_from = newest_checkpoint(output_dir)
        assert_checkpoint_complete(output_dir, resumed_from)
        kills.append((round(delay, 3), resumed_from, len(train_rows(output_dir))))
    print(f"kills (delay after the new checkpoint s, newest checkpoint, rows): {kills}")

    # Cut the newest named checkpoint's data file short, so the run falls back to the one before.
    data_file = output_dir / "checkpoints" / f"ckpt-{resumed_from}.data-00000-of-00001"
    os.truncate(data_file, data_file.stat().st_size // 2)
    final = subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"ignoring incomplete checkpoint {data_file.parent}/ckpt-{resumed_from} (" \
        in final.stderr
    assert f"ckpt-{resumed_from - 1} at step {resumed_from - 1}" in final.stderr
    assert_rows_once(output_dir, iterations)
    assert newest_checkpoint(output_dir) == iterations
    assert_checkpoint_complete(output_dir, iterations)


# ---- non-finite loss --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nan_file(tmp_path_factory):
    """Seven events, of which events 2 to 5 have a NaN charge.

    Read in file order by minibatches of two, they reach steps 2 and 3 (positions 2 to 5) and
    steps 5, 6 and 7 (positions 9 to 12).
    """
    folder = tmp_path_factory.mktemp("nan")
    path, _, _ = factory.make_valid_file(folder / "nan.h5", num_events=EVENTS, height=HEIGHT,
                                         width=WIDTH, seed=3)
    return poison_charge(path, entries=(2, 3, 4, 5))


def test_nonfinite_loss_stops_without_saving(nan_file, tmp_path):
    output_dir = tmp_path / "run"
    result = run_train(f"--data_file={nan_file}", f"--output_dir={output_dir}",
                       "--shuffle=false", "--iterations=6", "--checkpoint_iteration=1",
                       *NETWORK_FLAGS)
    assert result.returncode == 1, result.stderr[-3000:]
    assert re.search(r"error: non-finite values at step 2 \(loss nan, gradient norm nan\); "
                     r"stopped without saving this step, so the newest checkpoint \S+ckpt-1 ",
                     result.stderr), result.stderr[-3000:]
    assert newest_checkpoint(output_dir) == 1
    assert not list((output_dir / "checkpoints").glob("ckpt-2*"))
    assert_rows_once(output_dir, 1)
    assert checkpoint_values_finite(output_dir / "checkpoints" / "ckpt-1")


def test_skip_nonfinite_counts_then_gives_up(nan_file, tmp_path):
    output_dir = tmp_path / "run"
    result = run_train(f"--data_file={nan_file}", f"--output_dir={output_dir}",
                       "--shuffle=false", "--iterations=20", "--checkpoint_iteration=1",
                       "--skip_nonfinite_steps", "--max_consecutive_skips=3", *NETWORK_FLAGS)
    assert result.returncode == 1, result.stderr[-3000:]
    skipped_logged = [int(step) for step in re.findall(
        r"step (\d+)  non-finite \(loss nan, gradient norm nan\): update skipped",
        result.stderr)]
    assert skipped_logged == [2, 3, 5, 6, 7]
    assert re.search(r"error: gave up at step 7 after 3 non-finite steps in a row "
                     r"\(--max_consecutive_skips=3, 5 in this run\)", result.stderr)

    rows = train_rows(output_dir)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert [row["step"] for row in rows if row["update_skipped"] == 1.0] == [2, 3, 5, 6]
    assert all(row["loss"] is None for row in rows if row["update_skipped"])
    assert all(row["accuracy"] is None for row in rows if row["update_skipped"])
    assert rows[3]["loss"] > 0
    # Skipped steps leave the weights, the Adam slots and the batch-norm statistics finite.
    assert newest_checkpoint(output_dir) == 6
    assert checkpoint_values_finite(output_dir / "checkpoints" / "ckpt-6")


# ---- output folder: read-only, too small, filling up ------------------------------------------

def in_tmpfs(mount_dir, options, shell_command):
    """Return a command running ``shell_command`` with a tmpfs mounted on ``mount_dir``."""
    mount_dir.mkdir(parents=True, exist_ok=True)
    script = f"mount -t tmpfs -o {options} tmpfs {shlex.quote(str(mount_dir))} && {shell_command}"
    return ["unshare", "-rm", "sh", "-c", script]


def test_read_only_output_exits_at_start(event_file, tmp_path):
    mount_dir = tmp_path / "mnt"
    command = shlex.join(train_command(f"--data_file={event_file}",
                                       f"--output_dir={mount_dir / 'run'}", *NETWORK_FLAGS))
    result = subprocess.run(in_tmpfs(mount_dir, "ro,size=1m", f"exec {command}"), cwd=REPO_DIR,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1, result.stderr[-3000:]
    assert (f"error: output directory {mount_dir / 'run'} is not writable (Read-only file "
            f"system); choose another --output_dir") in result.stderr
    assert "step 1" not in result.stderr


def test_small_output_folder_exits_at_start(event_file, tmp_path):
    mount_dir = tmp_path / "mnt"
    command = shlex.join(train_command(f"--data_file={event_file}",
                                       f"--output_dir={mount_dir / 'run'}", *NETWORK_FLAGS))
    result = subprocess.run(in_tmpfs(mount_dir, "size=300k", f"exec {command}"), cwd=REPO_DIR,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1, result.stderr[-3000:]
    assert re.search(rf"error: not enough space: output directory {re.escape(str(mount_dir))}"
                     r"/run has 3\d\d kB free, but the run needs about 16\.\d MB \(4 checkpoints",
                     result.stderr), result.stderr[-3000:]
    assert "step 1" not in result.stderr


def fill_up(path, leave):
    """Write zeros to ``path`` until the disk is full, then give back ``leave`` bytes.

    A few kilobytes let the run append its metrics row but not write its next checkpoint.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError, match="No space left"):
            while True:
                os.write(descriptor, b"\0" * 2**16)
    finally:
        os.close(descriptor)
    os.truncate(path, max(os.path.getsize(path) - leave, 0))


def test_disk_full_keeps_earlier_checkpoints(event_file, tmp_path):
    mount_dir, copy_dir = tmp_path / "mnt", tmp_path / "copy"
    run_dir = mount_dir / "run"
    command = shlex.join(train_command(f"--data_file={event_file}", f"--output_dir={run_dir}",
                                       "--iterations=1000", "--checkpoint_iteration=1",
                                       "--log_iteration=100", *NETWORK_FLAGS))
    # The run folder lives in the namespace only: copy it out once training has stopped.
    script = (f"{command}; status=$?; cp -a {shlex.quote(str(run_dir))} "
              f"{shlex.quote(str(copy_dir))}; exit $status")
    process = start_train(in_tmpfs(mount_dir, "size=20m", script), tmp_path / "run.log")
    try:
        # The namespace's files, seen from outside through its process.
        inside = Path(f"/proc/{process.pid}/root") / run_dir.relative_to("/")
        wait_for(lambda: (newest_checkpoint(inside) or 0) >= 2, process,
                 description="the second checkpoint")
        fill_up(inside.parent / "filler", leave=12_000)
        status = process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    log = (tmp_path / "run.log").read_text()
    assert status == 1, log[-3000:]
    found = re.search(r"error: disk full: cannot write (checkpoint|metrics to|TensorBoard "
                      r"summaries in) (\S+) \(No space left on device", log)
    assert found, log[-3000:]
    assert found.group(2).startswith(str(run_dir))
    print(f"disk full: {found.group(0)}; left in checkpoints/: "
          f"{sorted(path.name for path in (copy_dir / 'checkpoints').iterdir())}")

    newest = newest_checkpoint(copy_dir)
    assert newest >= 2
    assert_checkpoint_complete(copy_dir, newest)
    # Nothing is left of the checkpoint whose write failed.
    kept_files = {f"ckpt-{step}.{suffix}" for step in range(max(newest - 2, 1), newest + 1)
                  for suffix in ("index", "data-00000-of-00001")}
    assert {path.name for path in (copy_dir / "checkpoints").iterdir()} == \
        {"checkpoint"} | kept_files
    assert_rows_once(copy_dir, len(train_rows(copy_dir)))
    assert restored_step(copy_dir / "checkpoints" / f"ckpt-{newest}") == newest


# ---- notebooks: no absl flags ------------------------------------------------------------------

def test_notebook_leaves_absl_flags_alone(event_file, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        from absl import flags
        import cosmictagger_tf
        import cosmictagger_tf.model
        import cosmictagger_tf.training.loop
        from cosmictagger_tf.config import DataConfig, RunConfig, network_preset
        from cosmictagger_tf.distributed.runtime import start_runtime
        from cosmictagger_tf.model import build_uresnet, count_parameters

        registered = [name for name in ("iterations", "output_dir", "data_file", "preset")
                      if name in flags.FLAGS]
        network = network_preset("uresnet", **{NETWORK!r})
        model = build_uresnet(network, ({HEIGHT}, {WIDTH}), "float32")
        config = RunConfig(network=network, output_dir={str(tmp_path / 'run')!r},
                           data=DataConfig(data_files=({str(event_file)!r},), downsample=0),
                           iterations=3, checkpoint_iteration=2)
        summary = cosmictagger_tf.training.loop.run_training(config, start_runtime())
        print(json.dumps({{"registered": registered, "parsed": flags.FLAGS.is_parsed(),
                          "run_flags": "cosmictagger_tf.run_flags" in sys.modules,
                          "parameters": count_parameters(model)[0],
                          "last_step": summary.last_step}}))
        """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_DIR, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["registered"] == []
    assert report["parsed"] is False
    assert report["run_flags"] is False
    assert report["parameters"] > 0
    assert report["last_step"] == 3
    assert_rows_once(tmp_path / "run", 3)
    assert newest_checkpoint(tmp_path / "run") == 3


# ---- two ranks: one signalled rank stops both at the same step ---------------------------------

@pytest.mark.skipif(not HOROVODRUN.exists(), reason=f"horovodrun not found beside "
                    f"{sys.executable}; install Horovod with scripts/install.sh")
def test_sigterm_one_rank_stops_both(event_file, tmp_path):
    output_dir = tmp_path / "run"
    launcher = [str(HOROVODRUN), "-np", "2", "--gloo", "-H", "localhost:2",
                *train_command(f"--data_file={event_file}", f"--output_dir={output_dir}",
                               "--iterations=1000", "--log_iteration=1", *NETWORK_FLAGS)]
    process = start_train(launcher, tmp_path / "run.log")
    try:
        wait_for(lambda: len(train_rows(output_dir)) >= 2, process,
                 description="two metrics rows")
        rank_one = wait_for(lambda: find_rank_process(1, str(output_dir)), process,
                            description="the process of rank 1")
        os.kill(rank_one, signal.SIGTERM)
        status = process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    log = (tmp_path / "run.log").read_text()
    assert status != 0
    found = re.search(r"\[0\]<stderr>:.*stopped by SIGTERM at step (\d+); checkpoint saved", log)
    assert found, log[-3000:]
    stopped = int(found.group(1))
    assert newest_checkpoint(output_dir) == stopped
    assert_rows_once(output_dir, stopped)
    assert f"INFO step {stopped + 1} " not in log
    # Both ranks exit with 143 after rank 0 has saved, and horovodrun reports whichever exits
    # first, in one of two formats.
    assert re.search(r"Process [01] exit with status code 143\.|Exit code: 143", log), log[-3000:]
