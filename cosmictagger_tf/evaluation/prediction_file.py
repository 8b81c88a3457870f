"""Evaluate a prediction file written by ``cosmictagger_tf.infer`` against a labelled input file.

The two files must have the same entries with the same event ids, and the prediction producer
the same voxel ids as the input's image producer, plane by plane.
"""
import numpy as np

from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.data.larcv3_reader import Larcv3File, Larcv3FormatError
from cosmictagger_tf.evaluation.metrics import EvaluationAccumulator
from cosmictagger_tf.inference.output_file import CLASS_PRODUCER


def evaluate_prediction_file(data_file, predictions_file,
                             image_producer=fmt.DEFAULT_IMAGE_PRODUCER,
                             label_producer=fmt.DEFAULT_LABEL_PRODUCER,
                             class_producer=CLASS_PRODUCER):
    """Return the summary of EvaluationAccumulator over every entry of the two files."""
    data = Larcv3File(data_file, image_producer, label_producer)
    predictions = Larcv3File(predictions_file, class_producer, None)
    try:
        _check_same_events(data, predictions)
        accumulator = EvaluationAccumulator(data.num_planes)
        event_ids = data.event_ids()
        for entry in range(data.num_entries):
            labels, classes = _read_entry(data, predictions, class_producer, entry)
            accumulator.add_event(entry, event_ids[entry], labels, classes)
    finally:
        data.close()
        predictions.close()
    return accumulator.summary()


def _check_same_events(data, predictions):
    if data.num_entries != predictions.num_entries:
        raise Larcv3FormatError(
            f"{predictions.path}: {predictions.num_entries} entries, but {data.path} has "
            f"{data.num_entries}; evaluate a prediction file against the file it was made from")
    data_ids, prediction_ids = data.event_ids(), predictions.event_ids()
    differ = np.flatnonzero(data_ids != prediction_ids)
    if len(differ):
        entry = int(differ[0])
        raise Larcv3FormatError(
            f"{predictions.path}: entry {entry} has event id {tuple(prediction_ids[entry])} but "
            f"{data.path} has {tuple(data_ids[entry])}; the files hold different events")


def _read_entry(data, predictions, class_producer, entry):
    """Return per-plane lists of true labels and predicted classes on the same voxels."""
    plane_index, ids, _, labels = data.read_entry_sparse(entry)
    prediction_planes = predictions.read_sparse(entry, class_producer)
    label_planes, class_planes = [], []
    for plane, (prediction_ids, values) in enumerate(prediction_planes):
        on_plane = plane_index == plane
        if not np.array_equal(ids[on_plane], prediction_ids.astype(np.int64)):
            raise Larcv3FormatError(
                f"{predictions.path}: entry {entry}, plane {plane}: producer {class_producer!r} "
                f"voxel ids differ from the image voxel ids of {data.path}; the predictions were "
                f"made from another file or another --image_producer")
        invalid = (values != np.round(values)) | (values < 0) | (values >= fmt.NUM_CLASSES)
        if np.any(invalid):
            raise Larcv3FormatError(
                f"{predictions.path}: entry {entry}, plane {plane}: producer {class_producer!r} "
                f"has class value {values[invalid][0]!r}; classes must be 0, 1 or 2")
        label_planes.append(labels[on_plane])
        class_planes.append(values.astype(np.int32))
    return label_planes, class_planes
