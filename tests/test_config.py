"""Tests of the run configuration: presets, overrides, validation messages, rate scaling."""
import pytest

from cosmictagger_tf.config import (ConfigError, DataConfig, DistributedConfig, RunConfig,
                                    network_preset)


def synthetic_run(**settings):
    return RunConfig(data=DataConfig(synthetic=True), **settings)


def test_preset_override_keeps_other_fields():
    network = network_preset("a21", n_initial_filters=4)
    assert network.n_initial_filters == 4
    assert network.connections == "sum"
    assert network.blocks_final == 0


def test_unknown_preset_rejected():
    with pytest.raises(ConfigError, match="unknown preset 'b42'"):
        network_preset("b42")


def test_minibatch_must_divide_over_ranks():
    config = synthetic_run(minibatch_size=3)
    with pytest.raises(ConfigError, match="must divide evenly over 2 ranks"):
        config.validate(num_ranks=2)


def test_local_minibatch_is_share():
    config = synthetic_run(minibatch_size=8)
    config.validate(num_ranks=4)
    assert config.local_minibatch_size(4) == 2


def test_synthetic_image_must_divide():
    config = synthetic_run(network=network_preset("polaris"))
    config.data.downsample = 2
    with pytest.raises(ConfigError, match="not divisible by 2\\*\\*network_depth = 128"):
        config.validate()


def test_no_files_means_default_dataset():
    assert RunConfig().data.uses_default_dataset()
    assert not synthetic_run().data.uses_default_dataset()


@pytest.mark.parametrize("scaling, expected", [("none", 1.0), ("linear", 8.0), ("sqrt", 8 ** 0.5)])
def test_learning_rate_factor(scaling, expected):
    settings = DistributedConfig(lr_scaling=scaling, lr_reference_minibatch=2)
    assert settings.learning_rate_factor(16) == pytest.approx(expected)


def test_unknown_compression_rejected():
    config = synthetic_run(distributed=DistributedConfig(compression="int8"))
    with pytest.raises(ConfigError, match="horovod_compression"):
        config.validate()


def test_config_round_trips_to_dict():
    config = synthetic_run(minibatch_size=4)
    values = config.to_dict()
    assert values["minibatch_size"] == 4
    assert values["network"]["n_initial_filters"] == 16
    assert values["distributed"]["compression"] == "none"
