"""Metrics of a tagger on the charged voxels of a file: per plane, per event and over the file.

Every metric comes from a confusion matrix ``C[true, predicted]`` per event and plane, counted
over the charged voxels of the input (the voxels of the image producer) at full resolution.
Empty pixels have no voxel and take no part.

Definitions, per plane (0 background, 1 cosmic, 2 neutrino):
    accuracy             voxels predicted as their true class / all voxels
    non_bkg_accuracy     the same over voxels whose true class is cosmic or neutrino
    cosmic_iou           |true cosmic and predicted cosmic| / |true cosmic or predicted cosmic|
    neutrino_iou         the same for neutrino
    miou                 mean of cosmic_iou and neutrino_iou
    neutrino_efficiency  true-neutrino voxels predicted neutrino / true-neutrino voxels
    neutrino_purity      true-neutrino voxels predicted neutrino / voxels predicted neutrino
    cosmic_rejection     true-cosmic voxels not predicted neutrino / true-cosmic voxels

Empty denominators: an IoU whose union is empty (the class is neither present nor predicted) is
1.0, as in training. Every other ratio with an empty denominator is None (null in JSON): it is
undefined, not zero.

Over the file: accuracy, non_bkg_accuracy, efficiency, purity and rejection are computed from
voxel counts summed over all events, not as a mean of per-event ratios. The IoUs (and miou) are
the mean over events of the per-event IoU, as training computes them per minibatch.

Keys without a prefix are the mean over planes of the planes' values. None values are left out,
and the mean is None when no plane has a value. ``plane{p}/{metric}`` keys are the values of
plane p.

Training metrics differ: they count every pixel of the dense, downsampled image, empty pixels
included, so training accuracies are much higher than these voxel accuracies.
"""
import numpy as np

from cosmictagger_tf.data.larcv3_format import COSMIC, NEUTRINO, NUM_CLASSES

COUNT_METRICS = ("accuracy", "non_bkg_accuracy", "neutrino_efficiency", "neutrino_purity",
                 "cosmic_rejection")
IOU_METRICS = ("cosmic_iou", "neutrino_iou", "miou")
METRICS = ("accuracy", "non_bkg_accuracy", "cosmic_iou", "neutrino_iou", "miou",
           "neutrino_efficiency", "neutrino_purity", "cosmic_rejection")


def confusion_matrix(labels, predictions, num_classes=NUM_CLASSES):
    """Return int64 ``C[true, predicted]`` counts of one plane's voxels."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.shape[0]} labels but {predictions.shape[0]} predictions")
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes ** 2)
    return flat.reshape(num_classes, num_classes)


def ratio(numerator, denominator):
    """Return ``numerator / denominator`` as a float, or None when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else None


def class_iou(confusion, class_id):
    """Return the IoU of ``class_id``: 1.0 when the class is neither true nor predicted."""
    intersection = confusion[class_id, class_id]
    union = confusion[class_id, :].sum() + confusion[:, class_id].sum() - intersection
    return float(intersection) / float(union) if union else 1.0


def count_metrics(confusion):
    """Return the metrics that are ratios of voxel counts, from one confusion matrix."""
    true_neutrino = confusion[NEUTRINO, :].sum()
    predicted_neutrino = confusion[:, NEUTRINO].sum()
    true_cosmic = confusion[COSMIC, :].sum()
    return {
        "accuracy": ratio(np.trace(confusion), confusion.sum()),
        "non_bkg_accuracy": ratio(confusion[COSMIC, COSMIC] + confusion[NEUTRINO, NEUTRINO],
                                  true_cosmic + true_neutrino),
        "neutrino_efficiency": ratio(confusion[NEUTRINO, NEUTRINO], true_neutrino),
        "neutrino_purity": ratio(confusion[NEUTRINO, NEUTRINO], predicted_neutrino),
        "cosmic_rejection": ratio(true_cosmic - confusion[COSMIC, NEUTRINO], true_cosmic),
    }


def iou_metrics(confusion):
    cosmic_iou = class_iou(confusion, COSMIC)
    neutrino_iou = class_iou(confusion, NEUTRINO)
    return {"cosmic_iou": cosmic_iou, "neutrino_iou": neutrino_iou,
            "miou": 0.5 * (cosmic_iou + neutrino_iou)}


def plane_average(per_plane):
    """Return one dict: each metric's mean over planes, then the ``plane{p}/`` values."""
    summary = {}
    for metric in METRICS:
        values = [plane[metric] for plane in per_plane if plane[metric] is not None]
        summary[metric] = float(np.mean(values)) if values else None
    for plane, values in enumerate(per_plane):
        summary.update({f"plane{plane}/{metric}": values[metric] for metric in METRICS})
    return summary


class EvaluationAccumulator:
    """Collects confusion matrices event by event and summarises them per event and per file."""

    def __init__(self, num_planes=3):
        self.num_planes = num_planes
        self.total = np.zeros((num_planes, NUM_CLASSES, NUM_CLASSES), np.int64)
        self.event_ious = []
        self.events = []

    def add_event(self, entry, event_id, labels_per_plane, predictions_per_plane):
        """Add one event: per plane, the true and the predicted class of each charged voxel."""
        confusions = np.stack([confusion_matrix(labels, predictions) for labels, predictions
                               in zip(labels_per_plane, predictions_per_plane)])
        if len(confusions) != self.num_planes:
            raise ValueError(f"entry {entry}: {len(confusions)} planes, expected "
                             f"{self.num_planes}")
        self.total += confusions

        per_plane = [{**count_metrics(c), **iou_metrics(c)} for c in confusions]
        self.event_ious.append([iou_metrics(c) for c in confusions])
        self.events.append({"entry": int(entry), "event_id": [int(v) for v in event_id],
                            "num_voxels": int(confusions.sum()), **plane_average(per_plane)})

    def summary(self):
        """Return ``{"num_events", "num_voxels", "file", "confusion", "events"}``.

        ``file`` contains the metrics over the file; ``confusion`` the summed confusion matrix of
        each plane (rows true class, columns predicted class); ``events`` one row per event.
        """
        per_plane = []
        for plane in range(self.num_planes):
            values = count_metrics(self.total[plane])
            for metric in IOU_METRICS:
                event_values = [event[plane][metric] for event in self.event_ious]
                values[metric] = float(np.mean(event_values)) if event_values else None
            per_plane.append(values)

        return {
            "num_events": len(self.events),
            "num_voxels": int(self.total.sum()),
            "file": plane_average(per_plane),
            "confusion": {f"plane{plane}": self.total[plane].tolist()
                          for plane in range(self.num_planes)},
            "events": self.events,
        }


DEFINITIONS = {
    "accuracy": "voxels predicted as their true class / all charged voxels",
    "non_bkg_accuracy": "the same over voxels whose true class is cosmic or neutrino",
    "cosmic_iou": "|true and predicted cosmic| / |true or predicted cosmic|; 1.0 when the union "
                  "is empty; over the file, the mean over events",
    "neutrino_iou": "the same for neutrino",
    "miou": "mean of cosmic_iou and neutrino_iou",
    "neutrino_efficiency": "true-neutrino voxels predicted neutrino / true-neutrino voxels",
    "neutrino_purity": "true-neutrino voxels predicted neutrino / voxels predicted neutrino",
    "cosmic_rejection": "true-cosmic voxels not predicted neutrino / true-cosmic voxels",
    "conventions": "counted on the charged voxels of the input at full resolution; ratios of "
                   "counts use counts summed over the file's events and are null when their "
                   "denominator is empty; unprefixed keys average the planes' values",
}
