"""Build small valid larcv3 files and damaged copies of them for the tests of the larcv3 reader.

``make_valid_file`` writes random dense events through ``write_dense_events``. Each damage
function opens a valid file in place with h5py and breaks exactly one property of the layout.
``events_digest`` fingerprints what a reader reads, to compare readers in several processes; this
module imports no TensorFlow, so such processes start fast.
"""
import hashlib
from pathlib import Path

import h5py
import numpy as np

from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.data.larcv3_writer import write_dense_events

# Fraction of pixels with charge in the random events.
OCCUPANCY = 0.3


def make_valid_file(path, num_events=4, height=16, width=32, seed=0, empty_events=(),
                    empty_planes=()):
    """Write random events of ``height x width`` pixels and 3 planes to ``path``.

    Entries listed in ``empty_events`` have no charge at all, and the ``(entry, plane)`` pairs in
    ``empty_planes`` have no charge on that plane. Labels are 1 or 2 on a random half of the
    charged pixels and 0 everywhere else. Returns ``(path, images, labels)``, the dense float32
    images and int32 labels of shape ``[num_events, height, width, 3]``.
    """
    rng = np.random.default_rng(seed)
    shape = (num_events, height, width, fmt.NUM_PLANES)

    charged = rng.random(shape) < OCCUPANCY
    charged[list(empty_events)] = False
    for entry, plane in empty_planes:
        charged[entry, ..., plane] = False
    images = np.where(charged, rng.uniform(5.0, 100.0, shape), 0.0).astype(np.float32)

    signal = charged & (rng.random(shape) < 0.5)
    labels = np.where(signal, rng.integers(fmt.COSMIC, fmt.NEUTRINO + 1, shape),
                      fmt.BACKGROUND).astype(np.int32)

    path = write_dense_events(path, images, labels, number_of_voxels=(width, height))
    return path, images, labels


def events_digest(larcv_file):
    """Return a SHA-256 hex digest over the sparse arrays of every entry of a Larcv3File."""
    digest = hashlib.sha256()
    for entry in range(larcv_file.num_entries):
        for array in larcv_file.read_entry_sparse(entry):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def sparse2d_group_path(producer):
    """Return the HDF5 path of a producer's sparse2d group."""
    return f"{fmt.DATA_GROUP}/{fmt.product_group_name(fmt.SPARSE2D, producer)}"


def drop_producer(path, producer):
    """Delete a producer's whole sparse2d group."""
    with h5py.File(path, "r+") as file:
        del file[sparse2d_group_path(producer)]
    return path


def truncate_extents(path, producer):
    """Shorten a producer's ``extents`` to one row fewer than there are entries."""
    with h5py.File(path, "r+") as file:
        extents = file[sparse2d_group_path(producer)]["extents"]
        extents.resize((extents.shape[0] - 1,))
    return path


def point_voxels_outside(path, producer, entry, plane):
    """Make a plane's ``voxel_extents`` range end one row past the end of ``voxels``."""
    with h5py.File(path, "r+") as file:
        group = file[sparse2d_group_path(producer)]
        row = _plane_row(group, entry, plane)
        voxel_extents = group["voxel_extents"][row]
        voxel_extents["N"] = group["voxels"].shape[0] - voxel_extents["first"] + 1
        group["voxel_extents"][row] = voxel_extents
    return path


def put_id_outside_image(path, producer, entry, plane):
    """Set the first voxel id of a plane to ``N0 * N1``, one past the last valid id."""
    with h5py.File(path, "r+") as file:
        group = file[sparse2d_group_path(producer)]
        row = _plane_row(group, entry, plane)
        first = _first_voxel_row(group, row, producer, entry, plane)
        voxel = group["voxels"][first]
        voxel["id"] = np.prod(group["image_meta"][row]["number_of_voxels"])
        group["voxels"][first] = voxel
    return path


def mismatch_label_ids(path, entry, plane):
    """Move the first label voxel of a plane to an id that has no image voxel.

    The label ids of that plane then differ from the image ids in one element.
    """
    with h5py.File(path, "r+") as file:
        image_group = file[sparse2d_group_path(fmt.DEFAULT_IMAGE_PRODUCER)]
        label_group = file[sparse2d_group_path(fmt.DEFAULT_LABEL_PRODUCER)]

        row = _plane_row(image_group, entry, plane)
        image_ids = _plane_voxels(image_group, row)["id"]
        num_voxels = np.prod(image_group["image_meta"][row]["number_of_voxels"])
        free_id = np.setdiff1d(np.arange(num_voxels, dtype=np.uint64), image_ids)[0]

        first = _first_voxel_row(label_group, row, fmt.DEFAULT_LABEL_PRODUCER, entry, plane)
        voxel = label_group["voxels"][first]
        voxel["id"] = free_id
        label_group["voxels"][first] = voxel
    return path


