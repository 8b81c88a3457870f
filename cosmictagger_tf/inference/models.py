"""Load a trained tagger for inference, from a training run folder or from an exported model.

Whatever the source, the result is a ScoringModel. Its input is float32 charge ``[B, H, W, P]``
at the training resolution, with the planes as channels. Its output is the class scores (softmax
probabilities) ``[B, H, W, P, C]``. Models run in float32, whatever the training precision: a
run folder's network is rebuilt in float32 and its checkpoint restored into it.

Sources:
    run folder       ``--checkpoint_dir``: a training ``--output_dir`` (``config.json`` and
                     ``checkpoints/``) or its ``checkpoints/`` folder; the newest checkpoint.
    exported model   ``--model``: a ``.keras`` file, a SavedModel folder, or the folder written
                     by ``python -m cosmictagger_tf.export`` (its SavedModel is used).
"""
import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from cosmictagger_tf.config import ConfigError, NetworkConfig
from cosmictagger_tf.model import build_uresnet

CONFIG_FILE = "config.json"
CHECKPOINT_FOLDER = "checkpoints"
INPUT_NAME = "planes"
SERVING_SIGNATURE = "serving_default"
KERAS_FILE = "model.keras"
SAVED_MODEL_FOLDER = "saved_model"


class ModelLoadError(OSError):
    """A model or checkpoint that cannot be found or read. The message gives the next step.

    It is an OSError, so commands report it like any other unreadable input.
    """


def score_output_name(plane):
    """Return the name of the output that contains the class scores of ``plane``."""
    return f"plane{plane}_scores"


@dataclasses.dataclass
class RunFolder:
    """Settings and newest checkpoint of a training run folder, as inference uses them."""

    path: str
    checkpoint: str
    network: NetworkConfig
    downsample: int
    precision: str
    preset: str


class ScoringModel:
    """Class scores of a trained tagger, whatever it was loaded from.

    ``score_planes`` maps a float32 tensor ``[B, H, W, P]`` to ``P`` arrays ``[B, H, W, C]``.
    ``downsample`` is None for exported models: it follows from the input file's image size.
    """

    def __init__(self, score_planes, image_shape, num_planes, description, downsample=None,
                 keras_model=None):
        self.image_shape = tuple(int(n) for n in image_shape)
        self.num_planes = int(num_planes)
        self.description = description
        self.downsample = downsample
        self.keras_model = keras_model
        self._score_planes = score_planes

    def scores(self, images):
        """Return float32 scores ``[B, H, W, P, C]`` of float32 charge ``[B, H, W, P]``."""
        images = np.asarray(images, dtype=np.float32)
        expected = (*self.image_shape, self.num_planes)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"expected images of shape [B, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}], got {list(images.shape)}")
        planes = self._score_planes(tf.constant(images))
        return np.stack([np.asarray(plane) for plane in planes], axis=3)


def scoring_keras_model(model):
    """Return a Keras model with ``model``'s input and one softmax output per plane.

    The outputs are named ``plane{p}_scores``; the layers are shared with ``model``.
    """
    scores = [tf.keras.layers.Softmax(axis=-1, dtype="float32", name=score_output_name(plane))(
        logits) for plane, logits in enumerate(model.outputs)]
    return tf.keras.Model(model.inputs, scores, name=f"{model.name}_scores")


def keras_scoring(keras_model, description, downsample=None):
    """Wrap a Keras model whose outputs are per-plane scores in a ScoringModel."""
    height, width, num_planes = keras_model.input_shape[1:]
    signature = [tf.TensorSpec([None, height, width, num_planes], tf.float32)]

    @tf.function(input_signature=signature)
    def score_planes(images):
        return keras_model(images, training=False)

    return ScoringModel(score_planes, (height, width), num_planes, description, downsample,
                        keras_model)


# ---- run folders ------------------------------------------------------------------------------

def find_run_folder(checkpoint_dir):
    """Return the RunFolder of a training run folder or of its ``checkpoints/`` folder."""
    path = os.path.normpath(str(checkpoint_dir))
    if not os.path.isdir(path):
        raise ModelLoadError(f"{path}: no such directory; --checkpoint_dir must be a training "
                             f"run folder (with {CONFIG_FILE} and {CHECKPOINT_FOLDER}/) or its "
                             f"{CHECKPOINT_FOLDER}/ folder")

    candidates = [path, os.path.dirname(path)]
    run_dir = next((c for c in candidates if os.path.isfile(os.path.join(c, CONFIG_FILE))), None)
    if run_dir is None:
        raise ModelLoadError(f"{path}: no {CONFIG_FILE} here or in the folder above; point "
                             f"--checkpoint_dir at the --output_dir of a training run")

    checkpoint_folder = os.path.join(run_dir, CHECKPOINT_FOLDER)
    checkpoint = tf.train.latest_checkpoint(checkpoint_folder)
    if checkpoint is None:
        raise ModelLoadError(f"{checkpoint_folder}: no checkpoint found; the run saves one every "
                             f"--checkpoint_iteration steps: train longer or use another run")
    return _read_run_config(run_dir, checkpoint)


