"""Tests of inference: the infer command's output file and metrics, batch independence, the
mapping of coarse scores to input voxels, and the metric summary on hand-made files."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import larcv3_factory as factory
from conftest import REPO_DIR, small_network
from cosmictagger_tf.config import DataConfig, RunConfig
from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.data import read_events
from cosmictagger_tf.data.larcv3_reader import Larcv3File
from cosmictagger_tf.data.larcv3_writer import Larcv3Writer
from cosmictagger_tf.evaluation.prediction_file import evaluate_prediction_file
from cosmictagger_tf.inference import models, predict, voxels
from cosmictagger_tf.inference.output_file import (CLASS_PRODUCER, COSMIC_SCORE_PRODUCER,
                                                   NEUTRINO_SCORE_PRODUCER)
from cosmictagger_tf.model import build_uresnet

HEIGHT, WIDTH, DOWNSAMPLE, NUM_EVENTS = 64, 128, 1, 5


def make_run_folder(folder, data_path, downsample=DOWNSAMPLE, seed=3):
    """Write a training run folder (config.json, checkpoints/) the way the training loop does.

    The batch-norm moving statistics are randomised so that inference mode is not the identity.
    Returns ``(run folder, in-memory model)``.
    """
    network = small_network()
    config = RunConfig(network=network, preset="uresnet",
                       data=DataConfig(data_files=(str(data_path),), downsample=downsample))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    tf.keras.utils.set_random_seed(seed)
    model = build_uresnet(network, (HEIGHT >> downsample, WIDTH >> downsample), "float32",
                          name="uresnet")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            size = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 0.5, size).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size).astype(np.float32))

    step = tf.Variable(7, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=tf.keras.optimizers.Adam(), step=step)
    tf.train.CheckpointManager(checkpoint, folder / "checkpoints", 3).save(checkpoint_number=7)
    return folder, model


def expected_scores(model, data_path, downsample=DOWNSAMPLE):
    """Return softmax scores ``[n, h, w, P, C]`` of the in-memory model on every event."""
    images, _ = read_events(data_path, downsample=downsample)
    logits = model(images, training=False)
    return np.stack([tf.nn.softmax(plane).numpy() for plane in logits], axis=3)


def run_command(module, *flags, timeout=300):
    command = [sys.executable, "-m", module, *flags]
    return subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result, status, fragment):
    assert result.returncode == status, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr[-3000:]
    assert fragment in error_lines[0]


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inference")
    data_path, _, labels = factory.make_valid_file(folder / "events.h5", NUM_EVENTS, HEIGHT,
                                                   WIDTH, seed=11)
    run_dir, model = make_run_folder(folder / "run", data_path)
    return data_path, run_dir, model


@pytest.fixture(scope="module")
def infer_output(labelled_run, tmp_path_factory):
    data_path, run_dir, _ = labelled_run
    output = tmp_path_factory.mktemp("infer") / "predictions.h5"
    result = run_command("cosmictagger_tf.infer", f"--data_file={data_path}",
                         f"--checkpoint_dir={run_dir}", f"--output={output}",
                         "--minibatch_size=2")
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


def test_voxel_takes_score_of_its_coarse_cell():
    ticks, downsample = 8, 1
    coarse = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    # Wire 3, tick 5 lies in coarse row 5 // 2 = 2 and column 3 // 2 = 1.
    ids = np.array([3 * ticks + 5, 0, 1 * ticks + 7], dtype=np.uint64)
    scores = voxels.voxel_scores(ids, coarse, ticks, downsample)
    np.testing.assert_array_equal(scores, [coarse[2, 1], coarse[0, 0], coarse[3, 0]])


def test_infer_output_passes_format_checks_and_reads_back(labelled_run, infer_output):
    data_path, _, model = labelled_run
    output, _ = infer_output
    expected = expected_scores(model, data_path)
    data = Larcv3File(data_path)
    # Opening runs the reader's checks: tables, extents, id ranges, matching voxel counts, and
    # class values 0 to 2 in the producer read as labels.
    predictions = Larcv3File(output, COSMIC_SCORE_PRODUCER, CLASS_PRODUCER)
    neutrino_scores = Larcv3File(output, NEUTRINO_SCORE_PRODUCER, None)
    assert predictions.num_entries == NUM_EVENTS
    assert predictions.number_of_voxels == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(predictions.event_ids(), data.event_ids())

    for entry in range(NUM_EVENTS):
        image_planes = data.read_sparse(entry, fmt.DEFAULT_IMAGE_PRODUCER)
        class_planes = predictions.read_sparse(entry, CLASS_PRODUCER)
        cosmic_planes = predictions.read_sparse(entry, COSMIC_SCORE_PRODUCER)
        neutrino_planes = neutrino_scores.read_sparse(entry, NEUTRINO_SCORE_PRODUCER)
        for plane in range(fmt.NUM_PLANES):
            ids = image_planes[plane][0]
            assert len(ids) > 0
            for produced in (class_planes, cosmic_planes, neutrino_planes):
                np.testing.assert_array_equal(produced[plane][0], ids)

            ids = ids.astype(np.int64)
            cell = expected[entry, (ids % HEIGHT) >> DOWNSAMPLE, (ids // HEIGHT) >> DOWNSAMPLE,
                            plane]
            np.testing.assert_allclose(cosmic_planes[plane][1], cell[:, fmt.COSMIC], atol=1e-5)
            np.testing.assert_allclose(neutrino_planes[plane][1], cell[:, fmt.NEUTRINO],
                                       atol=1e-5)
            np.testing.assert_array_equal(class_planes[plane][1], np.argmax(cell, axis=1))


def test_infer_metrics_match_output_and_labels(labelled_run, infer_output):
    data_path, _, _ = labelled_run
    output, result = infer_output
    summary = json.loads(output.with_suffix(".metrics.json").read_text())

    data = Larcv3File(data_path)
    predictions = Larcv3File(output, CLASS_PRODUCER, None)
    correct = total = 0
    for entry in range(NUM_EVENTS):
        _, _, _, labels = data.read_entry_sparse(entry)
        classes = np.concatenate([values for _, values in
                                  predictions.read_sparse(entry, CLASS_PRODUCER)])
        correct += np.count_nonzero(classes == labels)
        total += len(labels)

    assert summary["num_events"] == NUM_EVENTS
    assert summary["num_voxels"] == total
    plane_accuracies = [summary["file"][f"plane{plane}/accuracy"] for plane in range(3)]
    assert summary["file"]["accuracy"] == pytest.approx(np.mean(plane_accuracies))
    confusion_correct = sum(np.trace(np.array(summary["confusion"][f"plane{plane}"]))
                            for plane in range(3))
    assert confusion_correct == correct
    assert len(summary["events"]) == NUM_EVENTS
    assert "neutrino_efficiency" in result.stdout
    assert "cosmic_rejection" in result.stdout


def test_predictions_do_not_depend_on_batch(labelled_run):
    data_path, run_dir, _ = labelled_run
    larcv_file = Larcv3File(data_path)
    scoring = models.load_run_folder(models.find_run_folder(run_dir), larcv_file.image_shape)

    def scores_by_entry(entries, minibatch_size):
        events = predict.predict_entries(larcv_file, scoring, DOWNSAMPLE, entries,
                                         minibatch_size)
        return {event.entry: np.concatenate([plane.scores for plane in event.planes])
                for event in events}

    together = scores_by_entry(range(NUM_EVENTS), NUM_EVENTS)
    alone = {entry: scores_by_entry([entry], 1)[entry] for entry in range(NUM_EVENTS)}
    shuffled = scores_by_entry([4, 1, 3, 0, 2], 3)
    for entry in range(NUM_EVENTS):
        np.testing.assert_allclose(alone[entry], together[entry], atol=1e-5)
        np.testing.assert_allclose(shuffled[entry], together[entry], atol=1e-5)
    # The events differ, so equal scores above are not a constant output.
    assert not np.allclose(together[0][:10], together[1][:10])


def write_hand_made_files(folder):
    """Write a labelled input and a prediction file of two events on a 4 x 4 image.

    Returns their paths. The expected metrics are worked out in the test below.
    """
    labels = [  # entry -> plane -> true classes
        [[0, 1, 1, 2, 2, 2], [1, 1], []],
        [[2, 2, 0, 1], [0], [2]],
    ]
    classes = [
        [[0, 1, 2, 2, 2, 0], [1, 1], []],
        [[2, 1, 2, 1], [0], [1]],
    ]
    data_path, predictions_path = folder / "hand.h5", folder / "hand_predictions.h5"
    producers = (fmt.DEFAULT_IMAGE_PRODUCER, fmt.DEFAULT_LABEL_PRODUCER)
    with Larcv3Writer(data_path, producers, (4, 4)) as data, \
            Larcv3Writer(predictions_path, (CLASS_PRODUCER,), (4, 4)) as predictions:
        for entry in range(2):
            event_id = (1, 0, entry + 1)
            ids = [np.arange(len(plane), dtype=np.uint64) * 2 for plane in labels[entry]]
            data.write_event({
                fmt.DEFAULT_IMAGE_PRODUCER: [(i, np.full(len(i), 10.0)) for i in ids],
                fmt.DEFAULT_LABEL_PRODUCER: [(i, np.array(v, np.float32))
                                             for i, v in zip(ids, labels[entry])]}, event_id)
            predictions.write_event({CLASS_PRODUCER: [
                (i, np.array(v, np.float32)) for i, v in zip(ids, classes[entry])]}, event_id)
    return data_path, predictions_path


def test_metric_summary_on_hand_made_files(tmp_path):
    data_path, predictions_path = write_hand_made_files(tmp_path)
    summary = evaluate_prediction_file(data_path, predictions_path)
    approx = pytest.approx

    # Over the file: counts summed over both events for the ratios, IoU averaged over events.
    expected_file = {
        "plane0/accuracy": 6 / 10, "plane0/non_bkg_accuracy": 5 / 8,
        "plane0/neutrino_efficiency": 3 / 5, "plane0/neutrino_purity": 3 / 5,
        "plane0/cosmic_rejection": 2 / 3, "plane0/cosmic_iou": 1 / 2,
        "plane0/neutrino_iou": (1 / 2 + 1 / 3) / 2, "plane0/miou": (1 / 2 + 5 / 12) / 2,
        "plane1/accuracy": 1.0, "plane1/neutrino_efficiency": None,
        "plane1/neutrino_purity": None, "plane1/cosmic_rejection": 1.0,
        "plane1/cosmic_iou": 1.0, "plane1/neutrino_iou": 1.0,
        "plane2/accuracy": 0.0, "plane2/non_bkg_accuracy": 0.0,
        "plane2/neutrino_efficiency": 0.0, "plane2/neutrino_purity": None,
        "plane2/cosmic_rejection": None, "plane2/cosmic_iou": 0.5, "plane2/neutrino_iou": 0.5,
        "accuracy": 1.6 / 3, "neutrino_efficiency": 0.3, "neutrino_purity": 0.6,
        "cosmic_rejection": 5 / 6,
    }
    for key, value in expected_file.items():
        assert summary["file"][key] == (None if value is None else approx(value)), key

    first_event = summary["events"][0]
    assert first_event["event_id"] == [1, 0, 1]
    assert first_event["num_voxels"] == 8
    assert first_event["accuracy"] == approx(5 / 6)
    assert first_event["plane0/non_bkg_accuracy"] == approx(3 / 5)
    assert first_event["plane2/accuracy"] is None
    assert first_event["cosmic_iou"] == approx(5 / 6)
    assert first_event["cosmic_rejection"] == approx(3 / 4)
    assert summary["confusion"]["plane0"] == [[1, 0, 1], [0, 2, 1], [1, 1, 3]]


def test_evaluation_command_writes_summary(tmp_path):
    data_path, predictions_path = write_hand_made_files(tmp_path)
    output = tmp_path / "summary.json"
    result = run_command("cosmictagger_tf.evaluation", f"--data_file={data_path}",
                         f"--predictions={predictions_path}", f"--output={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(output.read_text())
    assert summary["file"]["plane0/neutrino_efficiency"] == pytest.approx(3 / 5)
    assert "neutrino_purity" in summary["definitions"]
    assert "2 events, 14 charged voxels" in result.stdout


def test_infer_without_labels_writes_predictions_only(labelled_run, tmp_path):
    data_path, run_dir, _ = labelled_run
    unlabelled = factory.drop_producer(shutil.copy(data_path, tmp_path / "unlabelled.h5"),
                                       fmt.DEFAULT_LABEL_PRODUCER)
    output = tmp_path / "predictions.h5"
    result = run_command("cosmictagger_tf.infer", f"--data_file={unlabelled}",
                         f"--checkpoint_dir={run_dir / 'checkpoints'}", f"--output={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "without metrics" in result.stderr
    assert Larcv3File(output, CLASS_PRODUCER, None).num_entries == NUM_EVENTS
    assert not (tmp_path / "predictions.metrics.json").exists()


def test_infer_bad_input_exits_with_one_line(labelled_run, tmp_path):
    data_path, run_dir, _ = labelled_run
    output = f"--output={tmp_path / 'out.h5'}"
    data = f"--data_file={data_path}"
    checkpoint = f"--checkpoint_dir={run_dir}"

    missing_run = run_command("cosmictagger_tf.infer", data, output,
                              f"--checkpoint_dir={tmp_path / 'no_run'}")
    assert_one_line_error(missing_run, 1, "no such file or directory")

    wrong_producer = run_command("cosmictagger_tf.infer", data, output, checkpoint,
                                 "--image_producer=nosuchwire")
    assert_one_line_error(wrong_producer, 1, "'nosuchwire' not found")

    wrong_labels = run_command("cosmictagger_tf.infer", data, output, checkpoint,
                               "--label_producer=nosuchlabels")
    assert_one_line_error(wrong_labels, 1, "'nosuchlabels' not found")

    no_model = run_command("cosmictagger_tf.infer", data, output)
    assert_one_line_error(no_model, 2, "exactly one of --checkpoint_dir")

    (tmp_path / "exists.h5").write_text("")
    exists = run_command("cosmictagger_tf.infer", data, checkpoint,
                         f"--output={tmp_path / 'exists.h5'}")
    assert_one_line_error(exists, 2, "--overwrite")
    assert not (tmp_path / "out.h5").exists()


def test_run_folder_without_checkpoint_exits_1(labelled_run, tmp_path):
    data_path, run_dir, _ = labelled_run
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    shutil.copy(run_dir / "config.json", empty_run / "config.json")
    result = run_command("cosmictagger_tf.infer", f"--data_file={data_path}",
                         f"--checkpoint_dir={empty_run}", f"--output={tmp_path / 'out.h5'}")
    assert_one_line_error(result, 1, "no checkpoint found")
    assert not (tmp_path / "out.h5").exists()
    assert not (tmp_path / "out.h5.partial").exists()
