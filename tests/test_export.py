"""Tests of the export command and of the models it writes.

Each format, loaded in a fresh process, gives the scores of the in-memory model. The SavedModel
signature is as documented, and the exports load for inference."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import larcv3_factory as factory
from conftest import REPO_DIR
from cosmictagger_tf.data.larcv3_reader import Larcv3File
from cosmictagger_tf.inference import models, predict
from test_inference import HEIGHT, WIDTH, assert_one_line_error, make_run_folder, run_command

# Each script loads one format in a fresh interpreter, scores the saved input and saves the
# scores [n, h, w, planes, classes]; it prints what it learnt of the model's interface as JSON.
LOAD_KERAS = """
import json, sys
import numpy as np
import tensorflow as tf
import cosmictagger_tf.model  # registers the custom layers
model = tf.keras.models.load_model(sys.argv[1])
scores = model(np.load(sys.argv[2]), training=False)
np.save(sys.argv[3], np.stack([np.asarray(s) for s in scores], axis=3))
print(json.dumps({"outputs": model.output_names}))
"""

LOAD_SAVED_MODEL = """
import json, sys
import numpy as np
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
spec = serve.structured_input_signature[1]
outputs = serve(planes=tf.constant(np.load(sys.argv[2])))
np.save(sys.argv[3], np.stack([outputs[f"plane{p}_scores"].numpy() for p in range(3)], axis=3))
print(json.dumps({"inputs": {name: [s.shape.as_list(), s.dtype.name] for name, s in spec.items()},
                  "outputs": sorted(outputs)}))
"""

LOAD_ONNX = """
import json, sys
import numpy as np
import onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
names = [output.name for output in session.get_outputs()]
scores = dict(zip(names, session.run(None, {"planes": np.load(sys.argv[2])})))
np.save(sys.argv[3], np.stack([scores[f"plane{p}_scores"] for p in range(3)], axis=3))
print(json.dumps({"outputs": names, "tensorflow_loaded": "tensorflow" in sys.modules}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    data_path, _, _ = factory.make_valid_file(folder / "events.h5", 3, HEIGHT, WIDTH, seed=5)
    run_dir, model = make_run_folder(folder / "run", data_path)
    output_dir = folder / "exported"
    result = run_command("cosmictagger_tf.export", f"--checkpoint_dir={run_dir}",
                         f"--output_dir={output_dir}", f"--image_height={HEIGHT}",
                         f"--image_width={WIDTH}")
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, model, data_path, result


def fixed_events(model):
    rng = np.random.default_rng(42)
    shape = (2, *model.input_shape[1:])
    return np.where(rng.random(shape) < 0.2, rng.gamma(1.5, 20.0, shape), 0).astype(np.float32)


def in_memory_scores(model, events):
    logits = model(events, training=False)
    return np.stack([tf.nn.softmax(plane).numpy() for plane in logits], axis=3)


def load_in_fresh_process(script, model_path, events, tmp_path):
    input_path, output_path = tmp_path / "input.npy", tmp_path / "scores.npy"
    np.save(input_path, events)
    result = subprocess.run([sys.executable, "-c", script, str(model_path), str(input_path),
                             str(output_path)], cwd=REPO_DIR, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(output_path), json.loads(result.stdout.strip().splitlines()[-1])


def test_export_writes_every_format_and_checks_onnx(exported):
    output_dir, _, _, result = exported
    for name in ("model.keras", "saved_model/saved_model.pb", "model.onnx", "model_info.json"):
        assert (output_dir / name).exists(), name
    assert "max abs difference of scores" in result.stderr
    info = json.loads((output_dir / "model_info.json").read_text())
    assert info["input"] == {**info["input"], "name": "planes", "dtype": "float32",
                             "shape": [None, HEIGHT // 2, WIDTH // 2, 3]}
    assert info["downsample"] == 1
    assert info["onnx_max_abs_difference"] <= 1e-4
    assert not (output_dir.parent / "exported.partial").exists()


@pytest.mark.parametrize("fmt_name, script, path, tolerance", [
    ("keras", LOAD_KERAS, "model.keras", 1e-5),
    ("saved_model", LOAD_SAVED_MODEL, "saved_model", 1e-5),
    ("onnx", LOAD_ONNX, "model.onnx", 1e-4),
])
def test_fresh_process_scores_match_memory(exported, tmp_path, fmt_name, script, path,
                                           tolerance):
    output_dir, model, _, _ = exported
    events = fixed_events(model)
    expected = in_memory_scores(model, events)
    scores, interface = load_in_fresh_process(script, output_dir / path, events, tmp_path)

    assert scores.shape == expected.shape == (2, HEIGHT // 2, WIDTH // 2, 3, 3)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=tolerance)
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)
    assert sorted(interface["outputs"]) == ["plane0_scores", "plane1_scores", "plane2_scores"]
    if fmt_name == "saved_model":
        assert interface["inputs"] == {"planes": [[None, HEIGHT // 2, WIDTH // 2, 3],
                                                  "float32"]}
    if fmt_name == "onnx":
        assert interface["tensorflow_loaded"] is False


def test_exported_models_load_for_inference(exported):
    output_dir, _, data_path, _ = exported
    larcv_file = Larcv3File(data_path)
    saved_model = models.load_exported(output_dir)
    keras_model = models.load_exported(output_dir / "model.keras")
    for scoring in (saved_model, keras_model):
        assert scoring.image_shape == (HEIGHT // 2, WIDTH // 2)
        assert predict.downsample_for(scoring, larcv_file.image_shape) == 1

    saved_events = list(predict.predict_entries(larcv_file, saved_model, 1))
    keras_events = list(predict.predict_entries(larcv_file, keras_model, 1))
    assert len(saved_events) == len(keras_events) == 3
    for saved_event, keras_event in zip(saved_events, keras_events):
        for saved_plane, keras_plane in zip(saved_event.planes, keras_event.planes):
            np.testing.assert_array_equal(saved_plane.ids, keras_plane.ids)
            np.testing.assert_allclose(saved_plane.scores, keras_plane.scores, atol=1e-5)


def test_export_bad_input_exits_with_one_line(exported, tmp_path):
    output_dir, _, _, _ = exported
    missing = run_command("cosmictagger_tf.export", f"--checkpoint_dir={tmp_path / 'no_run'}",
                          f"--output_dir={tmp_path / 'out'}")
    assert_one_line_error(missing, 1, "no such directory")

    not_a_run = run_command("cosmictagger_tf.export", f"--checkpoint_dir={tmp_path}",
                            f"--output_dir={tmp_path / 'out'}")
    assert_one_line_error(not_a_run, 1, "no config.json")

    exists = run_command("cosmictagger_tf.export", f"--checkpoint_dir={tmp_path}",
                         f"--output_dir={output_dir}")
    assert_one_line_error(exists, 2, "--overwrite")
    assert not (tmp_path / "out").exists()