def _read_run_config(run_dir, checkpoint):
    config_path = os.path.join(run_dir, CONFIG_FILE)
    try:
        with open(config_path) as handle:
            config = json.load(handle)
        known = {field.name for field in dataclasses.fields(NetworkConfig)}
        network = NetworkConfig(**{key: value for key, value in config["network"].items()
                                   if key in known})
        downsample = int(config["data"]["downsample"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"{config_path}: not a training configuration ({error}); point "
                             f"--checkpoint_dir at the --output_dir of a training run") from None
    return RunFolder(path=run_dir, checkpoint=checkpoint, network=network,
                     downsample=downsample, precision=config.get("precision", "float32"),
                     preset=config.get("preset", "uresnet"))


def training_resolution(full_shape, downsample):
    """Return the network's input (height, width) for full-resolution planes of ``full_shape``.

    Raises ConfigError when the plane size is not divisible by ``2**downsample``.
    """
    scale = 2 ** downsample
    height, width = full_shape
    if height % scale or width % scale:
        raise ConfigError(f"planes of {height} x {width} pixels cannot be downsampled by "
                          f"2**{downsample}; the model was trained with --downsample="
                          f"{downsample}")
    return height // scale, width // scale


def load_run_folder(run, full_shape):
    """Rebuild the network of ``run`` in float32 for planes of ``full_shape`` and restore it.

    Returns a ScoringModel. Raises ConfigError when the network cannot take this image size,
    ModelLoadError when the checkpoint does not fit the network.
    """
    image_shape = training_resolution(full_shape, run.downsample)
    try:
        model = build_uresnet(run.network, image_shape, precision="float32", name=run.preset)
    except (ValueError, ConfigError) as error:
        raise ConfigError(f"{run.path}: the network cannot take this input: {error}") from None

    status = tf.train.Checkpoint(model=model).restore(run.checkpoint)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:
        raise ModelLoadError(f"{run.checkpoint}: does not match the network in "
                             f"{os.path.join(run.path, CONFIG_FILE)} ({_first_line(error)}); "
                             f"the run folder's files come from different runs") from None

    description = f"{run.checkpoint} (trained in {run.precision}, run in float32)"
    return keras_scoring(scoring_keras_model(model), description, run.downsample)


# ---- exported models --------------------------------------------------------------------------

def load_exported(path):
    """Load a ``.keras`` file, a SavedModel folder or an export folder as a ScoringModel."""
    path = os.path.normpath(str(path))
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file or folder; --model takes a .keras file, a "
                             f"SavedModel folder or a folder written by cosmictagger_tf.export")
    if os.path.isdir(os.path.join(path, SAVED_MODEL_FOLDER)):
        path = os.path.join(path, SAVED_MODEL_FOLDER)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return _load_saved_model(path)
    if path.endswith(".keras") and os.path.isfile(path):
        return _load_keras(path)
    raise ModelLoadError(f"{path}: neither a .keras file nor a SavedModel folder; --model takes "
                         f"one of those or a folder written by cosmictagger_tf.export")


def _load_keras(path):
    import cosmictagger_tf.model  # noqa: F401 - registers the custom layers for loading

    try:
        model = tf.keras.models.load_model(path, compile=False)
    except (OSError, ValueError, TypeError) as error:
        raise ModelLoadError(f"{path}: cannot be loaded as a Keras model "
                             f"({_first_line(error)})") from None
    return keras_scoring(model, path)


def _load_saved_model(path):
    try:
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures[SERVING_SIGNATURE]
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"{path}: cannot be loaded as a SavedModel with a "
                             f"{SERVING_SIGNATURE!r} signature ({_first_line(error)})") from None

    spec = serve.structured_input_signature[1][INPUT_NAME]
    _, height, width, num_planes = spec.shape.as_list()
    names = [score_output_name(plane) for plane in range(num_planes)]

    def score_planes(images):
        outputs = serve(**{INPUT_NAME: images})
        return [outputs[name] for name in names]

    scoring = ScoringModel(score_planes, (height, width), num_planes, path)
    scoring.saved_model = loaded  # The signature needs its owner alive.
    return scoring


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
