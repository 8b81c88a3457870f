"""Open larcv3 HDF5 files, check their sparse2d tables, and read events as sparse voxels.

A file is checked when it is opened, before any training step. The producers must exist, every
table must have one ``extents`` row per entry and every entry one row per plane. Projection rows
must lie inside ``voxel_extents`` and ``image_meta``, voxel ranges inside the voxel table, all
planes must share one image size, and the image and label producers must agree on voxel counts.
When the voxel tables are small enough (``id_scan_limit``), the whole file is also scanned at open
time: voxel ids must lie inside the image, label voxels must sit on the image voxels, and label
values must be class ids. Every entry is checked again as it is read. Every error names the file,
the entry and the plane where it has them, and ends with what to do.

Files are opened read-only with HDF5 file locking off, so many processes can read one file at
once, also on file systems without locking support.
"""
import glob
import logging
import os

import h5py
import numpy as np

from cosmictagger_tf.data import larcv3_format as fmt

logger = logging.getLogger(__name__)

# Files with at most this many voxels per producer get a full voxel scan at open time. A voxel row
# is 16 bytes, so the default reads at most 320 MB per producer and keeps about 500 MB in memory at
# once (image ids and label rows). Larger files are checked entry by entry.
DEFAULT_ID_SCAN_LIMIT = 20_000_000


class Larcv3FormatError(ValueError):
    """A larcv3 file that cannot be used as it is; the message names file, entry and plane."""


def expand_data_files(spec):
    """Expand a comma-separated list of paths and globs into an ordered list of existing files."""
    if isinstance(spec, (list, tuple)):
        patterns = [part for item in spec for part in str(item).split(",")]
    else:
        patterns = str(spec).split(",")

    files = []
    for pattern in (p.strip() for p in patterns if p.strip()):
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise FileNotFoundError(f"{pattern}: no such file (check the path or the glob)")
        for match in matches:
            if os.path.isdir(match):
                raise IsADirectoryError(f"{match} is a directory; give the larcv3 files in it, "
                                        f"for example {os.path.join(match, '*.h5')}")
        files.extend(matches)
    return files


