"""Tests of the segmentation loss and the weight-decay term against NumPy values."""
import numpy as np
import pytest
import tensorflow as tf

from cosmictagger_tf.training.losses import (BALANCE_SCHEMES, class_slice_cross_entropy,
                                             segmentation_loss, weight_decay_term)

NUM_CLASSES = 3
LIGHT_WEIGHTS = np.array([1.0, 1.5, 10.0])


def make_labels():
    """Return labels [2, 2, 3, 3]: planes 0 and 1 hold all classes in different counts, plane 2
    holds only background."""
    labels = np.zeros((2, 2, 3, 3), dtype=np.int32)
    # Plane 0: 4 cosmic, 1 neutrino, 7 background.
    labels[0, :, :, 0] = [[1, 1, 0], [2, 0, 0]]
    labels[1, :, :, 0] = [[1, 1, 0], [0, 0, 0]]
    # Plane 1: 1 cosmic, 6 neutrino, 5 background.
    labels[0, :, :, 1] = [[2, 2, 2], [0, 1, 0]]
    labels[1, :, :, 1] = [[2, 2, 2], [0, 0, 0]]
    return labels


def make_logits(seed=3, shape=(2, 2, 3, NUM_CLASSES), planes=3):
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=2.0, size=shape).astype(np.float32) for _ in range(planes)]


def numpy_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def numpy_pixel_weights(labels, probabilities, scheme, count_labels=None):
    """Return the weight of every pixel. The even scheme counts classes in count_labels."""
    p_true = np.take_along_axis(probabilities, labels[..., None], axis=-1)[..., 0]
    if scheme == "none":
        return np.ones(labels.shape)
    if scheme == "focal":
        return (1.0 - p_true) ** 2
    if scheme == "light":
        return LIGHT_WEIGHTS[labels]

    if count_labels is None:
        count_labels = labels
    counts = np.array([np.sum(count_labels == c) for c in range(NUM_CLASSES)], dtype=np.float64)
    class_weights = (1.0 / 3.0) / (counts + 1.0)
    return class_weights[labels]


def numpy_plane_loss(labels, logits, scheme, count_labels=None):
    probabilities = numpy_softmax(logits.astype(np.float64))
    p_true = np.take_along_axis(probabilities, labels[..., None], axis=-1)[..., 0]
    cross_entropy = -np.log(p_true)
    weights = numpy_pixel_weights(labels, probabilities, scheme, count_labels)
    return np.sum(weights * cross_entropy) / np.sum(weights)


@pytest.mark.parametrize("scheme", BALANCE_SCHEMES)
def test_loss_matches_numpy(scheme):
    labels = make_labels()
    logits = make_logits()

    total, per_plane = segmentation_loss(tf.constant(labels), logits, scheme)

    expected = [numpy_plane_loss(labels[..., p], logits[p], scheme) for p in range(3)]
    assert per_plane.dtype == tf.float32
    assert per_plane.shape == (3,)
    np.testing.assert_allclose(per_plane.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(total.numpy(), sum(expected), rtol=1e-5)


def test_loss_none_is_plain_mean():
    labels = make_labels()
    logits = make_logits()
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels[..., 1], logits[1])

    _, per_plane = segmentation_loss(tf.constant(labels), logits, "none")

    np.testing.assert_allclose(per_plane[1].numpy(), tf.reduce_mean(cross_entropy).numpy(),
                               rtol=1e-6)


def test_loss_even_uses_own_plane_counts():
    labels = make_labels()
    logits = make_logits()

    _, per_plane = segmentation_loss(tf.constant(labels), logits, "even")

    for plane, other_plane in ((0, 1), (1, 0)):
        own = numpy_plane_loss(labels[..., plane], logits[plane], "even")
        other = numpy_plane_loss(labels[..., plane], logits[plane], "even",
                                 count_labels=labels[..., other_plane])
        # The example only tests the plane choice if the two counts give different losses.
        assert abs(own - other) > 1e-2
        np.testing.assert_allclose(per_plane[plane].numpy(), own, rtol=1e-5)


