"""Tests of the larcv3 reader and densification against an independent decode of real events."""
import h5py
import numpy as np
import pytest

import larcv3_factory as factory
from cosmictagger_tf.data import read_events
from cosmictagger_tf.data.dense import densify_numpy, densify_tf, downsample_dense
from cosmictagger_tf.data.larcv3_reader import Larcv3File, expand_data_files

HEIGHT, WIDTH = 1280, 2048


def decode_sample_independently(path, producer):
    """Decode every entry of a producer into dense [n, 1280, 2048, 3] with a plain loop."""
    with h5py.File(path, "r") as handle:
        group = handle[f"Data/sparse2d_{producer}_group"]
        extents, voxel_extents = group["extents"][:], group["voxel_extents"][:]
        voxels = group["voxels"][:]
    dense = np.zeros((len(extents), HEIGHT, WIDTH, 3), np.float32)
    for entry, (first_row, num_planes) in enumerate(zip(extents["first"], extents["N"])):
        for plane in range(num_planes):
            row = voxel_extents[int(first_row) + plane]
            first, count = int(row["first"]), int(row["N"])
            rows = voxels[first:first + count]
            wire, tick = np.divmod(rows["id"].astype(np.int64), HEIGHT)
            dense[entry, tick, wire, plane] = rows["value"]
    return dense


@pytest.fixture(scope="module")
def sample_dense(request):
    sample = request.getfixturevalue("sample_path")
    images = decode_sample_independently(sample, "sbndwire")
    labels = decode_sample_independently(sample, "sbnd_cosmicseg").astype(np.int32)
    return sample, images, labels


def test_read_events_matches_decode_images(sample_dense):
    sample, expected_images, _ = sample_dense
    images, _ = read_events(sample)
    assert images.shape == (5, HEIGHT, WIDTH, 3)
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images, expected_images)


def test_read_events_matches_decode_labels(sample_dense):
    sample, _, expected_labels = sample_dense
    _, labels = read_events(sample)
    assert np.issubdtype(labels.dtype, np.integer)
    np.testing.assert_array_equal(labels, expected_labels)


def test_read_events_sample_counts(sample_dense):
    sample, _, _ = sample_dense
    images, labels = read_events(sample)
    voxels_per_plane = (images > 0).sum(axis=(1, 2))
    assert voxels_per_plane[0].tolist() == [23223, 23171, 10084]
    assert voxels_per_plane[4].tolist() == [15775, 16056, 3066]
    assert int((labels == 1).sum()) == 103664
    assert int((labels == 2).sum()) == 24001


def test_read_events_entry_subset(sample_dense):
    sample, expected_images, expected_labels = sample_dense
    images, labels = read_events(sample, entries=[3, 1])
    np.testing.assert_array_equal(images, expected_images[[3, 1]])
    np.testing.assert_array_equal(labels, expected_labels[[3, 1]])


@pytest.mark.parametrize("downsample", [1, 2])
def test_read_events_downsampled(sample_dense, downsample):
    sample, expected_images, expected_labels = sample_dense
    images, labels = read_events(sample, entries=[0, 4], downsample=downsample)
    block_images, block_labels = downsample_dense(expected_images[[0, 4]],
                                                  expected_labels[[0, 4]], downsample)
    scale = 2 ** downsample
    assert images.shape == (2, HEIGHT // scale, WIDTH // scale, 3)
    np.testing.assert_allclose(images, block_images, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(labels, block_labels)


def test_read_events_without_labels(sample_path):
    images, labels = read_events(sample_path, entries=[2], label_producer=None)
    assert images.shape == (1, HEIGHT, WIDTH, 3)
    assert labels is None


def test_downsample_block_mean_and_max():
    images = np.zeros((1, 4, 4, 3), np.float32)
    labels = np.zeros((1, 4, 4, 3), np.int32)
    images[0, 0, 0, 0], images[0, 1, 1, 0] = 8.0, 4.0
    labels[0, 0, 0, 1], labels[0, 1, 0, 1] = 1, 2
    labels[0, 3, 3, 2] = 1
    small_images, small_labels = downsample_dense(images, labels, 1)
    assert small_images.shape == (1, 2, 2, 3)
    assert small_images[0, 0, 0, 0] == pytest.approx(3.0)
    assert small_images[0, 1, 1, 0] == 0.0
    assert small_labels[0, 0, 0, 1] == 2
    assert small_labels[0, 1, 1, 2] == 1
    assert small_labels[0, 0, 0, 0] == 0


@pytest.mark.parametrize("downsample", [0, 1, 3])
def test_densify_tf_matches_numpy(sample_path, downsample):
    larcv_file = Larcv3File(sample_path)
    sparse = larcv_file.read_entry_sparse(2)
    expected_image, expected_labels = densify_numpy(*sparse, (WIDTH, HEIGHT), 3, downsample)
    image, labels = densify_tf(*sparse, (WIDTH, HEIGHT), 3, downsample)
    np.testing.assert_allclose(image.numpy(), expected_image, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(labels.numpy(), expected_labels)


def test_reader_empty_event_all_background(tmp_path):
    path, _, _ = factory.make_valid_file(tmp_path / "empty.h5", num_events=3, empty_events=[1])
    images, labels = read_events(path)
    assert images.shape == (3, 16, 32, 3)
    assert float(np.abs(images[1]).sum()) == 0.0
    assert int(labels[1].max()) == 0
    assert np.isfinite(images).all()


def test_reader_small_file_round_trip(tmp_path):
    path, expected_images, expected_labels = factory.make_valid_file(tmp_path / "small.h5")
    images, labels = read_events(path)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_expand_data_files_comma_and_glob(tmp_path):
    for name in ("b.h5", "a.h5", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    files = expand_data_files(f"{tmp_path}/*.h5,{tmp_path}/c.txt")
    assert [p.split("/")[-1] for p in files] == ["a.h5", "b.h5", "c.txt"]


def test_expand_data_files_missing_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        expand_data_files(str(tmp_path / "nothing.h5"))
