"""Tests that damaged larcv3 files fail at open or read time with a message naming the damage.

Every failed open also checks that the reader left the damaged file as it was.
"""
from pathlib import Path

import h5py
import numpy as np
import pytest

import larcv3_factory as factory
from cosmictagger_tf.data import read_events
from cosmictagger_tf.data.larcv3_reader import Larcv3File, Larcv3FormatError
from cosmictagger_tf.data.pipeline import EventSource


@pytest.fixture
def valid_file(tmp_path):
    path, _, _ = factory.make_valid_file(tmp_path / "events.h5", num_events=4)
    return path


def open_error(path, **kwargs):
    """Open a damaged file; return the error message after checking the file is unchanged."""
    content = Path(path).read_bytes()
    with pytest.raises(Larcv3FormatError) as error:
        Larcv3File(path, **kwargs)
    assert Path(path).read_bytes() == content
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_missing_producer_lists_available(valid_file):
    factory.drop_producer(valid_file, "sbnd_cosmicseg")
    message = open_error(valid_file)
    assert "'sbnd_cosmicseg' not found" in message
    assert "sbndwire" in message
    assert str(valid_file) in message


def test_unknown_image_producer_named(valid_file):
    message = open_error(valid_file, image_producer="nosuchwire")
    assert "'nosuchwire'" in message
    assert "sbnd_cosmicseg, sbndwire" in message


def test_truncated_extents_rejected(valid_file):
    factory.truncate_extents(valid_file, "sbndwire")
    message = open_error(valid_file)
    assert "3 extents rows for 4 entries" in message


def test_voxel_range_past_table(valid_file):
    factory.point_voxels_outside(valid_file, "sbndwire", entry=2, plane=1)
    message = open_error(valid_file)
    assert "entry 2, plane 1" in message
    assert "past the end of the voxel table" in message
    assert "copy it again" in message


def test_projection_rows_past_voxel_extents(valid_file):
    factory.point_projections_outside(valid_file, "sbnd_cosmicseg", entry=1)
    message = open_error(valid_file)
    assert "entry 1: producer 'sbnd_cosmicseg' projection rows" in message
    assert "past the end of voxel_extents" in message


def test_projection_rows_past_image_meta(valid_file):
    factory.shorten_image_meta(valid_file, "sbndwire")
    message = open_error(valid_file)
    assert "entry 3: producer 'sbndwire' projection rows 9..11" in message
    assert "past the end of image_meta (11 rows" in message


def test_label_voxel_count_differs(valid_file):
    factory.drop_last_voxel(valid_file, "sbnd_cosmicseg", entry=2, plane=0)
    message = open_error(valid_file)
    assert "entry 2, plane 0" in message
    assert "label producer 'sbnd_cosmicseg' has" in message
    assert "labels must sit on the same voxels as the image" in message


@pytest.mark.parametrize("dataset", ["voxel_extents", "voxels"])
def test_missing_dataset_rejected(valid_file, dataset):
    factory.drop_dataset(valid_file, "sbnd_cosmicseg", dataset)
    message = open_error(valid_file)
    assert f"producer 'sbnd_cosmicseg' is missing its {dataset!r} dataset" in message
    assert "copy it again" in message


def test_missing_event_ids_rejected(valid_file):
    factory.drop_event_ids(valid_file)
    message = open_error(valid_file)
    assert "missing dataset /Events/event_id" in message
    assert "not a larcv3 file" in message


def test_voxel_id_outside_image_at_open(valid_file):
    factory.put_id_outside_image(valid_file, "sbndwire", entry=1, plane=2)
    message = open_error(valid_file)
    assert "entry 1, plane 2" in message
    assert "outside the image" in message


def test_voxel_id_outside_image_at_read(valid_file):
    factory.put_id_outside_image(valid_file, "sbndwire", entry=3, plane=0)
    larcv_file = Larcv3File(valid_file, id_scan_limit=0)
    larcv_file.read_entry_sparse(2)
    with pytest.raises(Larcv3FormatError, match="entry 3, plane 0.*outside the image"):
        larcv_file.read_entry_sparse(3)


def test_label_ids_differ_at_open(valid_file):
    factory.mismatch_label_ids(valid_file, entry=1, plane=2)
    message = open_error(valid_file)
    assert "entry 1, plane 2: label voxel ids differ" in message
    assert "replace it" in message


