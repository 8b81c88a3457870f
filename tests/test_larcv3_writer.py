"""Tests of the larcv3 writer: layout of the real sample, dense round trip, atomic output, and the
damaged files of ``larcv3_factory``."""
from pathlib import Path

import h5py
import numpy as np
import pytest

import larcv3_factory as factory
from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.data.larcv3_writer import Larcv3Writer, write_dense_events

from conftest import SAMPLE_PATH
PRODUCERS = ("sbndwire", "sbnd_cosmicseg")
SPARSE2D_DATASETS = ("extents", "voxel_extents", "image_meta", "voxels")
HEIGHT, WIDTH = 16, 32


def group_path(producer):
    return f"Data/sparse2d_{producer}_group"


def decode_sparse2d(group):
    """Return ``[entry][plane] -> (ids, values)`` of a sparse2d group, read with plain numpy."""
    extents = group["extents"][:]
    voxel_extents = group["voxel_extents"][:]
    voxels = group["voxels"][:]
    entries = []
    for first_row, num_planes in zip(extents["first"], extents["N"]):
        planes = []
        for row in voxel_extents[first_row:first_row + num_planes]:
            plane_voxels = voxels[row["first"]:row["first"] + row["N"]]
            planes.append((plane_voxels["id"], plane_voxels["value"]))
        entries.append(planes)
    return entries


