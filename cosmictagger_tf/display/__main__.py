"""Command-line entry point: draw one entry of a larcv3 file to a PNG.

    python -m cosmictagger_tf.display --data_file=F --entry=N [--predictions=P] --output=E.png

The labels are drawn when the file has the label producer. The predicted classes are drawn when
``--predictions`` names a file written by ``cosmictagger_tf.infer`` from the same input. A bad
configuration exits with status 2, unreadable input with status 1, each with one line.
"""
import logging
import os

import numpy as np
from absl import app, flags

from cosmictagger_tf.config import ConfigError
from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.data.dense import densify_numpy
from cosmictagger_tf.data.larcv3_reader import Larcv3File, Larcv3FormatError
from cosmictagger_tf.display.drawing import EMPTY, save_event_png
from cosmictagger_tf.inference.command_line import fail, run_command, setup_logging
from cosmictagger_tf.inference.output_file import CLASS_PRODUCER

FLAGS = flags.FLAGS
logger = logging.getLogger("cosmictagger_tf.display")


def define_flags():
    """Define the command's flags; called by run() so that importing this module defines none."""
    flags.DEFINE_string("data_file", None, "Input larcv3 file.")
    flags.DEFINE_integer("entry", 0, "Entry to draw (0 is the first).")
    flags.DEFINE_string("predictions", None, "Prediction file written by cosmictagger_tf.infer "
                        "from --data_file (optional).")
    flags.DEFINE_string("output", None, "PNG file to write.")
    flags.DEFINE_string("image_producer", fmt.DEFAULT_IMAGE_PRODUCER, "sparse2d producer "
                        "holding the wire charge.")
    flags.DEFINE_string("label_producer", fmt.DEFAULT_LABEL_PRODUCER, "sparse2d producer "
                        "holding the labels; not drawn when the file lacks it.")


def main(argv):
    setup_logging()
    status, message = run_command(lambda: display(FLAGS), argv, logger, "display")
    if status:
        fail(logger, status, message)


def display(flag_values):
    """Draw the entry given by the flags and write the PNG."""
    for name in ("data_file", "output"):
        if not flag_values[name].value:
            raise ConfigError(f"--{name} is required")

    larcv_file = _open_input(flag_values)
    entry = flag_values.entry
    if not 0 <= entry < larcv_file.num_entries:
        raise ConfigError(f"--entry={entry} is out of range: {larcv_file.path} has "
                          f"{larcv_file.num_entries} entries (0 to {larcv_file.num_entries - 1})")

    plane_index, ids, charge, labels = larcv_file.read_entry_sparse(entry)
    image, label_image = densify_numpy(plane_index, ids, charge, labels,
                                       larcv_file.number_of_voxels, larcv_file.num_planes, 0)
    predictions = None
    if flag_values.predictions:
        predictions = _read_predictions(flag_values.predictions, larcv_file, entry)

    title = f"{os.path.basename(larcv_file.path)}  entry {entry}"
    run, subrun, event = (int(v) for v in larcv_file.event_ids()[entry])
    if (run, subrun, event) != (-1, -1, -1):
        title += f"  (run {run}, subrun {subrun}, event {event})"
    labels_drawn = label_image if larcv_file.label_producer else None
    save_event_png(flag_values.output, image, labels_drawn, predictions, title)
    logger.info("wrote %s", flag_values.output)


def _open_input(flag_values):
    label_producer = flag_values.label_producer or None
    unlabelled = Larcv3File(flag_values.data_file, flag_values.image_producer, None)
    if label_producer not in unlabelled.available_producers():
        if flag_values["label_producer"].present and label_producer:
            unlabelled.close()
            raise Larcv3FormatError(
                f"{flag_values.data_file}: sparse2d producer {label_producer!r} not found; "
                f"sparse2d producers in this file: "
                f"{', '.join(unlabelled.available_producers())}")
        return unlabelled
    unlabelled.close()
    return Larcv3File(flag_values.data_file, flag_values.image_producer, label_producer)


def _read_predictions(path, larcv_file, entry):
    """Return the predicted classes of an entry as int ``[H, W, P]``, EMPTY where no voxel."""
    predictions = Larcv3File(path, CLASS_PRODUCER, None)
    try:
        if predictions.num_entries != larcv_file.num_entries or \
                tuple(predictions.event_ids()[entry]) != tuple(larcv_file.event_ids()[entry]):
            raise Larcv3FormatError(
                f"{path}: entry {entry} is not the event of {larcv_file.path} entry {entry}; "
                f"give the prediction file made from --data_file")
        if predictions.number_of_voxels != larcv_file.number_of_voxels:
            raise Larcv3FormatError(f"{path}: image size {predictions.number_of_voxels} differs "
                                    f"from {larcv_file.path}'s {larcv_file.number_of_voxels}")
        planes = predictions.read_sparse(entry, CLASS_PRODUCER)
    finally:
        predictions.close()

    ticks = larcv_file.image_shape[0]
    dense = np.full((*larcv_file.image_shape, larcv_file.num_planes), EMPTY, np.int8)
    for plane, (ids, classes) in enumerate(planes):
        ids = ids.astype(np.int64)
        dense[ids % ticks, ids // ticks, plane] = classes.astype(np.int8)
    return dense


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