def test_label_ids_other_storage_order(tmp_path):
    path, images, labels = factory.make_valid_file(tmp_path / "reordered.h5")
    factory.reverse_voxel_order(path, "sbnd_cosmicseg")
    read_images, read_labels = read_events(path)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)

    factory.mismatch_label_ids(path, entry=2, plane=1)
    message = open_error(path)
    assert "entry 2, plane 1: label voxel ids differ" in message


def test_label_ids_differ_from_image_at_read(valid_file):
    factory.mismatch_label_ids(valid_file, entry=1, plane=0)
    larcv_file = Larcv3File(valid_file, id_scan_limit=0)
    larcv_file.read_entry_sparse(0)
    with pytest.raises(Larcv3FormatError, match="entry 1, plane 0: label voxel ids differ"):
        larcv_file.read_entry_sparse(1)


@pytest.mark.parametrize("dataset", ["extents", "voxel_extents", "voxels", "image_meta"])
def test_wrong_compound_type_rejected(valid_file, dataset):
    factory.wrong_compound_type(valid_file, "sbndwire", dataset)
    message = open_error(valid_file)
    assert f"dataset {dataset!r}" in message
    assert "without the field" in message


def test_missing_plane_rejected(valid_file):
    factory.drop_plane(valid_file, "sbnd_cosmicseg", entry=2)
    message = open_error(valid_file)
    assert "entry 2" in message
    assert "2 projections, expected 3" in message


def test_extra_plane_rejected(valid_file):
    factory.add_plane(valid_file, "sbndwire", entry=0)
    message = open_error(valid_file)
    assert "entry 0: producer 'sbndwire' has 4 projections, expected 3" in message
    assert "use files with 3 planes per entry" in message


def test_not_hdf5_rejected(tmp_path):
    path = factory.write_not_hdf5(tmp_path / "notes.h5")
    message = open_error(path)
    assert "cannot be opened as HDF5" in message
    assert str(path) in message


def test_truncated_file_rejected(valid_file, tmp_path):
    path = factory.write_truncated_file(valid_file, tmp_path / "truncated.h5")
    message = open_error(path)
    assert str(path) in message
    assert "truncated" in message


def test_missing_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        Larcv3File(tmp_path / "absent.h5")


def test_planes_disagree_on_size(valid_file):
    with h5py.File(valid_file, "r+") as handle:
        meta = handle["Data/sparse2d_sbndwire_group/image_meta"]
        row = meta[4]
        row["number_of_voxels"] = (64, 16)
        meta[4] = row
    message = open_error(valid_file)
    assert "entry 1, plane 1: planes disagree on the image size" in message
    assert "number_of_voxels (64, 16), the other planes (32, 16)" in message


def set_first_label_value(path, value):
    with h5py.File(path, "r+") as handle:
        voxels = handle["Data/sparse2d_sbnd_cosmicseg_group/voxels"]
        row = voxels[0]
        row["value"] = value
        voxels[0] = row


def test_invalid_label_value_rejected_at_open(valid_file):
    set_first_label_value(valid_file, 7.0)
    message = open_error(valid_file)
    assert "entry 0, plane 0" in message
    assert "label value 7.0" in message
    assert "Check --label_producer" in message


def test_invalid_label_value_rejected_at_read(valid_file):
    set_first_label_value(valid_file, 7.0)
    larcv_file = Larcv3File(valid_file, id_scan_limit=0)
    with pytest.raises(Larcv3FormatError, match="entry 0, plane 0.*label value 7.0"):
        larcv_file.read_entry_sparse(0)


def test_several_files_one_bad_named(tmp_path):
    good, _, _ = factory.make_valid_file(tmp_path / "good.h5")
    bad, _, _ = factory.make_valid_file(tmp_path / "bad.h5", seed=1)
    factory.truncate_extents(bad, "sbnd_cosmicseg")
    with pytest.raises(Larcv3FormatError, match="bad.h5"):
        EventSource([str(good), str(bad)], "sbndwire", "sbnd_cosmicseg")


def test_empty_events_read_without_nan(tmp_path):
    path, _, _ = factory.make_valid_file(tmp_path / "quiet.h5", empty_events=[0, 1, 2, 3])
    images, labels = read_events(path, downsample=1)
    assert np.isfinite(images).all()
    assert float(images.sum()) == 0.0
    assert int(labels.max()) == 0


def test_empty_plane_reads_as_background(tmp_path):
    path, expected_images, expected_labels = factory.make_valid_file(
        tmp_path / "one_quiet_plane.h5", empty_planes=[(1, 2)])
    images, labels = read_events(path)
    assert float(images[1, ..., 2].sum()) == 0.0
    assert int(labels[1, ..., 2].max()) == 0
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
