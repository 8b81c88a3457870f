"""Command-line entry point: evaluate an existing prediction file against a labelled input.

    python -m cosmictagger_tf.evaluation --data_file=IN.h5 --predictions=OUT.h5 [--output=M.json]

Prints the metrics table and writes the JSON summary (default: beside the prediction file).
"""
import logging
import os

from absl import app, flags

from cosmictagger_tf.config import ConfigError
from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.evaluation.prediction_file import evaluate_prediction_file
from cosmictagger_tf.evaluation.report import format_table, metrics_path_for, write_summary
from cosmictagger_tf.inference.command_line import fail, run_command, setup_logging

FLAGS = flags.FLAGS
logger = logging.getLogger("cosmictagger_tf.evaluation")


def define_flags():
    """Define the command's flags; called by run() so that importing this module defines none."""
    flags.DEFINE_string("data_file", None, "Labelled input larcv3 file.")
    flags.DEFINE_string("predictions", None, "Prediction file written by cosmictagger_tf.infer.")
    flags.DEFINE_string("output", None, "Metrics summary JSON (default: beside --predictions).")
    flags.DEFINE_string("image_producer", fmt.DEFAULT_IMAGE_PRODUCER, "Image producer.")
    flags.DEFINE_string("label_producer", fmt.DEFAULT_LABEL_PRODUCER, "Label producer.")


def main(argv):
    setup_logging()
    status, message = run_command(lambda: evaluate(FLAGS), argv, logger, "evaluation")
    if status:
        fail(logger, status, message)


def evaluate(flag_values):
    """Score a prediction file against its labelled input; write and print the summary."""
    for name in ("data_file", "predictions"):
        if not flag_values[name].value:
            raise ConfigError(f"--{name} is required")
    summary = evaluate_prediction_file(flag_values.data_file, flag_values.predictions,
                                       flag_values.image_producer, flag_values.label_producer)
    path = flag_values.output or metrics_path_for(flag_values.predictions)
    write_summary(path, summary, data_file=os.path.abspath(flag_values.data_file),
                  predictions_file=os.path.abspath(flag_values.predictions),
                  image_producer=flag_values.image_producer,
                  label_producer=flag_values.label_producer)
    logger.info("wrote metrics summary %s", path)
    print(format_table(summary))


if __name__ == "__main__":
    define_flags()
    app.run(main)