def test_loss_even_hand_weights():
    # One event, one plane of 4 pixels: 2 background, 1 cosmic, 1 neutrino, all logits 0.
    labels = np.array([[[[0], [0], [1], [2]]]], dtype=np.int32)
    logits = [np.zeros((1, 1, 4, NUM_CLASSES), np.float32)]
    # Class weights (1/3)/(count+1) are 1/9, 1/6 and 1/6. Every pixel has CE = log 3.
    weights = np.array([1 / 9, 1 / 9, 1 / 6, 1 / 6])
    expected = np.sum(weights * np.log(3.0)) / np.sum(weights)

    total, _ = segmentation_loss(tf.constant(labels), logits, "even")

    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-6)


def test_loss_light_hand_weights():
    # One event, one plane: a background pixel with logits (0, 0, 0), so CE = log 3, and a
    # neutrino pixel with logits (0, 0, log 2), so p_true = 2 / 4 and CE = log 2.
    labels = np.array([[[[0], [2]]]], dtype=np.int32)
    logits = [np.array([[[[0.0, 0.0, 0.0], [0.0, 0.0, np.log(2.0)]]]], np.float32)]
    expected = (1.0 * np.log(3.0) + 10.0 * np.log(2.0)) / (1.0 + 10.0)

    total, _ = segmentation_loss(tf.constant(labels), logits, "light")

    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-6)


