"""Reading larcv3 files into dense tensors: the file reader, densification and tf.data pipelines.

Public API for notebooks and tests: ``read_events(path, entries=None, downsample=0)``.
"""
import numpy as np

from cosmictagger_tf.data import larcv3_format
from cosmictagger_tf.data import dense
from cosmictagger_tf.data.dense import densify_numpy
from cosmictagger_tf.data.larcv3_reader import Larcv3File, Larcv3FormatError


def read_events(path, entries=None, downsample=0,
                image_producer=larcv3_format.DEFAULT_IMAGE_PRODUCER,
                label_producer=larcv3_format.DEFAULT_LABEL_PRODUCER):
    """Read events of one larcv3 file as dense arrays.

    Returns ``(images, labels)``: images float32 charge and labels int32 class ids (0
    background, 1 cosmic, 2 neutrino), both ``[n, H, W, 3]`` with the planes as channels in
    order. ``entries`` is a list of entry numbers (all entries when None); ``downsample = d``
    shrinks each axis by ``2**d`` (block mean for charge, block maximum for labels). With
    ``label_producer=None`` the labels are returned as None.
    """
    larcv_file = Larcv3File(path, image_producer, label_producer)
    try:
        entries = range(larcv_file.num_entries) if entries is None else list(entries)
        events = [densify_numpy(*larcv_file.read_entry_sparse(entry),
                                larcv_file.number_of_voxels, larcv_file.num_planes, downsample)
                  for entry in entries]
    finally:
        larcv_file.close()

    height, width = dense.coarse_shape(larcv_file.number_of_voxels, downsample)
    images = np.stack([image for image, _ in events]) if events else \
        np.zeros((0, height, width, larcv_file.num_planes), np.float32)
    labels = np.stack([label for _, label in events]) if events else \
        np.zeros((0, height, width, larcv_file.num_planes), np.int32)
    return images, (labels if label_producer is not None else None)


__all__ = ["read_events", "Larcv3File", "Larcv3FormatError"]
