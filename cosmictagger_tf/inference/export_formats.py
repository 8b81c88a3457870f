"""Write a scoring model as a ``.keras`` file, a SavedModel and an ONNX file, and check the ONNX.

All three take the same input and give the same outputs, in float32:

    input   ``planes``: float32 ``[batch, H, W, 3]``, the charge of the three wire planes at the
            training resolution (each axis of the 1280 x 2048 SBND planes shrunk by
            ``2**downsample``, taking the mean over each block, empty pixels as zero)
    outputs ``plane0_scores``, ``plane1_scores``, ``plane2_scores``: float32
            ``[batch, H, W, 3]`` softmax scores of background, cosmic and neutrino

The SavedModel serves them through its ``serving_default`` signature; the batch size is free.
``model_info.json`` beside them records the shapes, the downsampling and the source checkpoint.
"""
import json
import os

import numpy as np
import tensorflow as tf

from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.inference.models import (INPUT_NAME, KERAS_FILE, SAVED_MODEL_FOLDER,
                                              SERVING_SIGNATURE, score_output_name)

ONNX_FILE = "model.onnx"
INFO_FILE = "model_info.json"
DEFAULT_OPSET = 17


def input_spec(keras_model):
    """Return the TensorSpec of the ``planes`` input with a free batch size."""
    height, width, num_planes = keras_model.input_shape[1:]
    return tf.TensorSpec([None, height, width, num_planes], tf.float32, name=INPUT_NAME)


def save_keras(keras_model, output_dir):
    path = os.path.join(output_dir, KERAS_FILE)
    keras_model.save(path)
    return path


def save_saved_model(keras_model, output_dir):
    """Write a SavedModel whose ``serving_default`` maps ``planes`` to per-plane scores.

    The SavedModel contains the weights and the serving function only, not the Keras layers, so
    that it saves and loads quickly and needs neither Keras nor this package to serve.
    """
    path = os.path.join(output_dir, SAVED_MODEL_FOLDER)
    num_planes = keras_model.input_shape[-1]
    serving = tf.Module()
    serving.weights = list(keras_model.weights)

    @tf.function(input_signature=[input_spec(keras_model)])
    def serve(planes):
        scores = keras_model(planes, training=False)
        return {score_output_name(plane): scores[plane] for plane in range(num_planes)}

    serving.serve = serve
    tf.saved_model.save(serving, path, signatures={SERVING_SIGNATURE: serve})
    return path


def save_onnx(keras_model, output_dir, opset=DEFAULT_OPSET):
    import tf2onnx

    path = os.path.join(output_dir, ONNX_FILE)
    tf2onnx.convert.from_keras(keras_model, input_signature=[input_spec(keras_model)],
                               opset=opset, output_path=path)
    return path


def check_events(keras_model, num_events=2, seed=0, occupancy=0.05):
    """Return fixed float32 events of the model's input shape with sparse, track-like charge."""
    rng = np.random.default_rng(seed)
    shape = (num_events, *keras_model.input_shape[1:])
    charged = rng.random(shape) < occupancy
    return np.where(charged, rng.gamma(1.5, 20.0, shape), 0.0).astype(np.float32)


def onnx_max_difference(onnx_path, keras_model, events):
    """Return the largest absolute score difference between onnxruntime and Keras on events."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    onnx_scores = dict(zip(names, session.run(None, {INPUT_NAME: events})))
    keras_scores = keras_model(events, training=False)
    return max(float(np.max(np.abs(onnx_scores[score_output_name(plane)] - np.asarray(scores))))
               for plane, scores in enumerate(keras_scores))


def write_info(output_dir, keras_model, downsample, source, onnx_difference, opset):
    """Write ``model_info.json``: what a serving client needs to feed and read the models."""
    height, width, num_planes = keras_model.input_shape[1:]
    info = {
        "source_checkpoint": source,
        "downsample": downsample,
        "full_resolution_plane": [height * 2 ** downsample, width * 2 ** downsample],
        "input": {"name": INPUT_NAME, "dtype": "float32",
                  "shape": [None, height, width, num_planes],
                  "meaning": "charge per plane at the training resolution (block mean over "
                             f"2**{downsample} x 2**{downsample} pixels), planes as channels"},
        "outputs": {score_output_name(plane): {"dtype": "float32",
                                               "shape": [None, height, width, fmt.NUM_CLASSES]}
                    for plane in range(num_planes)},
        "classes": list(fmt.CLASS_NAMES),
        "scores": "softmax probabilities over classes",
        "files": {"keras": KERAS_FILE, "saved_model": SAVED_MODEL_FOLDER,
                  "saved_model_signature": SERVING_SIGNATURE, "onnx": ONNX_FILE},
        "onnx_opset": opset,
        "onnx_max_abs_difference": onnx_difference,
        "tensorflow_version": tf.__version__,
    }
    path = os.path.join(output_dir, INFO_FILE)
    with open(path, "w") as handle:
        json.dump(info, handle, indent=2)
        handle.write("\n")
    return path
