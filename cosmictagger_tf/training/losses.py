"""Segmentation loss of CosmicTagger: class-balanced softmax cross-entropy per wire plane.

Background fills about 99 % of every plane, so the per-pixel cross-entropy is weighted before it is
averaged. The module also computes the reference weight-decay term, which the trainer adds on top.
"""
import functools

import tensorflow as tf

BALANCE_SCHEMES = ("none", "light", "even", "focal")

# Per-class weights of the "light" scheme: background, cosmic, neutrino.
LIGHT_CLASS_WEIGHTS = (1.0, 1.5, 10.0)


def segmentation_loss(labels, logits, scheme="focal"):
    """Compute the weighted cross-entropy of every plane and their sum.

    Args:
        labels: integer tensor [B, H, W, P] of class ids, one channel per plane.
        logits: list of P tensors [B, H, W, C], any float dtype, cast to float32 before use.
        scheme: one of BALANCE_SCHEMES.

    Returns:
        (total, per_plane): the float32 scalar sum over planes and the float32 [P] plane losses.
        Each plane loss is sum(w * CE) / sum(w) over all pixels of the minibatch.
    """
    _check_scheme(scheme)
    _check_plane_count(labels, logits)
    labels = tf.cast(labels, tf.int32)

    plane_losses = []
    for plane, plane_logits in enumerate(logits):
        plane_labels = labels[..., plane]
        plane_logits = tf.cast(plane_logits, tf.float32)
        plane_losses.append(_plane_loss(plane_labels, plane_logits, scheme))

    per_plane = tf.stack(plane_losses)
    return tf.reduce_sum(per_plane), per_plane


def weight_decay_term(kernels, coefficient):
    """Compute the reference weight-decay term wd * sqrt(wd * sum(w^2)).

    The sum runs over every element of every given kernel, and one square root is taken of the
    total. The reference computes the same value as the square root of its summed Keras L2
    regulariser losses. Returns a float32 scalar, 0 when the coefficient is 0 or the list is
    empty. At all-zero kernels the value and the gradient are 0.
    """
    if coefficient == 0 or not kernels:
        return tf.constant(0.0, tf.float32)

    squares = [tf.reduce_sum(tf.square(tf.cast(kernel, tf.float32))) for kernel in kernels]
    scaled_sum = coefficient * tf.add_n(squares)

    # d sqrt(x)/dx is infinite at 0, and inf * 0 gives a NaN gradient. Feeding sqrt a dummy 1
    # there keeps both branches of tf.where finite.
    is_positive = scaled_sum > 0
    safe_sum = tf.where(is_positive, scaled_sum, tf.ones_like(scaled_sum))
    norm = tf.where(is_positive, tf.sqrt(safe_sum), tf.zeros_like(scaled_sum))
    return coefficient * norm


def _check_scheme(scheme):
    if scheme not in BALANCE_SCHEMES:
        raise ValueError(f"unknown loss balance scheme {scheme!r}, "
                         f"expected one of: {', '.join(BALANCE_SCHEMES)}")


def _check_plane_count(labels, logits):
    label_planes = labels.shape[-1]
    if label_planes is not None and label_planes != len(logits):
        raise ValueError("expected one logit tensor per plane, but labels have "
                         f"{label_planes} planes and {len(logits)} logit tensors were given")


def _plane_loss(labels, logits, scheme):
    cross_entropy = class_slice_cross_entropy(labels, logits)
    weights = tf.stop_gradient(_pixel_weights(labels, logits, cross_entropy, scheme))

    # Focal weights can all round to 0 when every pixel is predicted with certainty. The loss is
    # then 0, not 0/0.
    return tf.math.divide_no_nan(tf.reduce_sum(weights * cross_entropy), tf.reduce_sum(weights))


def class_slice_cross_entropy(labels, logits):
    """Return the per-pixel softmax cross-entropy, computed one class slice at a time.

    Equal to ``tf.nn.sparse_softmax_cross_entropy_with_logits`` for labels in range. With only
    three classes on the last axis, TensorFlow's fused kernel handles each pixel as a tiny row
    and takes several times longer on CPUs than these few passes over whole class slices, whose
    gradient is plain element-wise work too. Labels are not range-checked here: the reader
    rejects files with class ids outside the classes.
    """
    classes = tf.unstack(logits, axis=-1)
    top = tf.stop_gradient(functools.reduce(tf.maximum, classes))
    log_sum = top + tf.math.log(tf.add_n([tf.exp(logit - top) for logit in classes]))

    true_logit = classes[-1]
    for class_id in reversed(range(len(classes) - 1)):
        true_logit = tf.where(labels == class_id, classes[class_id], true_logit)
    return log_sum - true_logit


def _pixel_weights(labels, logits, cross_entropy, scheme):
    if scheme == "none":
        return tf.ones_like(cross_entropy)

    if scheme == "focal":
        # CE = -log p_true, so exp(-CE) is the softmax probability of the true class.
        p_true = tf.exp(-cross_entropy)
        return tf.square(1.0 - p_true)

    if scheme == "light":
        class_weights = tf.constant(LIGHT_CLASS_WEIGHTS, tf.float32)
    else:
        class_weights = _even_class_weights(labels, num_classes=tf.shape(logits)[-1])
    return tf.gather(class_weights, labels)


def _even_class_weights(labels, num_classes):
    """Return (1 / num_classes) / (count_c + 1) per class, counted over this plane's minibatch."""
    counts = tf.math.bincount(tf.reshape(labels, [-1]), minlength=num_classes,
                              maxlength=num_classes, dtype=tf.float32)
    return (1.0 / tf.cast(num_classes, tf.float32)) / (counts + 1.0)
