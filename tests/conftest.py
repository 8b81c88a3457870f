"""Shared test settings: quiet TensorFlow, the real sample's location, small network configs."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_DIR = Path(__file__).resolve().parents[1]
SAMPLE_PATH = Path(os.environ.get(
    "COSMICTAGGER_SAMPLE", REPO_DIR.parent / "shared" / "data" / "cosmic_tagging_light.h5"))


@pytest.fixture(scope="session")
def sample_path():
    """Path of the five-event real SBND sample; the test is skipped where it is absent."""
    if not SAMPLE_PATH.exists():
        pytest.skip(f"real sample not found at {SAMPLE_PATH}: get cosmic_tagging_light.h5 from "
                    "the CosmicTagger repository's example_data/ folder and place it there")
    return SAMPLE_PATH


def small_network(**overrides):
    """Return a NetworkConfig small enough for one CPU step in about a second."""
    from cosmictagger_tf.config import network_preset

    settings = dict(n_initial_filters=4, network_depth=3, blocks_per_layer=1,
                    blocks_deepest_layer=1, blocks_final=1, bottleneck_deepest=16)
    settings.update(overrides)
    return network_preset("uresnet", **settings)