def test_focal_weight_has_no_gradient():
    labels = make_labels()
    logits = [tf.Variable(plane_logits) for plane_logits in make_logits()]

    with tf.GradientTape() as tape:
        total, _ = segmentation_loss(tf.constant(labels), logits, "focal")
    gradients = tape.gradient(total, logits)

    for plane in range(3):
        plane_labels = labels[..., plane]
        probabilities = numpy_softmax(logits[plane].numpy().astype(np.float64))
        weights = numpy_pixel_weights(plane_labels, probabilities, "focal")
        one_hot = np.eye(NUM_CLASSES)[plane_labels]
        # d/dz of sum(w * CE) / sum(w) with w constant: w * (softmax - one_hot) / sum(w).
        expected = weights[..., None] * (probabilities - one_hot) / np.sum(weights)
        np.testing.assert_allclose(gradients[plane].numpy(), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("scheme", BALANCE_SCHEMES)
def test_loss_all_background_finite(scheme):
    labels = tf.zeros((2, 2, 3, 3), tf.int32)
    logits = [tf.Variable(plane_logits) for plane_logits in make_logits()]

    with tf.GradientTape() as tape:
        total, per_plane = segmentation_loss(labels, logits, scheme)
    gradients = tape.gradient(total, logits)

    assert np.all(np.isfinite(per_plane.numpy()))
    assert np.isfinite(total.numpy())
    for gradient in gradients:
        assert np.all(np.isfinite(gradient.numpy()))


@pytest.mark.parametrize("scheme", BALANCE_SCHEMES)
def test_loss_certain_prediction_finite(scheme):
    # Background predicted with a margin of 200: p_true rounds to 1, so focal weights are all 0.
    labels = tf.zeros((1, 2, 2, 3), tf.int32)
    certain = np.zeros((1, 2, 2, NUM_CLASSES), np.float32)
    certain[..., 0] = 200.0
    logits = [tf.Variable(certain) for _ in range(3)]

    with tf.GradientTape() as tape:
        total, _ = segmentation_loss(labels, logits, scheme)
    gradients = tape.gradient(total, logits)

    assert total.numpy() == pytest.approx(0.0, abs=1e-6)
    for gradient in gradients:
        assert np.all(np.isfinite(gradient.numpy()))


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_loss_low_precision_logits(dtype):
    labels = make_labels()
    logits = make_logits()
    low_precision = [tf.cast(plane_logits, dtype) for plane_logits in logits]
    # Compare with the float32 loss of the same rounded logits.
    rounded = [tf.cast(plane_logits, tf.float32) for plane_logits in low_precision]

    total, per_plane = segmentation_loss(tf.constant(labels), low_precision, "focal")
    expected_total, _ = segmentation_loss(tf.constant(labels), rounded, "focal")

    assert total.dtype == tf.float32
    assert per_plane.dtype == tf.float32
    np.testing.assert_allclose(total.numpy(), expected_total.numpy(), rtol=1e-6)


@pytest.mark.parametrize("scheme", BALANCE_SCHEMES)
def test_loss_inside_tf_function(scheme):
    labels = tf.constant(make_labels())
    logits = [tf.constant(plane_logits) for plane_logits in make_logits()]
    compiled = tf.function(segmentation_loss, autograph=False)

    total, per_plane = compiled(labels, logits, scheme)
    eager_total, eager_per_plane = segmentation_loss(labels, logits, scheme)

    np.testing.assert_allclose(total.numpy(), eager_total.numpy(), rtol=1e-6)
    np.testing.assert_allclose(per_plane.numpy(), eager_per_plane.numpy(), rtol=1e-6)


def test_loss_unknown_scheme_raises():
    with pytest.raises(ValueError, match="none, light, even, focal"):
        segmentation_loss(tf.constant(make_labels()), make_logits(), "balanced")


def test_loss_plane_count_mismatch_raises():
    with pytest.raises(ValueError, match="3 planes and 2 logit tensors"):
        segmentation_loss(tf.constant(make_labels()), make_logits(planes=2), "none")


def numpy_weight_decay(kernels, coefficient):
    sum_squares = sum(np.sum(np.square(kernel.astype(np.float64))) for kernel in kernels)
    return coefficient * np.sqrt(coefficient * sum_squares)


def test_weight_decay_matches_numpy():
    rng = np.random.default_rng(5)
    kernels = [rng.normal(size=(3, 3, 1, 4)).astype(np.float32),
               rng.normal(size=(1, 1, 4, 8)).astype(np.float32)]

    term = weight_decay_term([tf.Variable(kernel) for kernel in kernels], 0.1)

    assert term.dtype == tf.float32
    np.testing.assert_allclose(term.numpy(), numpy_weight_decay(kernels, 0.1), rtol=1e-6)


def test_weight_decay_gradient_matches_numpy():
    rng = np.random.default_rng(6)
    kernel = tf.Variable(rng.normal(size=(3, 3, 2, 2)).astype(np.float32))
    coefficient = 0.1

    with tf.GradientTape() as tape:
        term = weight_decay_term([kernel], coefficient)
    gradient = tape.gradient(term, kernel)

    values = kernel.numpy().astype(np.float64)
    # d/dw of wd * sqrt(wd * S) = wd * wd * w / sqrt(wd * S).
    expected = coefficient ** 2 * values / np.sqrt(coefficient * np.sum(values ** 2))
    np.testing.assert_allclose(gradient.numpy(), expected, rtol=1e-5)


def test_weight_decay_zero_kernels_finite():
    kernels = [tf.Variable(tf.zeros((3, 3, 1, 4))), tf.Variable(tf.zeros((1, 1, 4, 4)))]

    with tf.GradientTape() as tape:
        term = weight_decay_term(kernels, 0.1)
    gradients = tape.gradient(term, kernels)

    assert term.numpy() == 0.0
    for gradient in gradients:
        assert np.all(np.isfinite(gradient.numpy()))


def test_weight_decay_zero_coefficient():
    kernel = tf.Variable(tf.ones((3, 3, 1, 4)))

    assert weight_decay_term([kernel], 0.0).numpy() == 0.0


def test_weight_decay_no_kernels():
    term = weight_decay_term([], 0.1)

    assert term.dtype == tf.float32
    assert term.numpy() == 0.0


def test_slice_cross_entropy_matches_kernel():
    rng = np.random.default_rng(7)
    labels = tf.constant(rng.integers(0, NUM_CLASSES, size=(2, 8, 16)), tf.int32)
    logits = tf.constant(rng.normal(scale=30.0, size=(2, 8, 16, NUM_CLASSES)), tf.float32)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        ours = class_slice_cross_entropy(labels, logits)
        reference = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        weighted_ours = tf.reduce_sum(ours * tf.range(16, dtype=tf.float32))
        weighted_reference = tf.reduce_sum(reference * tf.range(16, dtype=tf.float32))

    np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(weighted_ours, logits).numpy(),
                               tape.gradient(weighted_reference, logits).numpy(), atol=1e-5)
