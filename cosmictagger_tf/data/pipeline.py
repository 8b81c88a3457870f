"""tf.data pipelines that turn larcv3 files, or synthetic events, into dense minibatches.

Order of events: position ``k`` of the stream belongs to epoch ``k // num_events`` and picks
event ``permutation(epoch)[k % num_events]``, where each epoch's permutation comes from the run
seed and the epoch number alone. Every rank computes the same permutation and takes its own
slice of each global minibatch. So each event is seen once per epoch over all ranks and every
rank runs the same number of steps. A run restarted at step ``s`` continues at position
``s * global_minibatch``. Reading the sparse voxels runs in Python (h5py); turning them into
dense, downsampled tensors runs in TensorFlow ops, in parallel and outside the Python lock.
"""
import logging

import h5py
import numpy as np
import tensorflow as tf

from cosmictagger_tf.data import dense
from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.data.larcv3_reader import Larcv3File, Larcv3FormatError, expand_data_files

logger = logging.getLogger(__name__)


class EventSource:
    """Several larcv3 files seen as one list of events, indexed 0..num_events-1 in file order.

    A file that fails the larcv3 checks raises Larcv3FormatError unless ``skip_bad_files`` is
    set. The file is then left out with a warning that names it and the reason, and ``skipped``
    lists the ``(path, reason)`` of every file left out. A source whose files all fail raises.
    """

    def __init__(self, files, image_producer, label_producer, num_planes=3,
                 skip_bad_files=False):
        paths = expand_data_files(files)
        self.skipped = []
        self.files = []
        for path in paths:
            larcv_file = self._open(path, image_producer, label_producer, num_planes,
                                    skip_bad_files, len(paths))
            if larcv_file is not None:
                self.files.append(larcv_file)
        if self.skipped:
            self._report_skipped(paths)
        self.num_planes = num_planes
        self.number_of_voxels = self._common_image_size()
        counts = [larcv_file.num_entries for larcv_file in self.files]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.num_events = int(self.offsets[-1])
        if self.num_events == 0:
            raise Larcv3FormatError(f"{', '.join(paths)}: no entries to read")
        logger.info("opened %d file(s) with %d events: %s", len(self.files), self.num_events,
                    ", ".join(f"{f.path} ({f.num_entries})" for f in self.files))

    def _open(self, path, image_producer, label_producer, num_planes, skip_bad_files,
              num_paths):
        """Return the checked file, or None when it is bad and bad files are skipped."""
        try:
            return Larcv3File(path, image_producer, label_producer, num_planes)
        except Larcv3FormatError as error:
            if not skip_bad_files:
                if num_paths == 1:
                    raise
                raise Larcv3FormatError(f"{error}. To leave out every file that fails these "
                                        "checks and train on the rest, add --skip_bad_files"
                                        ) from None
            logger.warning("skipping bad input file: %s", error)
            self.skipped.append((path, str(error)))
            return None

    def _report_skipped(self, paths):
        counts = [_count_entries(path) for path, _ in self.skipped]
        events = sum(count for count in counts if count is not None)
        unknown = sum(count is None for count in counts)
        unknown_note = (f" plus those of {unknown} file(s) whose event count cannot be read"
                        if unknown else "")
        names = ", ".join(path for path, _ in self.skipped)
        if not self.files:
            raise Larcv3FormatError(
                f"all {len(paths)} input file(s) fail the larcv3 checks ({names}), so nothing is "
                f"left to read; fix or replace them. The first reason: {self.skipped[0][1]}")
        logger.warning("skipped %d of %d input file(s) with %d event(s)%s: %s", len(self.skipped),
                       len(paths), events, unknown_note, names)

    def _common_image_size(self):
        sizes = {larcv_file.number_of_voxels for larcv_file in self.files}
        if len(sizes) > 1:
            listing = ", ".join(f"{f.path}: {f.number_of_voxels}" for f in self.files)
            raise Larcv3FormatError(f"input files have different image sizes ({listing}); "
                                    "train on files of one detector geometry at a time")
        return sizes.pop()

    def locate(self, index):
        """Return ``(file, entry)`` of event ``index``."""
        file_index = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.files[file_index], int(index - self.offsets[file_index])

    def read(self, index):
        """Return the flat sparse arrays of event ``index`` (see Larcv3File.read_entry_sparse)."""
        larcv_file, entry = self.locate(index)
        return larcv_file.read_entry_sparse(entry)


