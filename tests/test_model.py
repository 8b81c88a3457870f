"""Tests of the UResNet builder: reference parameter counts, shapes, options and serialisation."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import small_network
from cosmictagger_tf.config import ConfigError, network_preset
from cosmictagger_tf.model import build_uresnet, convolution_kernels, count_parameters
from cosmictagger_tf.model import plane_layers

# (trainable, total with batch-norm moving statistics) of the reference implementation.
REFERENCE_COUNTS = {
    "a21": (8_510_547, 8_516_083),
    "uresnet": (18_382_131, 18_396_371),
    "polaris": (1_926_403, 1_933_443),
}


@pytest.mark.parametrize("preset", sorted(REFERENCE_COUNTS))
def test_preset_parameter_counts(preset):
    # Parameter counts do not depend on the image size, so a small image keeps this fast.
    model = build_uresnet(network_preset(preset), image_shape=(128, 128))
    assert count_parameters(model) == REFERENCE_COUNTS[preset]


@pytest.mark.parametrize("precision", ["float32", "mixed", "bfloat16"])
def test_output_shapes_and_dtype(precision):
    model = build_uresnet(small_network(), image_shape=(32, 64), precision=precision)
    outputs = model(tf.zeros([2, 32, 64, 3]), training=False)
    assert len(outputs) == 3
    for plane_logits in outputs:
        assert plane_logits.shape == (2, 32, 64, 3)
        assert plane_logits.dtype == tf.float32


def test_independent_planes_more_weights():
    shared = build_uresnet(small_network(), image_shape=(32, 64))
    independent = build_uresnet(small_network(independent_planes=True), image_shape=(32, 64))
    shared_trainable, _ = count_parameters(shared)
    independent_trainable, _ = count_parameters(independent)
    bottleneck = sum(int(np.prod(w.shape)) for layer in shared.layers
                     if layer.name.startswith("deepest") for w in layer.trainable_weights)
    outputs = independent(tf.zeros([1, 32, 64, 3]))
    # Everything but the shared bottleneck exists once per plane.
    assert independent_trainable == 3 * (shared_trainable - bottleneck) + bottleneck
    assert [o.shape for o in outputs] == [(1, 32, 64, 3)] * 3


@pytest.mark.parametrize("options", [
    dict(downsampling="convolutional", upsampling="convolutional"),
    dict(connections="sum", residual=False),
    dict(connections="none", growth_rate="multiplicative"),
    dict(normalization="none", use_bias=False),
])
def test_network_options_build_and_run(options):
    model = build_uresnet(small_network(**options), image_shape=(32, 64))
    outputs = model(tf.random.uniform([1, 32, 64, 3]), training=True)
    assert outputs[0].shape == (1, 32, 64, 3)
    assert all(np.isfinite(o.numpy()).all() for o in outputs)


def test_no_normalization_has_no_statistics():
    model = build_uresnet(small_network(normalization="none"), image_shape=(32, 64))
    trainable, total = count_parameters(model)
    assert trainable == total


def test_indivisible_image_rejected():
    with pytest.raises(ValueError, match="not divisible by 2\\*\\*network_depth = 8"):
        build_uresnet(small_network(), image_shape=(36, 64))


def test_invalid_option_rejected():
    with pytest.raises(ConfigError, match="connections"):
        build_uresnet(small_network(connections="product"), image_shape=(32, 64))


def test_fold_planes_round_trip():
    planes = tf.reshape(tf.range(2 * 4 * 6 * 3, dtype=tf.float32), [2, 4, 6, 3])
    folded = plane_layers.FoldPlanes()(planes)
    assert folded.shape == (6, 4, 6, 1)
    np.testing.assert_array_equal(folded[3, ..., 0], planes[1, ..., 1])
    unfolded = plane_layers.UnfoldPlanes(3)(folded)
    for plane in range(3):
        np.testing.assert_array_equal(unfolded[plane][..., 0], planes[..., plane])


def test_planes_channels_round_trip():
    folded = tf.random.uniform([6, 2, 3, 5])
    merged = plane_layers.PlanesToChannels(3)(folded)
    assert merged.shape == (2, 2, 3, 15)
    # Event 1's channels 5..9 are plane 1's features, which sit at folded row 1 * 2 + 1.
    np.testing.assert_array_equal(merged[1, ..., 5:10], folded[3])
    np.testing.assert_array_equal(plane_layers.ChannelsToPlanes(3)(merged), folded)


def test_planes_meet_only_at_bottleneck():
    # Without the bottleneck's mixing, a change in plane 0 would leave planes 1 and 2 untouched.
    # All three planes change, so the planes do meet.
    model = build_uresnet(small_network(), image_shape=(32, 64))
    base = tf.zeros([1, 32, 64, 3])
    changed = tf.tensor_scatter_nd_update(base, [[0, 10, 10, 0]], [50.0])
    before, after = model(base), model(changed)
    for plane in range(3):
        assert not np.allclose(before[plane].numpy(), after[plane].numpy())


def test_convolution_kernels_cover_all_convs():
    model = build_uresnet(network_preset("a21"), image_shape=(128, 128))
    kernels = convolution_kernels(model)
    kernel_weights = sum(int(np.prod(k.shape)) for k in kernels)
    trainable, _ = count_parameters(model)
    # 1 initial + 6 levels x (2 encode + down + up + 2 decode) + 7 bottleneck + 1 classifier.
    assert len(kernels) == 45
    assert 0.99 * trainable < kernel_weights < trainable


def test_saved_model_reloads_same_logits(tmp_path):
    model = build_uresnet(small_network(), image_shape=(32, 64))
    events = tf.random.uniform([2, 32, 64, 3], seed=1) * 50.0
    expected = model(events, training=False)
    path = tmp_path / "uresnet.keras"
    model.save(path)
    reloaded = tf.keras.models.load_model(path)
    for plane in range(3):
        np.testing.assert_allclose(reloaded(events, training=False)[plane], expected[plane],
                                   rtol=1e-5, atol=1e-5)


def test_inference_batch_independent():
    model = build_uresnet(small_network(), image_shape=(32, 64))
    events = tf.random.uniform([3, 32, 64, 3], seed=2) * 50.0
    together = model(events, training=False)
    alone = model(events[1:2], training=False)
    for plane in range(3):
        np.testing.assert_allclose(together[plane][1:2], alone[plane], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("options", [
    dict(),
    dict(independent_planes=True),
    dict(downsampling="convolutional", upsampling="convolutional", connections="sum"),
])
def test_channels_first_matches_channels_last(options):
    last = build_uresnet(small_network(**options), image_shape=(32, 64))
    first = build_uresnet(small_network(**options), image_shape=(32, 64),
                          data_format="channels_first")
    assert [w.shape for w in first.weights] == [w.shape for w in last.weights]
    first.set_weights(last.get_weights())
    events = tf.random.uniform([2, 32, 64, 3], seed=3) * 50.0
    # Inside a tf.function, as in training: eager channels-first max pooling on CPUs gives wrong
    # results (see the NOTE in uresnet.py).
    expected = tf.function(lambda planes: last(planes, training=False))(events)
    found = tf.function(lambda planes: first(planes, training=False))(events)
    assert len(found) == 3
    for plane in range(3):
        assert found[plane].shape == (2, 32, 64, 3)
        np.testing.assert_allclose(found[plane], expected[plane], rtol=1e-5, atol=1e-5)


def test_plane_layers_channels_first_round_trip():
    planes = tf.reshape(tf.range(2 * 4 * 6 * 3, dtype=tf.float32), [2, 4, 6, 3])
    folded = plane_layers.FoldPlanes(data_format="channels_first")(planes)
    assert folded.shape == (6, 1, 4, 6)
    np.testing.assert_array_equal(folded[3, 0], planes[1, ..., 1])
    unfolded = plane_layers.UnfoldPlanes(3, data_format="channels_first")(
        tf.tile(folded, [1, 2, 1, 1]))
    for plane in range(3):
        assert unfolded[plane].shape == (2, 4, 6, 2)
        np.testing.assert_array_equal(unfolded[plane][..., 1], planes[..., plane])

    features = tf.random.uniform([6, 2, 3, 5])
    merged_last = plane_layers.PlanesToChannels(3)(features)
    merged_first = plane_layers.PlanesToChannels(3, data_format="channels_first")(
        tf.transpose(features, [0, 3, 1, 2]))
    np.testing.assert_array_equal(tf.transpose(merged_first, [0, 2, 3, 1]), merged_last)
    restored = plane_layers.ChannelsToPlanes(3, data_format="channels_first")(merged_first)
    np.testing.assert_array_equal(tf.transpose(restored, [0, 2, 3, 1]), features)
    split = plane_layers.SplitChannels(3, data_format="channels_first")(merged_first)
    np.testing.assert_array_equal(tf.transpose(split[1], [0, 2, 3, 1]), features[2:4])


def test_plane_layer_config_keeps_data_format():
    layer = plane_layers.UnfoldPlanes(3, data_format="channels_first")
    copy = plane_layers.UnfoldPlanes.from_config(layer.get_config())
    assert (copy.data_format, copy.num_planes) == ("channels_first", 3)
    with pytest.raises(ValueError, match="channels_last or channels_first"):
        plane_layers.FoldPlanes(data_format="nchw")


def test_output_gradient_leaky_relu_matches_tensorflow():
    from cosmictagger_tf.model.activations import OutputGradientLeakyReLU

    features = tf.constant([[-3.0, -0.5, 0.0, 0.25, 4.0]])
    layer = OutputGradientLeakyReLU(0.2)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        ours = layer(features)
        reference = tf.nn.leaky_relu(features, alpha=0.2)
        weights = tf.constant([[1.0, 2.0, 3.0, 4.0, 5.0]])
        weighted_ours = tf.reduce_sum(ours * weights)
        weighted_reference = tf.reduce_sum(reference * weights)

    np.testing.assert_array_equal(ours.numpy(), reference.numpy())
    np.testing.assert_array_equal(tape.gradient(weighted_ours, features).numpy(),
                                  tape.gradient(weighted_reference, features).numpy())
    assert OutputGradientLeakyReLU.from_config(layer.get_config()).slope == 0.2
