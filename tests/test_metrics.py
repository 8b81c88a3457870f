"""Tests of the segmentation metrics on hand-made minibatches, in TensorFlow and NumPy."""
import numpy as np
import pytest
import tensorflow as tf

from cosmictagger_tf.training.metrics import (PLANE_METRICS, metric_names, predicted_classes,
                                              segmentation_metrics, segmentation_metrics_numpy)

NUM_CLASSES = 3


def logits_from_predictions(predictions):
    """Return per-plane logits [B, H, W, C] whose argmax is the given class ids [B, H, W, P]."""
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[predictions]
    return [tf.constant(5.0 * one_hot[..., plane, :]) for plane in range(predictions.shape[-1])]


def tf_metrics_as_floats(labels, predictions):
    metrics = segmentation_metrics(tf.constant(labels), logits_from_predictions(predictions))
    return {name: float(value) for name, value in metrics.items()}


def make_hand_case():
    """Return (labels, predictions, expected plane metrics) for B=2, H=2, W=3, P=3."""
    labels = np.zeros((2, 2, 3, 3), dtype=np.int32)
    predictions = np.zeros_like(labels)

    # Plane 0, event 0: cosmic labelled at 2 pixels, predicted at 2, overlapping at 1:
    # IoU 1/3. Event 1 is empty: IoU 1. Non-background: 1 of 2 pixels correct.
    labels[0, :, :, 0] = [[1, 1, 0], [0, 0, 0]]
    predictions[0, :, :, 0] = [[0, 1, 1], [0, 0, 0]]

    # Plane 1, event 0: neutrino labelled at 4 pixels, 3 of them predicted: IoU 3/4.
    # Event 1: one cosmic pixel, predicted right. Non-background: 4 of 5 pixels correct.
    labels[0, :, :, 1] = [[2, 2, 2], [2, 0, 0]]
    predictions[0, :, :, 1] = [[2, 2, 2], [0, 0, 0]]
    labels[1, :, :, 1] = [[0, 0, 0], [0, 0, 1]]
    predictions[1, :, :, 1] = [[0, 0, 0], [0, 0, 1]]

    # Plane 2: background only, predicted right.
    expected = [
        {"accuracy": 10 / 12, "non_bkg_accuracy": 1 / 2, "cosmic_iou": (1 / 3 + 1) / 2,
         "neutrino_iou": 1.0},
        {"accuracy": 11 / 12, "non_bkg_accuracy": 4 / 5, "cosmic_iou": 1.0,
         "neutrino_iou": (3 / 4 + 1) / 2},
        {"accuracy": 1.0, "non_bkg_accuracy": 1.0, "cosmic_iou": 1.0, "neutrino_iou": 1.0},
    ]
    for plane_metrics in expected:
        plane_metrics["miou"] = (plane_metrics["cosmic_iou"] + plane_metrics["neutrino_iou"]) / 2
    return labels, predictions, expected


def random_case(seed=11, shape=(3, 4, 5, 3)):
    rng = np.random.default_rng(seed)
    labels = rng.choice(NUM_CLASSES, size=shape, p=[0.7, 0.2, 0.1]).astype(np.int32)
    predictions = rng.choice(NUM_CLASSES, size=shape, p=[0.6, 0.3, 0.1]).astype(np.int32)
    return labels, predictions


def test_metric_names_order():
    names = metric_names(num_planes=2)

    assert names[:5] == ["accuracy", "non_bkg_accuracy", "cosmic_iou", "neutrino_iou", "miou"]
    assert names[5] == "plane0/accuracy"
    assert names[-1] == "plane1/miou"
    assert len(names) == 15


@pytest.mark.parametrize("implementation", ["tf", "numpy"])
def test_metrics_keys_match_names(implementation):
    labels, predictions = random_case()

    if implementation == "tf":
        metrics = tf_metrics_as_floats(labels, predictions)
    else:
        metrics = segmentation_metrics_numpy(labels, predictions)

    assert sorted(metrics) == sorted(metric_names(3))


@pytest.mark.parametrize("implementation", ["tf", "numpy"])
def test_metrics_perfect_prediction(implementation):
    labels, _ = random_case()

    if implementation == "tf":
        metrics = tf_metrics_as_floats(labels, labels)
    else:
        metrics = segmentation_metrics_numpy(labels, labels)

    for name in metric_names(3):
        assert metrics[name] == pytest.approx(1.0), name


@pytest.mark.parametrize("implementation", ["tf", "numpy"])
def test_metrics_hand_case_per_plane(implementation):
    labels, predictions, expected = make_hand_case()

    if implementation == "tf":
        metrics = tf_metrics_as_floats(labels, predictions)
    else:
        metrics = segmentation_metrics_numpy(labels, predictions)

    for plane, plane_expected in enumerate(expected):
        for metric, value in plane_expected.items():
            assert metrics[f"plane{plane}/{metric}"] == pytest.approx(value), (plane, metric)


@pytest.mark.parametrize("implementation", ["tf", "numpy"])
def test_metrics_hand_case_averages(implementation):
    labels, predictions, expected = make_hand_case()

    if implementation == "tf":
        metrics = tf_metrics_as_floats(labels, predictions)
    else:
        metrics = segmentation_metrics_numpy(labels, predictions)

    for metric in PLANE_METRICS:
        average = np.mean([plane_expected[metric] for plane_expected in expected])
        assert metrics[metric] == pytest.approx(average), metric


