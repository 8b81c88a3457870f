"""Tests of event displays: the RGB image for TensorBoard and the display command's PNG."""
import struct

import numpy as np
import pytest

import larcv3_factory as factory
from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.data.larcv3_reader import Larcv3File
from cosmictagger_tf.data.larcv3_writer import Larcv3Writer
from cosmictagger_tf.display.drawing import CLASS_COLOURS, block_max, event_image, figure_pixels
from cosmictagger_tf.inference.output_file import CLASS_PRODUCER
from test_inference import assert_one_line_error, run_command

HEIGHT, WIDTH = 64, 128


def png_size(path):
    """Return (width, height) from a PNG file's header."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def has_colour(image, colour, tolerance=3):
    target = np.round(np.array(colour) * 255)
    return bool(np.any(np.all(np.abs(image.astype(int) - target) <= tolerance, axis=-1)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A labelled file and a prediction file that predicts cosmic on every charged voxel."""
    folder = tmp_path_factory.mktemp("display")
    data_path, _, _ = factory.make_valid_file(folder / "events.h5", 2, HEIGHT, WIDTH, seed=2)
    data = Larcv3File(data_path)
    predictions_path = folder / "predictions.h5"
    with Larcv3Writer(predictions_path, (CLASS_PRODUCER,), (WIDTH, HEIGHT)) as writer:
        for entry in range(data.num_entries):
            planes = data.read_sparse(entry, fmt.DEFAULT_IMAGE_PRODUCER)
            writer.write_event({CLASS_PRODUCER: [(ids, np.full(len(ids), fmt.COSMIC))
                                                 for ids, _ in planes]}, (-1, -1, -1))
    return data_path, predictions_path


def test_event_image_is_rgb_of_figure_size():
    rng = np.random.default_rng(0)
    charge = np.where(rng.random((HEIGHT, WIDTH, 3)) < 0.2, rng.uniform(1, 100), 0.0)
    labels = rng.integers(0, 3, (HEIGHT, WIDTH, 3))
    predictions = np.full((HEIGHT, WIDTH, 3), fmt.NEUTRINO)

    image = event_image(charge, labels, predictions, title="test")
    width, height = figure_pixels(3, 3, (HEIGHT, WIDTH))
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8
    for code in (fmt.BACKGROUND, fmt.COSMIC, fmt.NEUTRINO):
        assert has_colour(image, CLASS_COLOURS[code]), code

    charge_only = event_image(charge)
    assert charge_only.shape == (height, figure_pixels(1, 3, (HEIGHT, WIDTH))[0], 3)
    assert not has_colour(charge_only, CLASS_COLOURS[fmt.NEUTRINO])


def test_block_max_keeps_neutrino_over_cosmic():
    codes = np.array([[-1, 1, 0, 0, 1], [2, -1, 0, -1, -1]], dtype=np.int8)
    np.testing.assert_array_equal(block_max(codes, 2, -1), [[2, 0, 1]])


def test_display_command_writes_png_of_expected_size(files, tmp_path):
    data_path, predictions_path = files
    output = tmp_path / "event.png"
    result = run_command("cosmictagger_tf.display", f"--data_file={data_path}", "--entry=1",
                         f"--predictions={predictions_path}", f"--output={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    # Three columns (charge, true, predicted) of 600 pixels; three rows of 240 + 70 pixels
    # under a 90-pixel header.
    assert png_size(output) == (1800, 1020)

    without_predictions = tmp_path / "charge_and_labels.png"
    result = run_command("cosmictagger_tf.display", f"--data_file={data_path}",
                         f"--output={without_predictions}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert png_size(without_predictions) == (1200, 1020)


def test_display_bad_input_exits_with_one_line(files, tmp_path):
    data_path, predictions_path = files
    output = f"--output={tmp_path / 'event.png'}"
    out_of_range = run_command("cosmictagger_tf.display", f"--data_file={data_path}",
                               "--entry=2", output)
    assert_one_line_error(out_of_range, 2, "out of range")

    other_file, _, _ = factory.make_valid_file(tmp_path / "other.h5", 3, HEIGHT, WIDTH)
    other_event = run_command("cosmictagger_tf.display", f"--data_file={other_file}",
                              f"--predictions={predictions_path}", output)
    assert_one_line_error(other_event, 1, "give the prediction file made from --data_file")

    not_predictions = run_command("cosmictagger_tf.display", f"--data_file={other_file}",
                                  f"--predictions={data_path}", output)
    assert_one_line_error(not_predictions, 1, f"{CLASS_PRODUCER!r} not found")

    missing = run_command("cosmictagger_tf.display", f"--data_file={tmp_path / 'none.h5'}",
                          output)
    assert_one_line_error(missing, 1, "no such file")
    assert not (tmp_path / "event.png").exists()
