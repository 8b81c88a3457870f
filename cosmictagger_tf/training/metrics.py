"""Segmentation metrics of CosmicTagger, per wire plane and averaged over planes.

The module has two implementations of the same definitions. The TensorFlow one serves the
training step (tf.function safe, float32 tensors), and the NumPy one serves inference code that
keeps predicted class ids as arrays.

Definitions, for each plane of a minibatch:
    accuracy          Fraction of all pixels whose predicted class equals the label.
    non_bkg_accuracy  The same over pixels whose label is not background, 1.0 when there are none.
    cosmic_iou        |pred=1 and label=1| / |pred=1 or label=1| per image (event), 1.0 when the
                      union is empty, then averaged over the minibatch.
    neutrino_iou      The same for class 2.
    miou              Mean of cosmic_iou and neutrino_iou.
Keys without a prefix average each metric over planes, and ``plane{p}/{metric}`` keys are the
values of plane p.
"""
import numpy as np
import tensorflow as tf

from cosmictagger_tf.data.larcv3_format import BACKGROUND, COSMIC, NEUTRINO, NUM_CLASSES

PLANE_METRICS = ("accuracy", "non_bkg_accuracy", "cosmic_iou", "neutrino_iou", "miou")


def metric_names(num_planes=3):
    """Return every metric key in a fixed order: plane averages first, then plane by plane.

    The trainer stacks the values in this order so that one allreduce averages all of them.
    """
    names = list(PLANE_METRICS)
    for plane in range(num_planes):
        names.extend(f"plane{plane}/{metric}" for metric in PLANE_METRICS)
    return names


def segmentation_metrics(labels, logits):
    """Compute the metrics of a minibatch in TensorFlow.

    Args:
        labels: integer tensor [B, H, W, P] of class ids, one channel per plane.
        logits: list of P tensors [B, H, W, C]. The prediction is their argmax over classes.

    Returns:
        Dict from every key of metric_names(P) to a float32 scalar tensor.
    """
    label_planes = labels.shape[-1]
    if label_planes is not None and label_planes != len(logits):
        raise ValueError("expected one logit tensor per plane, but labels have "
                         f"{label_planes} planes and {len(logits)} logit tensors were given")
    labels = tf.cast(labels, tf.int32)

    per_plane = []
    for plane, plane_logits in enumerate(logits):
        predictions = predicted_classes(plane_logits)
        per_plane.append(_plane_metrics_tf(labels[..., plane], predictions))

    return _with_plane_averages(per_plane, average=lambda values: tf.reduce_mean(tf.stack(values)))


def predicted_classes(logits):
    """Return the int32 argmax over the last axis, the first class on ties.

    Equal to ``tf.argmax`` for finite logits, but computed with one comparison per class over
    whole class slices, which is faster on CPUs when there are only a few classes.
    """
    classes = tf.unstack(logits, axis=-1)
    best_class = tf.zeros_like(classes[0], dtype=tf.int32)
    best_logit = classes[0]
    for class_id, logit in enumerate(classes[1:], start=1):
        better = logit > best_logit
        best_class = tf.where(better, class_id, best_class)
        best_logit = tf.maximum(best_logit, logit)
    return best_class


