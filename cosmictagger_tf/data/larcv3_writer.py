"""Write sparse2d products to larcv3 HDF5 files with the layout of the CosmicTagger data files.

Every dataset is 1-D, chunked with the chunk lengths of the real files, unlimited in length and
gzip-compressed, and every table uses the padded compound dtypes of ``larcv3_format``. The writer
buffers events in memory and appends them in blocks, so files of thousands of full-size events are
written with bounded memory. Output is atomic: the file only appears under its final name after a
clean close.
"""
import os
from pathlib import Path

import h5py
import numpy as np

from cosmictagger_tf.data import larcv3_format as fmt

PARTIAL_SUFFIX = ".partial"

# Pending voxels (all producers together) and pending entries that trigger a write to disk.
# 2**21 voxels of 16 bytes is 32 MiB of buffered rows.
DEFAULT_BUFFER_VOXELS = 2 ** 21
MAX_PENDING_ENTRIES = 1000

DATASET_DTYPES = {
    "extents": fmt.EXTENTS_DTYPE,
    "voxel_extents": fmt.ID_EXTENTS_DTYPE,
    "image_meta": fmt.IMAGE_META_DTYPE,
    "voxels": fmt.VOXEL_DTYPE,
}


class Larcv3Writer:
    """Writer of ``sparse2d`` products, one entry per ``write_event`` call.

    Use it as a context manager. Rows go to ``<path>.partial``, which is renamed to ``path`` when
    the ``with`` block ends cleanly and deleted when it ends with an exception.
    """

    def __init__(self, path, sparse2d_producers=(fmt.DEFAULT_IMAGE_PRODUCER,
                                                 fmt.DEFAULT_LABEL_PRODUCER),
                 number_of_voxels=fmt.NUMBER_OF_VOXELS, num_planes=fmt.NUM_PLANES,
                 overwrite=False, buffer_voxels=DEFAULT_BUFFER_VOXELS):
        self.path = Path(path)
        self.partial_path = Path(str(self.path) + PARTIAL_SUFFIX)
        self.producers = _validate_producers(sparse2d_producers)
        self.number_of_voxels = _validate_number_of_voxels(number_of_voxels)
        self.num_voxels_per_plane = self.number_of_voxels[0] * self.number_of_voxels[1]
        self.num_planes = int(num_planes)
        self.buffer_voxels = int(buffer_voxels)
        if self.num_planes < 1:
            raise ValueError(f"num_planes must be at least 1, got {num_planes}")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists. Pass overwrite=True to replace it")

        self.num_entries = 0
        self._image_meta_block = _image_meta_block(self.number_of_voxels, self.num_planes)
        self._plane_rows = {producer: 0 for producer in self.producers}
        self._voxel_rows = {producer: 0 for producer in self.producers}
        self._pending = None
        self._reset_pending()

        self._file = h5py.File(self.partial_path, "w")
        try:
            self._datasets = self._create_datasets()
        except BaseException:
            self.abort()
            raise

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def write_event(self, sparse2d, event_id=(-1, -1, -1)):
        """Buffer one entry and write buffered entries to disk once the buffer is full.

        ``sparse2d`` maps every producer of this writer to a list of ``num_planes`` ``(ids,
        values)`` pairs: flat voxel ids (``id = c0 * N1 + c1``) and their float32 values.
        Raises ValueError, naming producer, entry and plane, before anything of the entry is
        buffered, so a rejected entry leaves the writer unchanged.
        """
        self._check_open()
        entry = self.num_entries
        event_id = _validate_event_id(event_id, entry)
        planes_by_producer = self._validate_event(sparse2d, entry)

        for producer, planes in planes_by_producer.items():
            self._buffer_product(producer, planes)
        self._pending["event_id"].append(event_id)
        self.num_entries += 1

        if (self._pending["num_voxels"] >= self.buffer_voxels
                or len(self._pending["event_id"]) >= MAX_PENDING_ENTRIES):
            self.flush()

    def flush(self):
        """Append all buffered entries to the datasets of the partial file."""
        self._check_open()
        event_ids = np.array(self._pending["event_id"], dtype=fmt.EVENT_ID_DTYPE)
        _append_rows(self._file[fmt.EVENT_ID_DATASET], event_ids)

        for producer in self.producers:
            for name in fmt.SPARSE2D_DATASETS:
                rows = _stack_rows(self._pending[producer][name], DATASET_DTYPES[name])
                _append_rows(self._datasets[producer][name], rows)

        self._reset_pending()

    def close(self):
        """Write the remaining entries, close the file and rename it to its final path.

        If writing fails, the partial file is deleted and the error propagates.
        """
        if self._file is None:
            return
        try:
            self.flush()
            self._file.close()
        except BaseException:
            self.abort()
            raise
        self._file = None
        os.replace(self.partial_path, self.path)

    def abort(self):
        """Close and delete the partial file, leaving nothing at the final path."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.partial_path.unlink(missing_ok=True)

    def _create_datasets(self):
        events = self._file.create_group(fmt.EVENTS_GROUP)
        _create_table(events, "event_id", fmt.EVENT_ID_DTYPE)

        data = self._file.create_group(fmt.DATA_GROUP)
        datasets = {}
        for producer in self.producers:
            group = data.create_group(fmt.product_group_name(fmt.SPARSE2D, producer))
            datasets[producer] = {name: _create_table(group, name, DATASET_DTYPES[name])
                                  for name in fmt.SPARSE2D_DATASETS}
        return datasets

    def _validate_event(self, sparse2d, entry):
        """Return ``{producer: [(ids uint64, values float32), ...]}`` or raise ValueError."""
        missing = [producer for producer in self.producers if producer not in sparse2d]
        unknown = [producer for producer in sparse2d if producer not in self.producers]
        if missing or unknown:
            raise ValueError(f"entry {entry}: expected producers {list(self.producers)}, "
                             f"missing {missing}, unknown {unknown}")

        planes_by_producer = {}
        for producer in self.producers:
            planes = list(sparse2d[producer])
            if len(planes) != self.num_planes:
                raise ValueError(f"producer {producer!r}, entry {entry}: expected "
                                 f"{self.num_planes} planes, got {len(planes)}")
            planes_by_producer[producer] = [
                self._validate_plane(producer, entry, plane, ids, values)
                for plane, (ids, values) in enumerate(planes)]
        return planes_by_producer

    def _validate_plane(self, producer, entry, plane, ids, values):
        where = f"producer {producer!r}, entry {entry}, plane {plane}"
        ids = np.asarray(ids)
        values = np.asarray(values)

        if ids.ndim != 1 or values.ndim != 1:
            raise ValueError(f"{where}: ids and values must be 1-D, got shapes "
                             f"{ids.shape} and {values.shape}")
        if len(ids) != len(values):
            raise ValueError(f"{where}: {len(ids)} ids but {len(values)} values")
        if len(ids) and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{where}: voxel ids must be integers, got dtype {ids.dtype}")
        if len(ids) and (ids.min() < 0 or ids.max() >= self.num_voxels_per_plane):
            raise ValueError(f"{where}: voxel ids must lie in [0, {self.num_voxels_per_plane}) "
                             f"for number_of_voxels {self.number_of_voxels}, got "
                             f"[{ids.min()}, {ids.max()}]")

        return ids.astype(np.uint64), values.astype(np.float32)

    def _buffer_product(self, producer, planes):
        pending = self._pending[producer]

        extents = np.zeros(1, fmt.EXTENTS_DTYPE)
        extents["first"] = self._plane_rows[producer]
        extents["N"] = self.num_planes

        voxel_extents = np.zeros(self.num_planes, fmt.ID_EXTENTS_DTYPE)
        plane_sizes = np.array([len(ids) for ids, _ in planes], dtype=np.uint64)
        voxel_extents["first"] = self._voxel_rows[producer] + np.cumsum(plane_sizes) - plane_sizes
        voxel_extents["N"] = plane_sizes
        voxel_extents["ID"] = np.arange(self.num_planes)

        voxels = np.zeros(int(plane_sizes.sum()), fmt.VOXEL_DTYPE)
        voxels["id"] = np.concatenate([ids for ids, _ in planes])
        voxels["value"] = np.concatenate([values for _, values in planes])

        pending["extents"].append(extents)
        pending["voxel_extents"].append(voxel_extents)
        pending["image_meta"].append(self._image_meta_block)
        pending["voxels"].append(voxels)
        self._plane_rows[producer] += self.num_planes
        self._voxel_rows[producer] += len(voxels)
        self._pending["num_voxels"] += len(voxels)

    def _reset_pending(self):
        self._pending = {"event_id": [], "num_voxels": 0}
        for producer in self.producers:
            self._pending[producer] = {name: [] for name in fmt.SPARSE2D_DATASETS}

    def _check_open(self):
        if self._file is None:
            raise ValueError(f"writer of {self.path} is closed")


def write_dense_events(path, images, labels, image_producer=fmt.DEFAULT_IMAGE_PRODUCER,
                       label_producer=fmt.DEFAULT_LABEL_PRODUCER, event_ids=None,
                       overwrite=False, number_of_voxels=fmt.NUMBER_OF_VOXELS):
    """Write dense images and labels as the sparse image and label producers of a larcv3 file.

    ``images`` is float ``[n, H, W, planes]`` and ``labels`` integer ``[n, H, W, planes]``, with
    ``(W, H) == number_of_voxels``. The image producer stores the pixels with nonzero charge, and
    the label producer stores the label of each of those pixels, on the same ids in the same order.
    A label on a pixel without charge has no voxel to live on, so it reads back as background.
    Returns the path.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    width, height = _validate_number_of_voxels(number_of_voxels)
    if images.ndim != 4 or images.shape[1:3] != (height, width):
        raise ValueError(f"images must have shape [n, {height}, {width}, planes] for "
                         f"number_of_voxels {(width, height)}, got {images.shape}")
    if labels.shape != images.shape:
        raise ValueError(f"labels shape {labels.shape} differs from images shape {images.shape}")
    if event_ids is not None and len(event_ids) != len(images):
        raise ValueError(f"{len(event_ids)} event ids for {len(images)} events")

    num_planes = images.shape[3]
    with Larcv3Writer(path, (image_producer, label_producer), (width, height), num_planes,
                      overwrite=overwrite) as writer:
        for event in range(len(images)):
            image_planes, label_planes = [], []
            for plane in range(num_planes):
                ids, values, label_values = _sparsify_plane(images[event, :, :, plane],
                                                            labels[event, :, :, plane])
                image_planes.append((ids, values))
                label_planes.append((ids, label_values))
            event_id = (-1, -1, -1) if event_ids is None else event_ids[event]
            writer.write_event({image_producer: image_planes, label_producer: label_planes},
                               event_id)
    return Path(path)


