"""Tests of input robustness: empty events in training, bad files among several, and concurrent
readers of one file with and without HDF5 file locking.
"""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import larcv3_factory as factory
from conftest import REPO_DIR, small_network
from cosmictagger_tf.data.larcv3_reader import Larcv3File, Larcv3FormatError
from cosmictagger_tf.data.pipeline import EventSource, larcv3_dataset
from test_train_command import TINY_NETWORK, metrics_rows, run_train

TESTS_DIR = Path(__file__).resolve().parent
READERS = 3



# ---- empty events and planes ------------------------------------------------------------------

def test_empty_events_train_finite(tmp_path):
    import tensorflow as tf

    from cosmictagger_tf.config import OptimizerConfig
    from cosmictagger_tf.distributed.runtime import SingleProcessRuntime
    from cosmictagger_tf.model import build_uresnet
    from cosmictagger_tf.training.trainer import Trainer

    path, _, _ = factory.make_valid_file(tmp_path / "quiet.h5", num_events=4, height=32,
                                         width=64, empty_events=[0, 1], empty_planes=[(2, 1)])
    source = EventSource(str(path), "sbndwire", "sbnd_cosmicseg")
    minibatches = iter(larcv3_dataset(source, 2, downsample=0, seed=0, shuffle=False))
    tf.keras.utils.set_random_seed(0)
    model = build_uresnet(small_network(), (32, 64))
    trainer = Trainer(model, tf.keras.optimizers.Adam(1e-3), SingleProcessRuntime(),
                      OptimizerConfig(loss_balance_scheme="focal"))

    empty_images, empty_labels = next(minibatches)
    assert float(tf.reduce_sum(empty_images)) == 0.0
    assert int(tf.reduce_max(empty_labels)) == 0
    # The second minibatch has charge, but none on plane 1 of its first event.
    steps = [trainer.train_step(empty_images, empty_labels), trainer.train_step(*next(minibatches)),
             trainer.evaluate_step(empty_images, empty_labels)]
    for values in map(trainer.scalars_to_dict, steps):
        assert all(np.isfinite(value) for value in values.values()), values
        assert values["loss"] >= 0.0
        for name in ("cosmic_iou", "neutrino_iou", "miou", "non_bkg_accuracy"):
            assert 0.0 <= values[name] <= 1.0, (name, values[name])

    # No label is cosmic or neutrino, so every plane scores 1.0 on the charged-pixel accuracy.
    assert [values[f"plane{plane}/non_bkg_accuracy"] for plane in range(3)] == [1.0] * 3
    assert all(np.isfinite(weight.numpy()).all() for weight in model.weights)


# ---- several files, one bad -------------------------------------------------------------------

@pytest.fixture
def good_and_bad(tmp_path):
    """Two valid files of 4 and 3 events and one file whose label extents lack a row."""
    first, _, _ = factory.make_valid_file(tmp_path / "first.h5", num_events=4, height=32,
                                          width=64)
    bad, _, _ = factory.make_valid_file(tmp_path / "bad.h5", num_events=5, height=32,
                                        width=64, seed=1)
    factory.truncate_extents(bad, "sbnd_cosmicseg")
    second, _, _ = factory.make_valid_file(tmp_path / "second.h5", num_events=3, height=32,
                                           width=64, seed=2)
    return first, bad, second


def test_bad_file_stops_source_by_default(good_and_bad):
    first, bad, second = good_and_bad
    with pytest.raises(Larcv3FormatError) as error:
        EventSource([str(first), str(bad), str(second)], "sbndwire", "sbnd_cosmicseg")
    message = str(error.value)
    assert message.startswith(f"{bad}: producer 'sbnd_cosmicseg' has 4 extents rows for 5")
    assert message.endswith("To leave out every file that fails these checks and train on the "
                            "rest, add --skip_bad_files")