@pytest.mark.parametrize("implementation", ["tf", "numpy"])
def test_iou_one_third(implementation):
    # One event: cosmic labelled at pixels 0 and 1, predicted at pixels 1 and 2.
    labels = np.array([[[[1], [1], [0], [0]]]], dtype=np.int32)
    predictions = np.array([[[[0], [1], [1], [0]]]], dtype=np.int32)

    if implementation == "tf":
        metrics = tf_metrics_as_floats(labels, predictions)
    else:
        metrics = segmentation_metrics_numpy(labels, predictions)

    assert metrics["cosmic_iou"] == pytest.approx(1 / 3)
    assert metrics["neutrino_iou"] == pytest.approx(1.0)
    assert metrics["miou"] == pytest.approx((1 / 3 + 1) / 2)


@pytest.mark.parametrize("implementation", ["tf", "numpy"])
def test_iou_averaged_per_event(implementation):
    # Event 0 has cosmic IoU 1/3. Event 1 has no cosmic pixel at all, so its union is empty.
    # Pooling the pixels of both events would give 1/3, but the mean over events is 2/3.
    labels = np.array([[[[1], [1], [0]]], [[[0], [0], [0]]]], dtype=np.int32)
    predictions = np.array([[[[0], [1], [1]]], [[[0], [0], [0]]]], dtype=np.int32)

    if implementation == "tf":
        metrics = tf_metrics_as_floats(labels, predictions)
    else:
        metrics = segmentation_metrics_numpy(labels, predictions)

    assert metrics["cosmic_iou"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("implementation", ["tf", "numpy"])
def test_iou_empty_union_is_one(implementation):
    # Neutrino is neither labelled nor predicted. Cosmic is predicted nowhere it is labelled.
    labels = np.array([[[[1], [0]]]], dtype=np.int32)
    predictions = np.array([[[[0], [1]]]], dtype=np.int32)

    if implementation == "tf":
        metrics = tf_metrics_as_floats(labels, predictions)
    else:
        metrics = segmentation_metrics_numpy(labels, predictions)

    assert metrics["neutrino_iou"] == 1.0
    assert metrics["cosmic_iou"] == 0.0


@pytest.mark.parametrize("implementation", ["tf", "numpy"])
def test_non_bkg_accuracy_known_case(implementation):
    # Three of four charged pixels are predicted right. The wrong background pixel does not count.
    labels = np.array([[[[1], [1], [2], [2], [0], [0]]]], dtype=np.int32)
    predictions = np.array([[[[1], [2], [2], [2], [1], [0]]]], dtype=np.int32)

    if implementation == "tf":
        metrics = tf_metrics_as_floats(labels, predictions)
    else:
        metrics = segmentation_metrics_numpy(labels, predictions)

    assert metrics["non_bkg_accuracy"] == pytest.approx(3 / 4)
    assert metrics["accuracy"] == pytest.approx(4 / 6)


@pytest.mark.parametrize("implementation", ["tf", "numpy"])
def test_metrics_all_background_finite(implementation):
    labels = np.zeros((2, 2, 3, 3), dtype=np.int32)
    predictions = np.zeros_like(labels)
    predictions[0, 0, 0, :] = 2

    if implementation == "tf":
        metrics = tf_metrics_as_floats(labels, predictions)
    else:
        metrics = segmentation_metrics_numpy(labels, predictions)

    for name, value in metrics.items():
        assert np.isfinite(value), name
    assert metrics["non_bkg_accuracy"] == 1.0
    assert metrics["cosmic_iou"] == 1.0
    # Per plane, event 0 predicts one false neutrino pixel (IoU 0), event 1 is empty (IoU 1).
    assert metrics["neutrino_iou"] == pytest.approx(0.5)


def test_metrics_tf_matches_numpy():
    labels, predictions = random_case()

    tf_metrics = tf_metrics_as_floats(labels, predictions)
    numpy_metrics = segmentation_metrics_numpy(labels, predictions)

    for name in metric_names(3):
        assert tf_metrics[name] == pytest.approx(numpy_metrics[name], rel=1e-6), name


def test_metrics_inside_tf_function():
    labels, predictions = random_case()
    logits = logits_from_predictions(predictions)

    metrics = tf.function(segmentation_metrics)(tf.constant(labels), logits)
    numpy_metrics = segmentation_metrics_numpy(labels, predictions)

    for name in metric_names(3):
        assert metrics[name].dtype == tf.float32, name
        assert float(metrics[name]) == pytest.approx(numpy_metrics[name], rel=1e-6), name


def test_metrics_numpy_shape_mismatch_raises():
    labels = np.zeros((1, 2, 2, 3), dtype=np.int32)

    with pytest.raises(ValueError, match="same shape"):
        segmentation_metrics_numpy(labels, labels[..., :2])


def test_predicted_classes_equal_argmax_with_ties():
    rng = np.random.default_rng(5)
    # Rounded logits make ties common; argmax keeps the first of the tied classes.
    logits = tf.constant(np.round(rng.normal(size=(2, 16, 16, 3))), tf.float32)

    ours = predicted_classes(logits).numpy()

    np.testing.assert_array_equal(ours, tf.argmax(logits, axis=-1).numpy())
    assert ours.dtype == np.int32
    assert (logits.numpy()[..., 0] == logits.numpy()[..., 1]).sum() > 10