def decode_dense(path, producer, height, width):
    """Return the dense ``[entries, height, width, planes]`` array of a producer."""
    with h5py.File(path, "r") as file:
        entries = decode_sparse2d(file[group_path(producer)])
    dense = np.zeros((len(entries), height, width, fmt.NUM_PLANES), np.float32)
    for entry, planes in enumerate(entries):
        for plane, (ids, values) in enumerate(planes):
            dense[entry, ids % height, ids // height, plane] = values
    return dense


def tiny_event(ids_by_plane=((0, 5), (1,), ())):
    """Return one sparse2d event of both producers with the given ids per plane."""
    planes = [(np.array(ids, np.uint64), np.ones(len(ids), np.float32)) for ids in ids_by_plane]
    return {producer: planes for producer in PRODUCERS}


def write_tiny_file(path, num_events=1, **writer_options):
    with Larcv3Writer(path, number_of_voxels=(WIDTH, HEIGHT), **writer_options) as writer:
        for _ in range(num_events):
            writer.write_event(tiny_event())
    return path


# Round trip of the real sample.

@pytest.fixture(scope="module")
def sample_copy(tmp_path_factory):
    """Return ``(sample file, copy file)``, the copy written by Larcv3Writer from a plain decode."""
    if not SAMPLE_PATH.exists():
        pytest.skip(f"real larcv3 sample not found at {SAMPLE_PATH}; get cosmic_tagging_light.h5 "
                    "from the example_data folder of the CosmicTagger repository")

    with h5py.File(SAMPLE_PATH, "r") as sample:
        events = {producer: decode_sparse2d(sample[group_path(producer)]) for producer in PRODUCERS}
        event_ids = sample["Events/event_id"][:]

    copy_path = tmp_path_factory.mktemp("sample") / "copy.h5"
    with Larcv3Writer(copy_path, PRODUCERS, buffer_voxels=100_000) as writer:
        for entry, event_id in enumerate(event_ids):
            writer.write_event({producer: events[producer][entry] for producer in PRODUCERS},
                               tuple(event_id))

    with h5py.File(SAMPLE_PATH, "r") as sample, h5py.File(copy_path, "r") as copy:
        yield sample, copy


DATASETS = [(producer, name) for producer in PRODUCERS for name in SPARSE2D_DATASETS]


@pytest.mark.parametrize("producer", PRODUCERS)
def test_sample_copy_dataset_names(sample_copy, producer):
    sample, copy = sample_copy
    assert sorted(copy[group_path(producer)]) == sorted(sample[group_path(producer)])


@pytest.mark.parametrize("producer,name", DATASETS)
def test_sample_copy_dtype(sample_copy, producer, name):
    sample, copy = sample_copy
    expected = sample[group_path(producer)][name].dtype
    written = copy[group_path(producer)][name].dtype
    assert written == expected
    assert written.itemsize == expected.itemsize
    assert written.fields == expected.fields


@pytest.mark.parametrize("producer,name", DATASETS)
def test_sample_copy_storage(sample_copy, producer, name):
    sample, copy = sample_copy
    expected = sample[group_path(producer)][name]
    written = copy[group_path(producer)][name]
    assert written.chunks == expected.chunks
    assert written.compression == "gzip"
    assert written.compression_opts == 1
    assert written.maxshape == (None,)
    assert written.shape == expected.shape


@pytest.mark.parametrize("producer,name", DATASETS)
def test_sample_copy_content(sample_copy, producer, name):
    # Field by field, because the padding bytes of the sample contain arbitrary values.
    sample, copy = sample_copy
    expected = sample[group_path(producer)][name][:]
    written = copy[group_path(producer)][name][:]
    for field in expected.dtype.names:
        np.testing.assert_array_equal(written[field], expected[field], err_msg=field)


def test_sample_copy_event_ids(sample_copy):
    sample, copy = sample_copy
    expected = sample["Events/event_id"]
    written = copy["Events/event_id"]
    assert written.dtype == expected.dtype
    assert written.chunks == expected.chunks
    np.testing.assert_array_equal(written[:], expected[:])


# Writing dense events.

@pytest.fixture
def dense_file(tmp_path):
    return factory.make_valid_file(tmp_path / "dense.h5", height=HEIGHT, width=WIDTH,
                                   empty_events=(1,))


def test_dense_images_round_trip(dense_file):
    path, images, _ = dense_file
    np.testing.assert_array_equal(decode_dense(path, "sbndwire", HEIGHT, WIDTH), images)


def test_dense_labels_round_trip(dense_file):
    path, _, labels = dense_file
    np.testing.assert_array_equal(decode_dense(path, "sbnd_cosmicseg", HEIGHT, WIDTH), labels)


def test_dense_labels_share_image_ids(dense_file):
    path, _, _ = dense_file
    with h5py.File(path, "r") as file:
        image_voxels = file[group_path("sbndwire")]["voxels"][:]
        label_voxels = file[group_path("sbnd_cosmicseg")]["voxels"][:]
    np.testing.assert_array_equal(label_voxels["id"], image_voxels["id"])


def test_dense_ids_ascending_per_plane(dense_file):
    path, _, _ = dense_file
    with h5py.File(path, "r") as file:
        entries = decode_sparse2d(file[group_path("sbndwire")])
    for planes in entries:
        for ids, _ in planes:
            assert np.all(np.diff(ids.astype(np.int64)) > 0)


def test_dense_id_convention(tmp_path):
    images = np.zeros((1, HEIGHT, WIDTH, 3), np.float32)
    images[0, 3, 7, 1] = 42.0
    path = write_dense_events(tmp_path / "one.h5", images, images.astype(np.int32),
                              number_of_voxels=(WIDTH, HEIGHT))
    with h5py.File(path, "r") as file:
        voxels = file[group_path("sbndwire")]["voxels"][:]
    assert voxels["id"].tolist() == [7 * HEIGHT + 3]


def test_dense_empty_event_planes(dense_file):
    path, _, _ = dense_file
    with h5py.File(path, "r") as file:
        voxel_extents = file[group_path("sbndwire")]["voxel_extents"][3:6]
    assert voxel_extents["N"].tolist() == [0, 0, 0]


def test_dense_image_meta(dense_file):
    path, _, _ = dense_file
    with h5py.File(path, "r") as file:
        meta = file[group_path("sbnd_cosmicseg")]["image_meta"][:]
    assert meta.shape == (12,)
    assert meta["valid"].tolist() == [1] * 12
    assert meta["projection_id"].tolist() == [0, 1, 2] * 4
    assert meta["number_of_voxels"].tolist() == [[WIDTH, HEIGHT]] * 12
    assert meta["image_sizes"].tolist() == [[WIDTH, HEIGHT]] * 12
    assert meta["origin"].tolist() == [[0.0, 0.0]] * 12


def test_dense_extents_rows(dense_file):
    path, _, _ = dense_file
    with h5py.File(path, "r") as file:
        extents = file[group_path("sbndwire")]["extents"][:]
        num_event_ids = file["Events/event_id"].shape[0]
    assert extents["first"].tolist() == [0, 3, 6, 9]
    assert extents["N"].tolist() == [3, 3, 3, 3]
    assert num_event_ids == 4


def test_dense_default_size_rejects_tiny(tmp_path):
    images = np.zeros((1, HEIGHT, WIDTH, 3), np.float32)
    with pytest.raises(ValueError, match="number_of_voxels"):
        write_dense_events(tmp_path / "tiny.h5", images, images.astype(np.int32))


# Buffering and validation.

def test_writer_flushes_match_single_write(tmp_path):
    many = write_tiny_file(tmp_path / "many.h5", num_events=7, buffer_voxels=2)
    once = write_tiny_file(tmp_path / "once.h5", num_events=7)
    with h5py.File(many, "r") as many_file, h5py.File(once, "r") as once_file:
        for name in SPARSE2D_DATASETS:
            expected = once_file[group_path("sbndwire")][name][:]
            written = many_file[group_path("sbndwire")][name][:]
            np.testing.assert_array_equal(written, expected, err_msg=name)


def test_writer_voxel_extents_offsets(tmp_path):
    path = write_tiny_file(tmp_path / "two.h5", num_events=2, buffer_voxels=1)
    with h5py.File(path, "r") as file:
        voxel_extents = file[group_path("sbndwire")]["voxel_extents"][:]
    assert voxel_extents["first"].tolist() == [0, 2, 3, 3, 5, 6]
    assert voxel_extents["N"].tolist() == [2, 1, 0, 2, 1, 0]
    assert voxel_extents["ID"].tolist() == [0, 1, 2, 0, 1, 2]


def test_writer_event_id_stored(tmp_path):
    path = tmp_path / "ids.h5"
    with Larcv3Writer(path, number_of_voxels=(WIDTH, HEIGHT)) as writer:
        writer.write_event(tiny_event(), event_id=(7, 8, 9))
    with h5py.File(path, "r") as file:
        event_id = file["Events/event_id"][0]
    assert event_id.tolist() == (7, 8, 9)


def test_writer_id_out_of_range(tmp_path):
    event = tiny_event(((0,), (WIDTH * HEIGHT,), ()))
    with pytest.raises(ValueError, match=r"producer 'sbndwire', entry 0, plane 1"):
        with Larcv3Writer(tmp_path / "bad.h5", number_of_voxels=(WIDTH, HEIGHT)) as writer:
            writer.write_event(event)


def test_writer_negative_id(tmp_path):
    event = tiny_event(((0,), (), ()))
    event["sbnd_cosmicseg"] = [(np.array([-1]), np.ones(1, np.float32)), event["sbndwire"][1],
                               event["sbndwire"][2]]
    with pytest.raises(ValueError, match=r"producer 'sbnd_cosmicseg', entry 0, plane 0"):
        with Larcv3Writer(tmp_path / "bad.h5", number_of_voxels=(WIDTH, HEIGHT)) as writer:
            writer.write_event(event)


def test_writer_length_mismatch(tmp_path):
    event = tiny_event()
    event["sbndwire"] = [(np.array([1, 2], np.uint64), np.ones(3, np.float32))] * 3
    with pytest.raises(ValueError, match=r"producer 'sbndwire', entry 1, plane 0"):
        with Larcv3Writer(tmp_path / "bad.h5", number_of_voxels=(WIDTH, HEIGHT)) as writer:
            writer.write_event(tiny_event())
            writer.write_event(event)


def test_writer_wrong_plane_count(tmp_path):
    event = tiny_event(((0,), (1,)))
    with pytest.raises(ValueError, match=r"producer 'sbndwire', entry 0: expected 3 planes"):
        with Larcv3Writer(tmp_path / "bad.h5", number_of_voxels=(WIDTH, HEIGHT)) as writer:
            writer.write_event(event)


def test_writer_missing_producer(tmp_path):
    event = tiny_event()
    del event["sbnd_cosmicseg"]
    with pytest.raises(ValueError, match="missing \\['sbnd_cosmicseg'\\]"):
        with Larcv3Writer(tmp_path / "bad.h5", number_of_voxels=(WIDTH, HEIGHT)) as writer:
            writer.write_event(event)


def test_writer_rejected_entry_not_buffered(tmp_path):
    path = tmp_path / "kept.h5"
    with Larcv3Writer(path, number_of_voxels=(WIDTH, HEIGHT)) as writer:
        with pytest.raises(ValueError):
            writer.write_event(tiny_event(((0,), (1,), (WIDTH * HEIGHT,))))
        writer.write_event(tiny_event())
    with h5py.File(path, "r") as file:
        num_entries = file["Events/event_id"].shape[0]
        num_voxels = file[group_path("sbndwire")]["voxels"].shape[0]
    assert num_entries == 1
    assert num_voxels == 3


# Atomic output.

def test_atomic_exception_leaves_nothing(tmp_path):
    path = tmp_path / "crash.h5"
    with pytest.raises(RuntimeError, match="simulated crash"):
        with Larcv3Writer(path, number_of_voxels=(WIDTH, HEIGHT)) as writer:
            writer.write_event(tiny_event())
            raise RuntimeError("simulated crash")
    assert not path.exists()
    assert not writer.partial_path.exists()


def test_atomic_partial_until_close(tmp_path):
    path = tmp_path / "open.h5"
    with Larcv3Writer(path, number_of_voxels=(WIDTH, HEIGHT)) as writer:
        writer.write_event(tiny_event())
        assert not path.exists()
        assert writer.partial_path == tmp_path / "open.h5.partial"
        assert writer.partial_path.exists()
    assert path.exists()
    assert not writer.partial_path.exists()


def test_atomic_rejects_existing_path(tmp_path):
    path = tmp_path / "existing.h5"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        Larcv3Writer(path)
    assert path.read_bytes() == b"keep me"


def test_atomic_overwrite_replaces(tmp_path):
    path = tmp_path / "existing.h5"
    path.write_bytes(b"replace me")
    write_tiny_file(path, num_events=2, overwrite=True)
    with h5py.File(path, "r") as file:
        assert file["Events/event_id"].shape == (2,)


def test_dense_rejects_existing_path(tmp_path, dense_file):
    path, images, labels = dense_file
    with pytest.raises(FileExistsError):
        write_dense_events(path, images, labels, number_of_voxels=(WIDTH, HEIGHT))


# Damage functions of larcv3_factory.

@pytest.fixture
def valid_path(dense_file):
    return dense_file[0]


def test_damage_drop_producer(valid_path):
    factory.drop_producer(valid_path, "sbnd_cosmicseg")
    with h5py.File(valid_path, "r") as file:
        assert list(file["Data"]) == ["sparse2d_sbndwire_group"]


def test_damage_truncate_extents(valid_path):
    factory.truncate_extents(valid_path, "sbndwire")
    with h5py.File(valid_path, "r") as file:
        assert file[group_path("sbndwire")]["extents"].shape[0] == 3
        assert file["Events/event_id"].shape[0] == 4


def test_damage_voxels_outside(valid_path):
    factory.point_voxels_outside(valid_path, "sbndwire", entry=2, plane=1)
    with h5py.File(valid_path, "r") as file:
        group = file[group_path("sbndwire")]
        row = group["voxel_extents"][7]
        assert row["first"] + row["N"] == group["voxels"].shape[0] + 1


def test_damage_id_outside_image(valid_path):
    factory.put_id_outside_image(valid_path, "sbndwire", entry=3, plane=2)
    with h5py.File(valid_path, "r") as file:
        group = file[group_path("sbndwire")]
        first = group["voxel_extents"][11]["first"]
        assert group["voxels"][first]["id"] == WIDTH * HEIGHT


def test_damage_id_outside_empty_plane(valid_path):
    with pytest.raises(ValueError, match="has no voxels"):
        factory.put_id_outside_image(valid_path, "sbndwire", entry=1, plane=0)


def test_damage_mismatch_label_ids(valid_path):
    factory.mismatch_label_ids(valid_path, entry=0, plane=2)
    with h5py.File(valid_path, "r") as file:
        image_planes = decode_sparse2d(file[group_path("sbndwire")])
        label_planes = decode_sparse2d(file[group_path("sbnd_cosmicseg")])
    image_ids, label_ids = image_planes[0][2][0], label_planes[0][2][0]
    assert np.count_nonzero(image_ids != label_ids) == 1
    assert label_ids[0] not in image_ids
    np.testing.assert_array_equal(label_planes[0][1][0], image_planes[0][1][0])


def test_damage_wrong_compound_type(valid_path):
    factory.wrong_compound_type(valid_path, "sbndwire", "voxels")
    with h5py.File(valid_path, "r") as file:
        dtype = file[group_path("sbndwire")]["voxels"].dtype
    assert dtype != fmt.VOXEL_DTYPE
    assert dtype.names == ("id",)


def test_damage_drop_plane(valid_path):
    factory.drop_plane(valid_path, "sbnd_cosmicseg", entry=2)
    with h5py.File(valid_path, "r") as file:
        extents = file[group_path("sbnd_cosmicseg")]["extents"][:]
    assert extents["N"].tolist() == [3, 3, 2, 3]


def test_damage_truncated_file(valid_path, tmp_path):
    damaged = factory.write_truncated_file(valid_path, tmp_path / "half.h5")
    assert Path(damaged).stat().st_size == Path(valid_path).stat().st_size // 2
    with pytest.raises(OSError):
        h5py.File(damaged, "r")


def test_damage_not_hdf5(tmp_path):
    damaged = factory.write_not_hdf5(tmp_path / "text.h5")
    assert not h5py.is_hdf5(damaged)
