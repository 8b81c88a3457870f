"""Tests of the event simulation: calibration against real events, the file format and commands."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_DIR
from cosmictagger_tf.data import read_events
from cosmictagger_tf.data.larcv3_format import NEUTRINO
from cosmictagger_tf.data.larcv3_reader import Larcv3File
from cosmictagger_tf.simulation import (default_dataset, event_statistics, file_events,
                                        format_comparison, neutrino_tick_ranges, simulate_event,
                                        simulate_file)
from cosmictagger_tf.simulation.calibration import comparison_rows
from cosmictagger_tf.simulation.dataset import dataset_file_name

CALIBRATION_EVENTS = 50
CALIBRATION_SEED = 7
# Relative tolerances of simulated against real statistics.
VOXEL_TOLERANCE = 0.30
FRACTION_TOLERANCE = 0.30
MEDIAN_TOLERANCE = 0.30
WIRE_TOLERANCE = 5  # wires
TICK_TOLERANCE = 4  # ticks
OUTSIDE_FRACTION = 0.01


@pytest.fixture(scope="module")
def real_statistics(sample_path):
    return event_statistics(file_events(sample_path))


@pytest.fixture(scope="module")
def simulated_statistics():
    return event_statistics(simulate_event(CALIBRATION_SEED, entry)
                            for entry in range(CALIBRATION_EVENTS))


@pytest.fixture(scope="module")
def simulated_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("simulated") / "events.h5"
    simulate_file(path, 4, seed=11)
    return path


def relative_difference(real, simulated):
    return abs(simulated - real) / abs(real)


def test_statistics_agree_with_real_sample(real_statistics, simulated_statistics):
    table = format_comparison(real_statistics, simulated_statistics)
    for plane, (real, simulated) in enumerate(zip(real_statistics["planes"],
                                                  simulated_statistics["planes"])):
        assert relative_difference(real["voxels"], simulated["voxels"]) < VOXEL_TOLERANCE, \
            f"plane {plane} voxel count\n{table}"
        assert relative_difference(real["charge_median"], simulated["charge_median"]) \
            < MEDIAN_TOLERANCE, f"plane {plane} charge median\n{table}"
        assert abs(real["first_wire"] - simulated["first_wire"]) <= WIRE_TOLERANCE, table
        assert abs(real["last_wire"] - simulated["last_wire"]) <= WIRE_TOLERANCE, table

    for name, real, simulated in zip(("background", "cosmic", "neutrino"),
                                     real_statistics["fractions"],
                                     simulated_statistics["fractions"]):
        assert relative_difference(real, simulated) < FRACTION_TOLERANCE, \
            f"{name} fraction\n{table}"


def test_collection_plane_is_narrower_and_brighter(simulated_statistics):
    induction, collection = simulated_statistics["planes"][0], simulated_statistics["planes"][2]
    assert collection["last_wire"] - collection["first_wire"] < \
        induction["last_wire"] - induction["first_wire"]
    assert collection["charge_median"] > 3 * induction["charge_median"]


def test_comparison_rows_cover_every_plane(real_statistics, simulated_statistics):
    names = [name for name, _, _ in comparison_rows(real_statistics, simulated_statistics)]
    assert "plane 2 charge_median" in names
    assert "all planes neutrino fraction" in names


def assert_neutrino_ticks_agree(planes, where):
    """Nearly all neutrino voxels of each plane lie in the other planes' neutrino tick ranges.

    A lone voxel at the end of a range may be seen on one plane only, so one percent of the
    voxels may fall outside.
    """
    ranges = neutrino_tick_ranges(planes)
    assert all(ranges), f"{where}: a plane has no neutrino voxels"
    for plane, (ids, _, labels) in enumerate(planes):
        ticks = np.asarray(ids, np.int64)[labels == NEUTRINO] % 1280
        for other, (first, last) in enumerate(ranges):
            outside = (ticks < first - TICK_TOLERANCE) | (ticks > last + TICK_TOLERANCE)
            assert outside.mean() <= OUTSIDE_FRACTION, \
                f"{where}: plane {plane} ticks outside plane {other} range; ranges {ranges}"


def test_neutrino_spans_same_ticks_on_all_planes_simulated():
    checked = 0
    for entry in range(12):
        planes = simulate_event(5, entry)
        if all(neutrino_tick_ranges(planes)):
            assert_neutrino_ticks_agree(planes, f"simulated entry {entry}")
            checked += 1
    assert checked >= 5


def test_neutrino_spans_same_ticks_on_all_planes_real(sample_path):
    for entry, planes in enumerate(file_events(sample_path)):
        assert_neutrino_ticks_agree(planes, f"real entry {entry}")


def test_same_seed_gives_same_file(tmp_path):
    first, second = tmp_path / "first.h5", tmp_path / "second.h5"
    simulate_file(first, 2, seed=3)
    simulate_file(second, 2, seed=3)
    for (planes_a, planes_b) in zip(file_events(first), file_events(second)):
        for (ids_a, charge_a, labels_a), (ids_b, charge_b, labels_b) in zip(planes_a, planes_b):
            np.testing.assert_array_equal(ids_a, ids_b)
            np.testing.assert_array_equal(charge_a, charge_b)
            np.testing.assert_array_equal(labels_a, labels_b)

    other = simulate_event(4, 0)
    assert not np.array_equal(other[2][0], next(file_events(first))[2][0])


def test_simulated_file_passes_reader_checks(simulated_file):
    larcv_file = Larcv3File(simulated_file, id_scan_limit=10 ** 9)
    try:
        assert larcv_file.num_entries == 4
        assert larcv_file.image_shape == (1280, 2048)
        assert [tuple(row) for row in larcv_file.event_ids()] == [(1, 11, entry)
                                                                  for entry in range(4)]
    finally:
        larcv_file.close()

    images, labels = read_events(simulated_file, entries=[0, 1], downsample=1)
    assert images.shape == (2, 640, 1024, 3)
    assert labels.shape == images.shape
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert images.max() > 5.0


def test_stored_voxels_are_sorted_labelled_and_above_threshold(simulated_file):
    for planes in file_events(simulated_file):
        for ids, charge, labels in planes:
            assert np.all(np.diff(ids.astype(np.int64)) > 0)
            assert charge.min() >= 5.0
            assert set(np.unique(labels)) <= {0, 1, 2}


def test_default_dataset_is_simulated_once(tmp_path):
    train, validation = default_dataset(tmp_path, train_events=3, validation_events=2, seed=9)
    assert train.exists()
    assert validation.exists()
    assert "seed9" in train.name
    assert train.name.endswith("-3.h5")
    assert "-v" in train.name
    first_state = [(os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in (train,
                                                                                  validation)]

    again = default_dataset(tmp_path, train_events=3, validation_events=2, seed=9)
    assert again == (train, validation)
    assert [(os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in again] == first_state

    other_train, _ = default_dataset(tmp_path, train_events=4, validation_events=2, seed=9)
    assert other_train != train
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [train.name, validation.name, other_train.name])


def test_default_dataset_ignores_interrupted_file(tmp_path):
    train_name = dataset_file_name("train", 2, seed=5)
    (tmp_path / f".{train_name}.12345.tmp.partial").write_bytes(b"interrupted")

    train, _ = default_dataset(tmp_path, train_events=2, validation_events=1, seed=5)
    assert train.name == train_name
    assert Larcv3File(train).num_entries == 2


def run_simulate(*flags):
    command = [sys.executable, "-m", "cosmictagger_tf.simulate", *flags]
    return subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True, timeout=120)


def test_simulate_command_writes_events(tmp_path):
    output = tmp_path / "command.h5"
    result = run_simulate(f"--output={output}", "--events=3", "--seed=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "events/s" in result.stderr
    assert Larcv3File(output).num_entries == 3

    exists = run_simulate(f"--output={output}", "--events=3")
    assert exists.returncode == 2


@pytest.mark.parametrize("flag", ["--events=0", "--no_such_flag", "--cosmic_rate=-1",
                                  "--events=many"])
def test_simulate_command_rejects_bad_flags(tmp_path, flag):
    result = run_simulate(f"--output={tmp_path / 'bad.h5'}", flag)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) <= 2
    assert "error:" in result.stderr
    assert not (tmp_path / "bad.h5").exists()
