"""Turn sparse voxels into dense, downsampled plane images, in NumPy and in TensorFlow ops.

Downsampling by ``2**d`` goes straight from voxels to the coarse grid, without building the
full-resolution image. The charge of a ``2**d x 2**d`` block is summed and divided by the block
area, so empty pixels count as zero. The label of a block is the maximum of its voxels' labels:
neutrino beats cosmic beats background. Output layout is channels last: ``[H, W, P]``.

A voxel id is a flat C-order index over ``number_of_voxels = (N0, N1)`` = (wires, ticks), so
``x = id // N1`` (wire) and ``y = id % N1`` (time tick).
"""
import numpy as np


def coarse_shape(number_of_voxels, downsample):
    """Return (height, width) of a plane after downsampling by ``2**downsample``."""
    wires, ticks = number_of_voxels
    if downsample < 0 or ticks % 2 ** downsample or wires % 2 ** downsample:
        raise ValueError(f"downsample={downsample} is not valid for {ticks} x {wires} planes: "
                         f"2**downsample must divide both sides")
    scale = 2 ** downsample
    return ticks // scale, wires // scale


def densify_numpy(plane_index, ids, charge, labels, number_of_voxels, num_planes, downsample):
    """Return ``(image float32 [H, W, P], labels int32 [H, W, P])`` for one event."""
    height, width = coarse_shape(number_of_voxels, downsample)
    ticks = number_of_voxels[1]
    cell = _coarse_cell_numpy(plane_index, ids, ticks, width, num_planes, downsample)
    size = height * width * num_planes

    area = float(4 ** downsample)
    image = np.bincount(cell, weights=charge, minlength=size) / area
    label_image = np.zeros(size, np.int32)
    np.maximum.at(label_image, cell, np.maximum(labels, 0).astype(np.int32))

    shape = (height, width, num_planes)
    return image.astype(np.float32).reshape(shape), label_image.reshape(shape)


def _coarse_cell_numpy(plane_index, ids, ticks, width, num_planes, downsample):
    ids = ids.astype(np.int64)
    y = (ids % ticks) >> downsample
    x = (ids // ticks) >> downsample
    return (y * width + x) * num_planes + plane_index.astype(np.int64)


def densify_tf(plane_index, ids, charge, labels, number_of_voxels, num_planes, downsample):
    """TensorFlow twin of :func:`densify_numpy`, for use inside tf.data map functions."""
    import tensorflow as tf  # Imported here so that NumPy-only readers never load TensorFlow.

    height, width = coarse_shape(number_of_voxels, downsample)
    ticks = number_of_voxels[1]
    ids = tf.cast(ids, tf.int64)
    y = tf.bitwise.right_shift(ids % ticks, downsample)
    x = tf.bitwise.right_shift(ids // ticks, downsample)
    cell = (y * width + x) * num_planes + tf.cast(plane_index, tf.int64)
    size = height * width * num_planes

    image = tf.math.unsorted_segment_sum(charge, cell, size) / float(4 ** downsample)
    # unsorted_segment_max fills empty cells with the lowest int32; they are background.
    label_image = tf.maximum(tf.math.unsorted_segment_max(labels, cell, size), 0)

    shape = (height, width, num_planes)
    return tf.reshape(image, shape), tf.reshape(label_image, shape)


def downsample_dense(images, labels, downsample):
    """Downsample dense ``[n, H, W, P]`` arrays: block mean for charge, block max for labels."""
    if downsample == 0:
        return images, labels
    scale = 2 ** downsample
    n, height, width, planes = images.shape
    blocks = (n, height // scale, scale, width // scale, scale, planes)
    return (images.reshape(blocks).mean(axis=(2, 4), dtype=np.float64).astype(np.float32),
            labels.reshape(blocks).max(axis=(2, 4)))
