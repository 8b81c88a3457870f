"""Tests of the train and validation steps: every precision, accumulation, batch-norm mode."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import small_network
from cosmictagger_tf.config import OptimizerConfig
from cosmictagger_tf.distributed.runtime import SingleProcessRuntime
from cosmictagger_tf.model import build_uresnet
from cosmictagger_tf.training.trainer import Trainer

SHAPE = (32, 64)


def make_trainer(precision="float32", **optimizer_settings):
    tf.keras.utils.set_random_seed(0)
    model = build_uresnet(small_network(), SHAPE, precision=precision)
    config = OptimizerConfig(**optimizer_settings)
    return Trainer(model, tf.keras.optimizers.Adam(1e-3), SingleProcessRuntime(), config,
                   precision=precision)


def make_minibatch(seed=0, events=2):
    rng = np.random.default_rng(seed)
    charged = rng.random((events, *SHAPE, 3)) < 0.05
    images = np.where(charged, rng.uniform(5, 100, charged.shape), 0).astype(np.float32)
    labels = np.where(charged, rng.integers(0, 3, charged.shape), 0).astype(np.int32)
    return tf.constant(images), tf.constant(labels)


def weights_copy(model):
    return [w.numpy().copy() for w in model.trainable_weights]


def moving_means(model):
    return [w.numpy().copy() for w in model.non_trainable_weights if "moving_mean" in w.name]


@pytest.mark.parametrize("precision", ["float32", "mixed", "bfloat16"])
def test_train_step_each_precision(precision):
    trainer = make_trainer(precision)
    before = weights_copy(trainer.model)
    values = trainer.scalars_to_dict(trainer.train_step(*make_minibatch()))
    # float16 starts with a loss scale of 2**15; dynamic loss scaling skips the steps whose
    # gradients overflow and halves the scale until an update goes through.
    for _ in range(20 if precision == "mixed" else 0):
        if any(not np.array_equal(b, a) for b, a in zip(before, weights_copy(trainer.model))):
            break
        values = trainer.scalars_to_dict(trainer.train_step(*make_minibatch()))
    after = weights_copy(trainer.model)
    assert np.isfinite(values["loss"])
    assert values["loss"] > 0
    assert 0.0 <= values["miou"] <= 1.0
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))


def test_scalars_named_and_counted():
    trainer = make_trainer()
    stacked = trainer.train_step(*make_minibatch())
    assert stacked.shape == (len(trainer.scalar_names),)
    assert trainer.scalar_names[:5] == ["loss", "weight_decay", "plane0/loss", "plane1/loss",
                                       "plane2/loss"]
    assert "plane2/neutrino_iou" in trainer.scalar_names


def test_loss_is_sum_of_planes():
    trainer = make_trainer(weight_decay=0.0)
    values = trainer.scalars_to_dict(trainer.evaluate_step(*make_minibatch()))
    plane_sum = sum(values[f"plane{p}/loss"] for p in range(3))
    assert values["loss"] == pytest.approx(plane_sum, rel=1e-5)
    assert values["weight_decay"] == 0.0


def test_loss_falls_on_repeated_minibatch():
    trainer = make_trainer(loss_balance_scheme="light")
    minibatch = make_minibatch(seed=3)
    first = trainer.scalars_to_dict(trainer.train_step(*minibatch))["loss"]
    for _ in range(15):
        last = trainer.scalars_to_dict(trainer.train_step(*minibatch))["loss"]
    assert last < 0.9 * first


def test_training_updates_batch_norm_statistics():
    trainer = make_trainer()
    before = moving_means(trainer.model)
    trainer.train_step(*make_minibatch())
    after = moving_means(trainer.model)
    assert len(before) > 0
    assert all(not np.array_equal(b, a) for b, a in zip(before, after))


def test_evaluation_leaves_model_unchanged():
    trainer = make_trainer()
    weights = weights_copy(trainer.model)
    statistics = moving_means(trainer.model)
    trainer.evaluate_step(*make_minibatch())
    assert all(np.array_equal(b, a) for b, a in zip(weights, weights_copy(trainer.model)))
    assert all(np.array_equal(b, a) for b, a in zip(statistics, moving_means(trainer.model)))


def test_accumulation_updates_every_second_minibatch():
    trainer = make_trainer(gradient_accumulation=2)
    before = weights_copy(trainer.model)
    trainer.train_step(*make_minibatch(seed=1), apply_update=False)
    middle = weights_copy(trainer.model)
    trainer.train_step(*make_minibatch(seed=2), apply_update=True)
    after = weights_copy(trainer.model)
    assert all(np.array_equal(b, m) for b, m in zip(before, middle))
    assert any(not np.array_equal(m, a) for m, a in zip(middle, after))
    assert int(trainer.optimizer.iterations) == 1
    assert all(float(tf.reduce_sum(tf.abs(acc))) == 0.0 for acc in trainer.accumulators)


def test_accumulation_matches_large_minibatch():
    # Without batch norm, the mean gradient of two minibatches of 1 equals that of one of 2.
    images, labels = make_minibatch(seed=4)
    results = []
    for accumulation in (1, 2):
        tf.keras.utils.set_random_seed(0)
        model = build_uresnet(small_network(normalization="none"), SHAPE)
        config = OptimizerConfig(gradient_accumulation=accumulation,
                                 loss_balance_scheme="none", weight_decay=0.0)
        trainer = Trainer(model, tf.keras.optimizers.SGD(0.1), SingleProcessRuntime(), config)
        if accumulation == 1:
            trainer.train_step(images, labels)
        else:
            trainer.train_step(images[:1], labels[:1], apply_update=False)
            trainer.train_step(images[1:], labels[1:], apply_update=True)
        results.append(weights_copy(model))
    for single, accumulated in zip(*results):
        np.testing.assert_allclose(single, accumulated, rtol=1e-4, atol=1e-6)