def segmentation_metrics_numpy(labels, predictions):
    """Compute the same metrics as segmentation_metrics from predicted class ids, in NumPy.

    Args:
        labels: integer array [B, H, W, P] of class ids.
        predictions: integer array [B, H, W, P] of predicted class ids.

    Returns:
        Dict from every key of metric_names(P) to a Python float.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError("labels and predictions must have the same shape [B, H, W, P], got "
                         f"{labels.shape} and {predictions.shape}")

    per_plane = []
    for plane in range(labels.shape[-1]):
        per_plane.append(_plane_metrics_numpy(labels[..., plane], predictions[..., plane]))

    return _with_plane_averages(per_plane, average=lambda values: float(np.mean(values)))


def _with_plane_averages(per_plane, average):
    metrics = {}
    for metric in PLANE_METRICS:
        metrics[metric] = average([plane_metrics[metric] for plane_metrics in per_plane])

    for plane, plane_metrics in enumerate(per_plane):
        for metric in PLANE_METRICS:
            metrics[f"plane{plane}/{metric}"] = plane_metrics[metric]
    return metrics


def _plane_metrics_tf(labels, predictions):
    """Return the metrics of one plane from int32 labels and predictions [B, H, W].

    Every metric derives from the per-event confusion matrix, which one counting pass over the
    pixels fills. Separate comparisons and sums per metric would each read the whole plane.
    """
    confusion = _event_confusion_tf(labels, predictions)
    correct = tf.linalg.diag_part(confusion)
    accuracy = tf.reduce_sum(correct) / tf.reduce_sum(confusion)

    # A plane without charged pixels has nothing to get wrong, so its score is 1.0.
    charged_count = tf.reduce_sum(confusion[:, BACKGROUND + 1:, :])
    charged_correct = tf.reduce_sum(correct[:, BACKGROUND + 1:])
    non_bkg_accuracy = tf.where(charged_count > 0,
                                tf.math.divide_no_nan(charged_correct, charged_count), 1.0)

    cosmic_iou = _mean_event_iou_tf(confusion, COSMIC)
    neutrino_iou = _mean_event_iou_tf(confusion, NEUTRINO)
    return {
        "accuracy": accuracy,
        "non_bkg_accuracy": non_bkg_accuracy,
        "cosmic_iou": cosmic_iou,
        "neutrino_iou": neutrino_iou,
        "miou": 0.5 * (cosmic_iou + neutrino_iou),
    }


def _event_confusion_tf(labels, predictions):
    """Count pixels per event, label and prediction: float32 [B, C, C], rows are labels."""
    batch = tf.shape(labels)[0]
    cells = NUM_CLASSES * NUM_CLASSES
    event_offset = tf.reshape(tf.range(batch) * cells, [-1, 1, 1])
    index = tf.reshape(labels * NUM_CLASSES + predictions + event_offset, [-1])
    counts = tf.math.bincount(index, minlength=batch * cells, maxlength=batch * cells,
                              dtype=tf.float32)
    return tf.reshape(counts, [batch, NUM_CLASSES, NUM_CLASSES])


def _mean_event_iou_tf(confusion, class_id):
    intersection = confusion[:, class_id, class_id]
    union = (tf.reduce_sum(confusion[:, class_id, :], axis=1)
             + tf.reduce_sum(confusion[:, :, class_id], axis=1) - intersection)
    event_iou = tf.where(union > 0, tf.math.divide_no_nan(intersection, union), 1.0)
    return tf.reduce_mean(event_iou)


def _plane_metrics_numpy(labels, predictions):
    """Return the metrics of one plane from integer label and prediction arrays [B, H, W]."""
    correct = labels == predictions
    charged = labels != BACKGROUND
    charged_count = np.count_nonzero(charged)

    accuracy = float(np.mean(correct))
    if charged_count > 0:
        non_bkg_accuracy = np.count_nonzero(correct & charged) / charged_count
    else:
        non_bkg_accuracy = 1.0

    cosmic_iou = _mean_event_iou_numpy(labels, predictions, COSMIC)
    neutrino_iou = _mean_event_iou_numpy(labels, predictions, NEUTRINO)
    return {
        "accuracy": accuracy,
        "non_bkg_accuracy": float(non_bkg_accuracy),
        "cosmic_iou": cosmic_iou,
        "neutrino_iou": neutrino_iou,
        "miou": 0.5 * (cosmic_iou + neutrino_iou),
    }


def _mean_event_iou_numpy(labels, predictions, class_id):
    is_label = labels == class_id
    is_predicted = predictions == class_id

    pixel_axes = (1, 2)
    intersection = np.count_nonzero(is_label & is_predicted, axis=pixel_axes)
    union = np.count_nonzero(is_label | is_predicted, axis=pixel_axes)

    empty = union == 0
    event_iou = np.where(empty, 1.0, intersection / np.where(empty, 1, union))
    return float(np.mean(event_iou))