def _sparsify_plane(image, label):
    """Return ascending ids ``x * H + y`` of charged pixels, their charge and their label."""
    charge_by_id = image.T.ravel()
    ids = np.flatnonzero(charge_by_id).astype(np.uint64)
    label_values = label.T.ravel()[ids]
    return ids, charge_by_id[ids].astype(np.float32), label_values.astype(np.float32)


def _create_table(group, name, dtype):
    return group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                chunks=(fmt.CHUNK_ROWS[name],), compression="gzip",
                                compression_opts=fmt.GZIP_LEVEL)


def _append_rows(dataset, rows):
    if len(rows) == 0:
        return
    start = dataset.shape[0]
    dataset.resize((start + len(rows),))
    dataset[start:] = rows


def _stack_rows(blocks, dtype):
    # Filled slice by slice because numpy 2's concatenate drops the padding of compound dtypes.
    rows = np.zeros(sum(len(block) for block in blocks), dtype)
    start = 0
    for block in blocks:
        rows[start:start + len(block)] = block
        start += len(block)
    return rows


def _image_meta_block(number_of_voxels, num_planes):
    meta = np.zeros(num_planes, fmt.IMAGE_META_DTYPE)
    meta["valid"] = 1
    meta["projection_id"] = np.arange(num_planes)
    meta["image_sizes"] = number_of_voxels
    meta["number_of_voxels"] = number_of_voxels
    meta["origin"] = (0.0, 0.0)
    return meta


def _validate_producers(producers):
    producers = tuple(producers)
    if not producers:
        raise ValueError("at least one sparse2d producer is required")
    if len(set(producers)) != len(producers):
        raise ValueError(f"duplicate sparse2d producers in {producers}")
    for producer in producers:
        if not producer or "/" in producer:
            raise ValueError(f"invalid producer name {producer!r}")
    return producers


def _validate_number_of_voxels(number_of_voxels):
    number_of_voxels = tuple(int(n) for n in number_of_voxels)
    if len(number_of_voxels) != 2 or min(number_of_voxels) < 1:
        raise ValueError(f"number_of_voxels must be two positive sizes, got {number_of_voxels}")
    return number_of_voxels


def _validate_event_id(event_id, entry):
    event_id = tuple(event_id)
    if len(event_id) != 3:
        raise ValueError(f"entry {entry}: event_id must be (run, subrun, event), got {event_id}")
    return tuple(int(part) for part in event_id)