def test_bad_file_skipped_with_warning(good_and_bad, caplog):
    first, bad, second = good_and_bad
    source = EventSource([str(first), str(bad), str(second)], "sbndwire", "sbnd_cosmicseg",
                         skip_bad_files=True)
    assert [larcv_file.path for larcv_file in source.files] == [str(first), str(second)]
    assert source.num_events == 7
    assert [path for path, _ in source.skipped] == [str(bad)]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert f"skipping bad input file: {bad}: producer 'sbnd_cosmicseg'" in warnings[0]
    assert warnings[1] == f"skipped 1 of 3 input file(s) with 5 event(s): {bad}"


def test_unreadable_file_skipped_with_unknown_count(good_and_bad, tmp_path, caplog):
    first, _, _ = good_and_bad
    notes = factory.write_not_hdf5(tmp_path / "notes.h5")
    source = EventSource([str(notes), str(first)], "sbndwire", "sbnd_cosmicseg",
                         skip_bad_files=True)
    assert source.num_events == 4
    assert ("skipped 1 of 2 input file(s) with 0 event(s) plus those of 1 file(s) whose event "
            "count cannot be read") in caplog.text


def test_all_files_bad_still_fail(good_and_bad, tmp_path):
    _, bad, _ = good_and_bad
    notes = factory.write_not_hdf5(tmp_path / "notes.h5")
    with pytest.raises(Larcv3FormatError) as error:
        EventSource([str(bad), str(notes)], "sbndwire", "sbnd_cosmicseg", skip_bad_files=True)
    message = str(error.value)
    assert message.startswith(f"all 2 input file(s) fail the larcv3 checks ({bad}, {notes})")
    assert "fix or replace them" in message
    assert f"The first reason: {bad}: producer 'sbnd_cosmicseg'" in message


def test_train_command_skips_bad_file(good_and_bad, tmp_path):
    first, bad, second = good_and_bad
    output_dir = tmp_path / "run"
    # Repeated --data_file flags add up, and each value may hold a comma-separated list.
    common = [f"--data_file={first}", f"--data_file={bad},{second}", "--downsample=0",
              f"--output_dir={output_dir}", "--log_iteration=1", *TINY_NETWORK]

    skipped = run_train(*common, "--skip_bad_files", "--iterations=1")
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert f"skipping bad input file: {bad}: producer 'sbnd_cosmicseg' has 4 extents rows" \
        in skipped.stderr
    assert f"skipped 1 of 3 input file(s) with 5 event(s): {bad}" in skipped.stderr
    assert f"opened 2 file(s) with 7 events: {first} (4), {second} (3)" in skipped.stderr
    assert [row["step"] for row in metrics_rows(output_dir)] == [1]
    written = {path: path.read_bytes() for path in output_dir.rglob("*")
               if path.is_file() and "tensorboard" not in path.parts}

    # Without the flag the same files stop the resumed run at start-up, and the run folder
    # keeps everything the first run wrote.
    stopped = run_train(*common, "--iterations=2")
    assert stopped.returncode == 1
    last_line = stopped.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: {bad}: producer 'sbnd_cosmicseg' has 4 extents rows")
    assert last_line.endswith("add --skip_bad_files")
    assert "Traceback" not in stopped.stderr
    assert {path: path.read_bytes() for path in written} == written
    assert [row["step"] for row in metrics_rows(output_dir)] == [1]


def test_all_files_bad_exits_1(good_and_bad, tmp_path):
    _, bad, _ = good_and_bad
    notes = factory.write_not_hdf5(tmp_path / "notes.h5")
    output_dir = tmp_path / "nothing"
    result = run_train(f"--data_file={bad}", f"--data_file={notes}", "--skip_bad_files",
                       "--downsample=0", f"--output_dir={output_dir}", *TINY_NETWORK)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: all 2 input file(s) fail the larcv3 checks")
    assert f"skipping bad input file: {notes}: cannot be opened as HDF5" in result.stderr
    assert not output_dir.exists()


# ---- concurrent readers and file locking ------------------------------------------------------