class Larcv3File:
    """One larcv3 file opened read-only, checked, and indexed for an image and a label producer.

    ``label_producer=None`` opens an unlabelled file (inference on data). The file handle is
    opened lazily in each process that reads, so an instance can be handed to worker processes.
    """

    def __init__(self, path, image_producer=fmt.DEFAULT_IMAGE_PRODUCER,
                 label_producer=fmt.DEFAULT_LABEL_PRODUCER, num_planes=fmt.NUM_PLANES,
                 id_scan_limit=DEFAULT_ID_SCAN_LIMIT):
        self.path = str(path)
        self.image_producer = image_producer
        self.label_producer = label_producer
        self.num_planes = num_planes
        self._handle = None
        self._handle_pid = None

        self.producers = [p for p in (image_producer, label_producer) if p is not None]
        self._plane_extents = {}
        self._meta_rows = {}
        handle = self._open()
        try:
            self._check_file(handle, id_scan_limit)
        except (OSError, KeyError, RuntimeError) as error:
            # h5py raises these when a table cannot be decompressed or read back.
            self.close()
            raise Larcv3FormatError(
                f"{self.path}: reading its tables failed ({error}); the file is truncated or "
                f"damaged: copy it again") from None
        except Larcv3FormatError:
            self.close()
            raise

    def _check_file(self, handle, id_scan_limit):
        self.num_entries = self._check_events(handle)
        for producer in self.producers:
            self._plane_extents[producer], self._meta_rows[producer] = \
                self._check_producer(handle, producer)
        self.number_of_voxels = self._check_image_meta(handle)
        if self.label_producer is not None:
            self._check_label_counts()
        self._scan_voxels(handle, id_scan_limit)

    # ---- opening ------------------------------------------------------------------------------

    def _open(self):
        if self._handle is not None and self._handle_pid == os.getpid():
            return self._handle
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such file")
        try:
            # Read-only without HDF5 file locking, so many processes can read at once and file
            # systems without locking support (some NFS and Lustre mounts) work too. Locking off
            # also lets a reader open a file that a writer holds locked, so never read a file
            # while it is being written. HDF5_USE_FILE_LOCKING=TRUE or BEST_EFFORT turns locking
            # back on, because HDF5 (checked with 2.0) lets the variable override this setting.
            self._handle = h5py.File(self.path, "r", locking=False)
        except OSError as error:
            if "unable to lock file" in str(error):
                # Not a damaged file, so an OSError that --skip_bad_files does not skip.
                raise OSError(
                    f"{self.path}: HDF5 could not lock the file ({error}); this reader needs no "
                    f"lock, but HDF5_USE_FILE_LOCKING="
                    f"{os.environ.get('HDF5_USE_FILE_LOCKING', '(unset)')} turns locking on. "
                    f"Unset it or set HDF5_USE_FILE_LOCKING=FALSE") from None
            raise Larcv3FormatError(
                f"{self.path}: cannot be opened as HDF5 ({error}); the file is truncated or not "
                f"a larcv3 file: copy it again or check the path") from None
        self._handle_pid = os.getpid()
        return self._handle

    def close(self):
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"] = None
        return state

    # ---- checks at open time ------------------------------------------------------------------

    def _check_events(self, handle):
        if fmt.EVENT_ID_DATASET not in handle:
            raise Larcv3FormatError(f"{self.path}: missing dataset /{fmt.EVENT_ID_DATASET}; "
                                    "this is not a larcv3 file: check the path, or copy the "
                                    "file again")
        return int(handle[fmt.EVENT_ID_DATASET].shape[0])

    def available_producers(self, product=fmt.SPARSE2D):
        """Return the producer names of ``product`` groups in the file, sorted."""
        data = self._open().get(fmt.DATA_GROUP)
        if data is None:
            return []
        names = (fmt.split_group_name(name) for name in data.keys())
        return sorted(producer for prod, producer in filter(None, names) if prod == product)

    def _group(self, producer):
        return self._open()[f"{fmt.DATA_GROUP}/{fmt.product_group_name(fmt.SPARSE2D, producer)}"]

    def _check_producer(self, handle, producer):
        """Check one sparse2d group's tables.

        Returns ``(voxel_ranges, meta_rows)``: int64 arrays ``[entries, planes, 2]`` of (first,
        count) into the voxel table, and ``[entries, planes]`` of rows of ``image_meta``.
        """
        group_path = f"{fmt.DATA_GROUP}/{fmt.product_group_name(fmt.SPARSE2D, producer)}"
        if group_path not in handle:
            available = ", ".join(self.available_producers()) or "none"
            raise Larcv3FormatError(
                f"{self.path}: sparse2d producer {producer!r} not found (group /{group_path} is "
                f"missing); sparse2d producers in this file: {available}. Set --image_producer "
                f"or --label_producer to one of them")
        group = handle[group_path]
        self._check_datasets(group, producer)

        extents = group["extents"][:]
        if len(extents) != self.num_entries:
            raise Larcv3FormatError(
                f"{self.path}: producer {producer!r} has {len(extents)} extents rows for "
                f"{self.num_entries} entries; the file is damaged or was written incompletely")

        self._check_projection_counts(producer, extents)
        table_lengths = {name: group[name].shape[0] for name in ("voxel_extents", "image_meta")}
        rows = self._projection_rows(producer, extents, table_lengths)

        voxel_extents = group["voxel_extents"][:]
        num_voxels = group["voxels"].shape[0]
        return self._plane_voxel_ranges(producer, voxel_extents[rows], num_voxels), rows

    def _check_datasets(self, group, producer):
        expected = {"extents": fmt.EXTENTS_DTYPE, "voxel_extents": fmt.ID_EXTENTS_DTYPE,
                    "image_meta": fmt.IMAGE_META_DTYPE, "voxels": fmt.VOXEL_DTYPE}
        for name, dtype in expected.items():
            if name not in group:
                raise Larcv3FormatError(f"{self.path}: producer {producer!r} is missing its "
                                        f"{name!r} dataset; the file is damaged: copy it again "
                                        f"or write it again")
            found = group[name].dtype
            missing = [field for field in dtype.names if found.names is None
                       or field not in found.names]
            if missing:
                raise Larcv3FormatError(
                    f"{self.path}: producer {producer!r} dataset {name!r} has type {found}, "
                    f"without the field(s) {', '.join(missing)}; this is not a larcv3 sparse2d "
                    f"table")

    def _check_projection_counts(self, producer, extents):
        bad = np.flatnonzero(extents["N"] != self.num_planes)
        if len(bad):
            entry = int(bad[0])
            raise Larcv3FormatError(
                f"{self.path}: entry {entry}: producer {producer!r} has {extents['N'][entry]} "
                f"projections, expected {self.num_planes} wire planes ({len(bad)} entries "
                f"affected); the file is damaged or from another detector: use files with "
                f"{self.num_planes} planes per entry")

    def _projection_rows(self, producer, extents, table_lengths):
        """Return the int64 rows ``[entries, planes]`` of ``voxel_extents`` and ``image_meta``."""
        rows = extents["first"].astype(np.int64)[:, None] + np.arange(self.num_planes)
        for table, length in table_lengths.items():
            bad = np.flatnonzero(rows[:, -1] >= length) if len(rows) else []
            if len(bad):
                entry = int(bad[0])
                raise Larcv3FormatError(
                    f"{self.path}: entry {entry}: producer {producer!r} projection rows "
                    f"{rows[entry, 0]}..{rows[entry, -1]} lie past the end of {table} ({length} "
                    f"rows; {len(bad)} entries affected); the file is damaged: copy it again")
        return rows

    def _plane_voxel_ranges(self, producer, plane_rows, num_voxels):
        """Return an int64 array [entries, planes, 2] of (first, count) into the voxel table."""
        ranges = np.stack([plane_rows["first"].astype(np.int64),
                           plane_rows["N"].astype(np.int64)], axis=-1)
        ranges = ranges.reshape(self.num_entries, self.num_planes, 2)

        ends = ranges[..., 0] + ranges[..., 1]
        bad = np.argwhere(ends > num_voxels)
        if len(bad):
            entry, plane = bad[0]
            raise Larcv3FormatError(
                f"{self.path}: entry {entry}, plane {plane}: producer {producer!r} voxel range "
                f"{ranges[entry, plane, 0]}..{ends[entry, plane]} lies past the end of the voxel "
                f"table ({num_voxels} voxels); the file is damaged ({len(bad)} planes affected): "
                f"copy it again")
        return ranges

    def _check_image_meta(self, handle):
        """Check that every filled plane has one image size; return number_of_voxels (N0, N1).

        The most common size is the file's, and the error names the first plane that differs.
        """
        planes = []
        for producer in self.producers:
            meta = self._group(producer)["image_meta"][:][self._meta_rows[producer]]
            planes.append((producer, meta["valid"] != 0,
                           meta["number_of_voxels"].astype(np.int64)))
        valid_sizes = np.concatenate([sizes[valid] for _, valid, sizes in planes])
        if not len(valid_sizes):
            return fmt.NUMBER_OF_VOXELS

        unique, counts = np.unique(valid_sizes, axis=0, return_counts=True)
        common = unique[np.argmax(counts)]
        for producer, valid, sizes in planes:
            bad = np.argwhere(valid & np.any(sizes != common, axis=-1))
            if len(bad):
                entry, plane = bad[0]
                raise Larcv3FormatError(
                    f"{self.path}: entry {entry}, plane {plane}: planes disagree on the image "
                    f"size (producer {producer!r} has number_of_voxels "
                    f"{tuple(int(n) for n in sizes[entry, plane])}, the other planes "
                    f"{tuple(int(n) for n in common)}); every plane must have one size, so the "
                    f"file is damaged or mixes detector geometries: replace it")
        return int(common[0]), int(common[1])

    def _check_label_counts(self):
        image = self._plane_extents[self.image_producer][..., 1]
        labels = self._plane_extents[self.label_producer][..., 1]
        bad = np.argwhere(image != labels)
        if len(bad):
            entry, plane = bad[0]
            raise Larcv3FormatError(
                f"{self.path}: entry {entry}, plane {plane}: producer {self.image_producer!r} has "
                f"{image[entry, plane]} voxels but label producer {self.label_producer!r} has "
                f"{labels[entry, plane]}; labels must sit on the same voxels as the image")

    def _scan_voxels(self, handle, id_scan_limit):
        """Check every voxel of the producers that have at most ``id_scan_limit`` voxels."""
        ids = {}
        for producer in self.producers:
            voxels = self._group(producer)["voxels"]
            if voxels.shape[0] > id_scan_limit:
                logger.info("%s: %s has %d voxels; voxels are checked per entry as they are read",
                            self.path, producer, voxels.shape[0])
                continue
            if not voxels.shape[0]:
                ids[producer] = np.zeros(0, np.uint64)
            elif producer == self.label_producer:
                # One read of the label table for its ids and values, which are views of it.
                rows = voxels[:]
                ids[producer] = rows["id"]
                self._check_label_table(rows["value"])
            else:
                ids[producer] = voxels.fields("id")[:]
            self._check_ids_inside(producer, ids[producer])

        if self.label_producer in ids and self.image_producer in ids:
            self._check_label_ids(ids[self.image_producer], ids[self.label_producer])

    def _check_ids_inside(self, producer, ids):
        limit = self.number_of_voxels[0] * self.number_of_voxels[1]
        if len(ids) and ids.max() >= limit:
            position = int(np.argmax(ids >= limit))
            entry, plane = self._locate_voxel(producer, position)
            self._raise_bad_id(producer, entry, plane, int(ids[position]))

    def _check_label_ids(self, image_ids, label_ids):
        """Compare the label ids with the image ids, plane by plane, in entry order."""
        image_ranges = self._plane_extents[self.image_producer]
        label_ranges = self._plane_extents[self.label_producer]
        if np.array_equal(image_ranges, label_ranges) and len(image_ids) == len(label_ids):
            # In the usual layout both tables have the same order, so compare them row by row
            # without gathering copies, and skip rows that no plane refers to.
            for position in np.flatnonzero(image_ids != label_ids):
                entry, plane = self._locate_voxel(self.label_producer, int(position))
                if entry >= 0:
                    self._raise_label_ids_differ(entry, plane)
            return

        image_order = _voxel_rows(image_ranges)
        label_order = _voxel_rows(label_ranges)
        differ = np.flatnonzero(image_ids[image_order] != label_ids[label_order])
        if len(differ):
            counts = self._plane_extents[self.label_producer][..., 1].reshape(-1)
            slot = int(np.searchsorted(np.cumsum(counts), differ[0], side="right"))
            self._raise_label_ids_differ(*divmod(slot, self.num_planes))

    def _check_label_table(self, values):
        invalid = np.flatnonzero(_invalid_labels(values))
        if len(invalid):
            entry, plane = self._locate_voxel(self.label_producer, int(invalid[0]))
            self._raise_bad_label(entry, plane, values[invalid[0]])

    def _locate_voxel(self, producer, position):
        ranges = self._plane_extents[producer]
        inside = (ranges[..., 0] <= position) & (position < ranges[..., 0] + ranges[..., 1])
        found = np.argwhere(inside)
        return tuple(int(i) for i in found[0]) if len(found) else (-1, -1)

    def _raise_bad_id(self, producer, entry, plane, voxel_id):
        limit = self.number_of_voxels[0] * self.number_of_voxels[1]
        raise Larcv3FormatError(
            f"{self.path}: entry {entry}, plane {plane}: producer {producer!r} has voxel id "
            f"{voxel_id} outside the image ({self.number_of_voxels[0]} x "
            f"{self.number_of_voxels[1]} = {limit} voxels); the file is damaged: copy it again")

    # ---- reading --------------------------------------------------------------------------------

    @property
    def image_shape(self):
        """(height, width) of one plane at full resolution: (ticks, wires)."""
        return self.number_of_voxels[1], self.number_of_voxels[0]

    def event_ids(self):
        """Return the ``Events/event_id`` table (run, subrun, event) of every entry."""
        return self._open()[fmt.EVENT_ID_DATASET][:]

    def read_sparse(self, entry, producer):
        """Return a list, one per plane, of ``(ids uint64, values float32)`` for one entry."""
        if not 0 <= entry < self.num_entries:
            raise IndexError(f"{self.path}: entry {entry} out of range "
                             f"(the file has {self.num_entries} entries)")
        voxels = self._group(producer)["voxels"]
        ranges = self._plane_extents[producer][entry]
        start = int(ranges[:, 0].min())
        stop = int((ranges[:, 0] + ranges[:, 1]).max())
        block = voxels[start:stop] if stop > start else np.zeros(0, fmt.VOXEL_DTYPE)

        limit = self.number_of_voxels[0] * self.number_of_voxels[1]
        planes = []
        for plane, (first, count) in enumerate(ranges):
            rows = block[first - start:first - start + count]
            ids, values = rows["id"], rows["value"].astype(np.float32)
            if count and ids.max() >= limit:
                self._raise_bad_id(producer, entry, plane, int(ids.max()))
            planes.append((ids, values))
        return planes

    def read_entry_sparse(self, entry):
        """Return flat arrays for one entry: plane index, voxel id, charge and label per voxel.

        Labels are -1 when the file was opened without a label producer.
        """
        image_planes = self.read_sparse(entry, self.image_producer)
        plane_index = np.concatenate([np.full(len(ids), plane, np.int32)
                                      for plane, (ids, _) in enumerate(image_planes)])
        ids = np.concatenate([ids for ids, _ in image_planes]).astype(np.int64)
        charge = np.concatenate([values for _, values in image_planes])

        if self.label_producer is None:
            return plane_index, ids, charge, np.full(len(ids), -1, np.int32)

        label_planes = self.read_sparse(entry, self.label_producer)
        for plane, ((image_ids, _), (label_ids, _)) in enumerate(zip(image_planes,
                                                                    label_planes)):
            if not np.array_equal(image_ids, label_ids):
                self._raise_label_ids_differ(entry, plane)
        labels = np.concatenate([values for _, values in label_planes])
        self._check_label_values(entry, label_planes)
        return plane_index, ids, charge, labels.astype(np.int32)

    def _check_label_values(self, entry, label_planes):
        for plane, (_, values) in enumerate(label_planes):
            invalid = _invalid_labels(values)
            if np.any(invalid):
                self._raise_bad_label(entry, plane, values[invalid][0])

    def _raise_label_ids_differ(self, entry, plane):
        raise Larcv3FormatError(
            f"{self.path}: entry {entry}, plane {plane}: label voxel ids differ from the image "
            f"voxel ids (producer {self.label_producer!r} against {self.image_producer!r}); "
            f"labels must sit on the same voxels as the image, so the file is damaged: replace "
            f"it, or check --label_producer")

    def _raise_bad_label(self, entry, plane, value):
        raise Larcv3FormatError(
            f"{self.path}: entry {entry}, plane {plane}: producer {self.label_producer!r} has "
            f"label value {value!r}; labels must be 0 (background), 1 (cosmic) or 2 (neutrino). "
            f"Check --label_producer")


def _invalid_labels(values):
    """Return a mask of label values that are not class ids 0, 1 or 2."""
    return (values != np.round(values)) | (values < 0) | (values >= fmt.NUM_CLASSES)


def _voxel_rows(voxel_ranges):
    """Return the voxel-table rows of every plane of every entry, concatenated in that order."""
    firsts = voxel_ranges[..., 0].reshape(-1)
    counts = voxel_ranges[..., 1].reshape(-1)
    starts_in_output = np.cumsum(counts) - counts
    return np.repeat(firsts - starts_in_output, counts) + np.arange(int(counts.sum()))