def wrong_compound_type(path, producer, dataset):
    """Rewrite a dataset of a producer without the second field of its compound type.

    That field is ``N`` in ``extents`` and ``voxel_extents``, ``value`` in ``voxels`` and
    ``projection_id`` in ``image_meta``. The other fields keep their offsets and the itemsize.
    """
    with h5py.File(path, "r+") as file:
        group = file[sparse2d_group_path(producer)]
        rows = group[dataset][:]
        chunks = group[dataset].chunks
        fields = rows.dtype.fields
        kept_names = [name for name in rows.dtype.names if name != rows.dtype.names[1]]
        dtype = np.dtype({"names": kept_names,
                          "formats": [fields[name][0] for name in kept_names],
                          "offsets": [fields[name][1] for name in kept_names],
                          "itemsize": rows.dtype.itemsize})
        damaged = np.zeros(len(rows), dtype)
        for name in kept_names:
            damaged[name] = rows[name]

        del group[dataset]
        group.create_dataset(dataset, data=damaged, maxshape=(None,), chunks=chunks,
                             compression="gzip", compression_opts=fmt.GZIP_LEVEL)
    return path


def drop_plane(path, producer, entry):
    """Give an entry one plane fewer by decrementing ``extents[entry].N``."""
    with h5py.File(path, "r+") as file:
        extents = file[sparse2d_group_path(producer)]["extents"]
        row = extents[entry]
        row["N"] -= 1
        extents[entry] = row
    return path


def drop_dataset(path, producer, dataset):
    """Delete one of a producer's datasets: extents, voxel_extents, image_meta or voxels."""
    with h5py.File(path, "r+") as file:
        del file[sparse2d_group_path(producer)][dataset]
    return path


def drop_event_ids(path):
    """Delete ``Events/event_id``, the table that defines the number of entries."""
    with h5py.File(path, "r+") as file:
        del file[fmt.EVENT_ID_DATASET]
    return path


def add_plane(path, producer, entry):
    """Give an entry one plane more by incrementing ``extents[entry].N``."""
    with h5py.File(path, "r+") as file:
        extents = file[sparse2d_group_path(producer)]["extents"]
        row = extents[entry]
        row["N"] += 1
        extents[entry] = row
    return path


def point_projections_outside(path, producer, entry):
    """Make an entry's projection rows end one row past the end of ``voxel_extents``."""
    with h5py.File(path, "r+") as file:
        group = file[sparse2d_group_path(producer)]
        row = group["extents"][entry]
        row["first"] = group["voxel_extents"].shape[0] - fmt.NUM_PLANES + 1
        group["extents"][entry] = row
    return path


def shorten_image_meta(path, producer):
    """Drop the last row of a producer's ``image_meta``, the last plane of the last entry."""
    with h5py.File(path, "r+") as file:
        meta = file[sparse2d_group_path(producer)]["image_meta"]
        meta.resize((meta.shape[0] - 1,))
    return path


def drop_last_voxel(path, producer, entry, plane):
    """Shorten a plane's voxel range by its last voxel, so the producers' counts differ there."""
    with h5py.File(path, "r+") as file:
        group = file[sparse2d_group_path(producer)]
        row = _plane_row(group, entry, plane)
        _first_voxel_row(group, row, producer, entry, plane)
        voxel_extents = group["voxel_extents"][row]
        voxel_extents["N"] -= 1
        group["voxel_extents"][row] = voxel_extents
    return path


def reverse_voxel_order(path, producer):
    """Store a producer's plane blocks in reverse order in ``voxels``; the file stays valid."""
    with h5py.File(path, "r+") as file:
        group = file[sparse2d_group_path(producer)]
        voxel_extents = group["voxel_extents"][:]
        voxels = group["voxels"][:]
        blocks = [voxels[row["first"]:row["first"] + row["N"]] for row in voxel_extents]

        first = 0
        for row in reversed(range(len(voxel_extents))):
            voxel_extents["first"][row] = first
            first += int(voxel_extents["N"][row])

        group["voxel_extents"][:] = voxel_extents
        group["voxels"][:] = np.concatenate(blocks[::-1]).astype(fmt.VOXEL_DTYPE)
    return path


def write_truncated_file(src, dst):
    """Write the first half of the bytes of ``src`` to ``dst``, like an interrupted copy."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[:len(data) // 2])
    return dst


def write_not_hdf5(dst):
    """Write a short text file that has no HDF5 signature to ``dst``."""
    Path(dst).write_text("this is not an HDF5 file\n")
    return dst


def _plane_row(group, entry, plane):
    """Return the row of ``voxel_extents`` and ``image_meta`` that contains a plane of an entry."""
    return int(group["extents"][entry]["first"]) + plane


def _plane_voxels(group, row):
    voxel_extents = group["voxel_extents"][row]
    first = int(voxel_extents["first"])
    return group["voxels"][first:first + int(voxel_extents["N"])]


def _first_voxel_row(group, row, producer, entry, plane):
    voxel_extents = group["voxel_extents"][row]
    if voxel_extents["N"] == 0:
        raise ValueError(f"producer {producer!r}, entry {entry}, plane {plane} has no voxels "
                         "to damage")
    return int(voxel_extents["first"])