# Reads every entry of a pickled Larcv3File in its own process and prints the digest. It prints
# "open" once its handle is open, then waits for a line on stdin, so the test can have every
# reader keep the file open at the same time before they read.
READER_SCRIPT = """
import pickle, sys
sys.path.insert(0, sys.argv[2])
from larcv3_factory import events_digest
larcv_file = pickle.loads(bytes.fromhex(sys.argv[1]))
larcv_file.read_entry_sparse(0)
print("open", flush=True)
sys.stdin.readline()
print(events_digest(larcv_file), flush=True)
"""

# Opens the file for writing with HDF5's default locking (an exclusive lock) and holds it until
# a line arrives on stdin.
LOCK_HOLDER_SCRIPT = """
import sys, h5py
handle = h5py.File(sys.argv[1], "r+", locking=True)
print("locked", flush=True)
sys.stdin.readline()
handle.close()
"""

# Opens the file read-only with HDF5 locking on, as h5py does by default.
LOCKING_READER_SCRIPT = """
import sys, h5py
try:
    h5py.File(sys.argv[1], "r", locking=True).close()
    print("opened")
except OSError as error:
    print(error)
"""


def environment_without_lock_setting(**settings):
    environment = {key: value for key, value in os.environ.items()
                   if key != "HDF5_USE_FILE_LOCKING"}
    environment.update(settings)
    return environment


def start_python(script, *args, environment=None):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=REPO_DIR,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=environment or environment_without_lock_setting())


def finish(process):
    output, errors = process.communicate("\n", timeout=60)
    assert process.returncode == 0, errors[-3000:]
    return output.split()


def test_processes_read_one_file_at_once(tmp_path):
    path, _, _ = factory.make_valid_file(tmp_path / "shared.h5", num_events=6)
    larcv_file = Larcv3File(path)
    expected = factory.events_digest(larcv_file)
    pickled = pickle.dumps(larcv_file).hex()

    readers = [start_python(READER_SCRIPT, pickled, TESTS_DIR) for _ in range(READERS)]
    # Every reader has its own handle open, and this process has its own, before any reads on.
    assert [reader.stdout.readline().strip() for reader in readers] == ["open"] * READERS
    assert factory.events_digest(larcv_file) == expected
    digests = [finish(reader)[-1] for reader in readers]
    assert digests == [expected] * READERS
    assert larcv_file._handle.mode == "r"
    larcv_file.close()


def test_reader_needs_no_file_lock(tmp_path):
    path, _, _ = factory.make_valid_file(tmp_path / "locked.h5", num_events=3)
    larcv_file = Larcv3File(path)
    expected = factory.events_digest(larcv_file)
    pickled = pickle.dumps(larcv_file).hex()
    # This process lets go of the file, so that the lock holder gets its lock whatever
    # HDF5_USE_FILE_LOCKING is set to here.
    larcv_file.close()
    holder = start_python(LOCK_HOLDER_SCRIPT, path)
    assert holder.stdout.readline().strip() == "locked"
    try:
        # A locking reader fails while the lock is held, as every reader does on a file system
        # without locking support. The reader of this package takes no lock, so it reads.
        locking = subprocess.run([sys.executable, "-c", LOCKING_READER_SCRIPT, str(path)],
                                 capture_output=True, text=True, timeout=60,
                                 env=environment_without_lock_setting())
        assert "unable to lock file" in locking.stdout

        reader = start_python(READER_SCRIPT, pickled, TESTS_DIR)
        assert finish(reader) == ["open", expected]

        forced = start_python(READER_SCRIPT, pickled, TESTS_DIR,
                              environment=environment_without_lock_setting(
                                  HDF5_USE_FILE_LOCKING="TRUE"))
        _, errors = forced.communicate("\n", timeout=60)
        assert forced.returncode == 1
        last_line = errors.strip().splitlines()[-1]
        assert last_line.startswith(f"OSError: {path}: HDF5 could not lock the file")
        assert "HDF5_USE_FILE_LOCKING=TRUE turns locking on" in last_line
        assert "set HDF5_USE_FILE_LOCKING=FALSE" in last_line
    finally:
        finish(holder)
    assert factory.events_digest(Larcv3File(path)) == expected
