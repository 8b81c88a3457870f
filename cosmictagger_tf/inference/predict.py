"""Batched prediction over the entries of a larcv3 file, event by event on the input voxels.

Entries are read as sparse voxels, densified and downsampled to the training resolution (block
mean of the charge, as in training), scored a minibatch at a time, and the scores mapped back to
each input voxel. Models run in inference mode (batch normalisation uses its moving statistics),
so an event's scores do not depend on the other events of its minibatch.
"""
import dataclasses
import math
from typing import List, Optional

import numpy as np

from cosmictagger_tf.config import ConfigError
from cosmictagger_tf.data.dense import densify_numpy
from cosmictagger_tf.inference import voxels


@dataclasses.dataclass
class PlanePrediction:
    """Scores of the charged voxels of one plane, with their labels when the file has them."""

    ids: np.ndarray                   # uint64 voxel ids, in the input's order
    scores: np.ndarray                # float32 [N, C] class scores
    labels: Optional[np.ndarray]      # int32 [N] true classes, or None

    @property
    def classes(self):
        return voxels.predicted_class(self.scores)


@dataclasses.dataclass
class EventPrediction:
    entry: int
    event_id: tuple                   # (run, subrun, event)
    planes: List[PlanePrediction]


def downsample_for(scoring, full_shape):
    """Return the downsampling that turns planes of ``full_shape`` into the model's input.

    Raises ConfigError when the file's planes do not shrink to the model's input size.
    """
    height, width = full_shape
    model_height, model_width = scoring.image_shape
    if scoring.downsample is not None:
        downsample = scoring.downsample
    else:
        downsample = int(round(math.log2(max(height / model_height, 1e-9))))
    scale = 2 ** downsample
    if (height, width) != (model_height * scale, model_width * scale):
        raise ConfigError(f"the model takes planes of {model_height} x {model_width} pixels, "
                          f"which no power-of-two downsampling of this file's {height} x {width} "
                          f"planes gives; use a model exported for this image size")
    return downsample


def predict_entries(larcv_file, scoring, downsample, entries=None, minibatch_size=2):
    """Yield an EventPrediction per entry of ``larcv_file``, in entry order.

    ``entries`` defaults to every entry; ``minibatch_size`` events are scored per model call.
    """
    entries = list(range(larcv_file.num_entries)) if entries is None else list(entries)
    event_ids = larcv_file.event_ids()
    has_labels = larcv_file.label_producer is not None

    for start in range(0, len(entries), minibatch_size):
        batch_entries = entries[start:start + minibatch_size]
        sparse_events = [larcv_file.read_entry_sparse(entry) for entry in batch_entries]
        images = np.stack([
            densify_numpy(*event, larcv_file.number_of_voxels, larcv_file.num_planes,
                          downsample)[0]
            for event in sparse_events])
        batch_scores = scoring.scores(images)

        for entry, event, event_scores in zip(batch_entries, sparse_events, batch_scores):
            planes = _plane_predictions(event, event_scores, larcv_file.image_shape[0],
                                        downsample, has_labels)
            yield EventPrediction(entry, tuple(int(v) for v in event_ids[entry]), planes)


def _plane_predictions(event, event_scores, ticks, downsample, has_labels):
    plane_index, ids, _, labels = event
    planes = []
    for plane in range(event_scores.shape[2]):
        on_plane = plane_index == plane
        plane_ids = ids[on_plane].astype(np.uint64)
        scores = voxels.voxel_scores(plane_ids, event_scores[:, :, plane], ticks, downsample)
        plane_labels = labels[on_plane].astype(np.int32) if has_labels else None
        planes.append(PlanePrediction(plane_ids, scores, plane_labels))
    return planes