def _count_entries(path):
    """Return the number of entries of a larcv3 file, or None when it cannot be read."""
    try:
        with h5py.File(path, "r", locking=False) as handle:
            return int(handle[fmt.EVENT_ID_DATASET].shape[0])
    except (OSError, KeyError, AttributeError):
        return None


class EventOrder:
    """Maps stream positions to event indices: a seeded permutation per epoch."""

    def __init__(self, num_events, seed, shuffle=True):
        self.num_events = num_events
        self.seed = seed
        self.shuffle = shuffle
        self._cached_epoch = None
        self._cached_permutation = None

    def permutation(self, epoch):
        if not self.shuffle:
            return np.arange(self.num_events)
        if epoch != self._cached_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._cached_permutation = rng.permutation(self.num_events)
            self._cached_epoch = epoch
        return self._cached_permutation

    def event_at(self, position):
        epoch, offset = divmod(int(position), self.num_events)
        return int(self.permutation(epoch)[offset])


def stream_position(local_index, start_step, local_minibatch, rank, num_ranks):
    """Return the stream position of the ``local_index``-th event this rank reads."""
    step = start_step + local_index // local_minibatch
    slot = local_index % local_minibatch
    return (step * num_ranks + rank) * local_minibatch + slot


def larcv3_dataset(source, local_minibatch, downsample, seed, shuffle=True, start_step=0,
                   rank=0, num_ranks=1, reader_threads=2, prefetch=2):
    """Return an endless dataset of ``(images, labels)`` minibatches from an EventSource.

    ``images`` is float32 and ``labels`` int32, both ``[local_minibatch, H, W, planes]``.
    """
    order = EventOrder(source.num_events, seed, shuffle)
    height, width = dense.coarse_shape(source.number_of_voxels, downsample)
    planes = source.num_planes

    def read_event(local_index):
        position = stream_position(int(local_index), start_step, local_minibatch, rank,
                                   num_ranks)
        return source.read(order.event_at(position))

    def load(local_index):
        plane_index, ids, charge, labels = tf.numpy_function(
            read_event, [local_index], [tf.int32, tf.int64, tf.float32, tf.int32],
            stateful=False)
        image, label_image = dense.densify_tf(plane_index, ids, charge, labels,
                                              source.number_of_voxels, planes, downsample)
        image.set_shape([height, width, planes])
        label_image.set_shape([height, width, planes])
        return image, label_image

    dataset = tf.data.Dataset.counter()
    dataset = dataset.map(load, num_parallel_calls=max(1, reader_threads), deterministic=True)
    dataset = dataset.batch(local_minibatch, drop_remainder=True)
    return dataset.prefetch(prefetch)


def synthetic_dataset(local_minibatch, image_shape, num_planes=3, seed=0, occupancy=0.01,
                      pool_size=4):
    """Return an endless dataset cycling over a few random minibatches of the real shape.

    About ``occupancy`` of the pixels carry charge (as in real events), each labelled background,
    cosmic or neutrino at random; the rest is empty background. For compute benchmarks: no I/O.
    """
    rng = np.random.default_rng(seed)
    shape = (pool_size, local_minibatch, *image_shape, num_planes)
    charged = rng.random(shape, dtype=np.float32) < occupancy
    images = np.where(charged, rng.gamma(1.5, 20.0, shape).astype(np.float32), 0.0)
    labels = np.where(charged, rng.integers(0, 3, shape, dtype=np.int32), 0)

    dataset = tf.data.Dataset.from_tensor_slices((images.astype(np.float32),
                                                  labels.astype(np.int32)))
    return dataset.repeat().prefetch(2)
