"""Map class scores on the training-resolution grid back to the voxels of the input file.

A training resolution of ``downsample = d`` shrinks each axis by ``2**d``, so every coarse cell
covers a block of ``2**d x 2**d`` input pixels. Each input voxel takes the scores of the coarse
cell that contains it (nearest-neighbour upsampling), and its predicted class is the argmax of
those scores. Voxel ids follow the larcv3 layout: ``id = wire * ticks + tick``.
"""
import numpy as np


def coarse_cells(ids, ticks, downsample):
    """Return ``(y, x)`` indices in the coarse grid of voxels with flat ``ids``."""
    ids = np.asarray(ids, dtype=np.int64)
    y = (ids % ticks) >> downsample
    x = (ids // ticks) >> downsample
    return y, x


def voxel_scores(ids, plane_scores, ticks, downsample):
    """Return float32 scores ``[N, C]`` of the voxels ``ids`` of one plane.

    ``plane_scores`` is ``[H, W, C]`` at the training resolution; ``ticks`` is the plane's height
    at full resolution.
    """
    y, x = coarse_cells(ids, ticks, downsample)
    return np.asarray(plane_scores, dtype=np.float32)[y, x]


def predicted_class(scores):
    """Return the int32 class of highest score, per row of ``scores [N, C]``."""
    return np.argmax(scores, axis=-1).astype(np.int32)
