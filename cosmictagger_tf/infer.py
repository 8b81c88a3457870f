"""Command-line entry point: run a trained tagger over a larcv3 file and write its predictions.

    python -m cosmictagger_tf.infer --data_file=IN.h5 --checkpoint_dir=RUN --output=OUT.h5
    python -m cosmictagger_tf.infer --data_file=IN.h5 --model=EXPORTED --output=OUT.h5

The output is a larcv3 file with the input's event ids and the prediction producers described
in ``cosmictagger_tf.inference.output_file``. When the input has the label producer, a metrics
summary is written as JSON (``OUT.metrics.json`` by default) and printed as a table. A bad
configuration exits with status 2, unreadable input with status 1, each with one line.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import logging  # noqa: E402

from absl import app, flags  # noqa: E402

from cosmictagger_tf.config import ConfigError  # noqa: E402
from cosmictagger_tf.data import larcv3_format as fmt  # noqa: E402
from cosmictagger_tf.data.larcv3_reader import Larcv3File  # noqa: E402
from cosmictagger_tf.inference.command_line import (CommandError, Progress, fail,  # noqa: E402
                                                    run_command, setup_logging)

FLAGS = flags.FLAGS
logger = logging.getLogger("cosmictagger_tf.infer")


def define_flags():
    """Define the command's flags; called by run() so that importing this module defines none."""
    flags.DEFINE_string("data_file", None, "Input larcv3 file.")
    flags.DEFINE_string("checkpoint_dir", None, "Training run folder (or its checkpoints/ "
                        "folder); its newest checkpoint is used.")
    flags.DEFINE_string("model", None, "Exported model instead of --checkpoint_dir: a .keras "
                        "file, a SavedModel folder or a folder written by cosmictagger_tf.export.")
    flags.DEFINE_string("output", None, "Output larcv3 file of predictions.")
    flags.DEFINE_string("metrics_output", None, "Metrics summary JSON (default: the output path "
                        "with .metrics.json instead of its extension).")
    flags.DEFINE_string("image_producer", fmt.DEFAULT_IMAGE_PRODUCER, "sparse2d producer "
                        "holding the wire charge.")
    flags.DEFINE_string("label_producer", fmt.DEFAULT_LABEL_PRODUCER, "sparse2d producer "
                        "holding the labels; when the file lacks the default one, predictions "
                        "are written without metrics. Empty: never compute metrics.")
    flags.DEFINE_integer("minibatch_size", 2, "Events scored per model call.", lower_bound=1)
    flags.DEFINE_bool("overwrite", False, "Replace existing output files.")


def main(argv):
    setup_logging()
    status, message = run_command(lambda: infer(FLAGS), argv, logger, "inference")
    if status:
        fail(logger, status, message)


def infer(flag_values):
    """Run the whole command from parsed flags; raise on any failure."""
    metrics_path = _check_flags(flag_values)
    larcv_file = _open_input(flag_values)

    from cosmictagger_tf.inference import predict

    scoring = _load_model(flag_values, larcv_file)
    downsample = predict.downsample_for(scoring, larcv_file.image_shape)
    logger.info("model %s: planes of %d x %d scored at %d x %d (downsample %d)",
                scoring.description, *larcv_file.image_shape, *scoring.image_shape, downsample)

    summary = _predict_and_write(flag_values, larcv_file, scoring, downsample)
    if summary is None:
        return

    from cosmictagger_tf.evaluation.report import format_table, write_summary

    write_summary(metrics_path, summary, data_file=larcv_file.path,
                  predictions_file=flag_values.output, image_producer=larcv_file.image_producer,
                  label_producer=larcv_file.label_producer, model=scoring.description)
    logger.info("wrote metrics summary %s", metrics_path)
    print(format_table(summary, larcv_file.num_planes))


def _check_flags(flag_values):
    """Check the flags before anything is read; return the metrics summary path."""
    for name in ("data_file", "output"):
        if not flag_values[name].value:
            raise ConfigError(f"--{name} is required")
    if bool(flag_values.checkpoint_dir) == bool(flag_values.model):
        raise ConfigError("give exactly one of --checkpoint_dir (a training run folder) and "
                          "--model (an exported model)")
    if os.path.abspath(flag_values.output) == os.path.abspath(flag_values.data_file):
        raise ConfigError("--output is the input file; choose another path")

    metrics_path = flag_values.metrics_output
    if not metrics_path:
        from cosmictagger_tf.evaluation.report import metrics_path_for

        metrics_path = metrics_path_for(flag_values.output)
    for path in (flag_values.output, metrics_path):
        if os.path.exists(path) and not flag_values.overwrite:
            raise ConfigError(f"{path} exists; pass --overwrite to replace it or choose "
                              f"another --output")
    return metrics_path


def _open_input(flag_values):
    """Open the input with its label producer when there is one to evaluate against."""
    label_producer = flag_values.label_producer or None
    explicit = flag_values["label_producer"].present
    if label_producer is not None and not explicit:
        unlabelled = Larcv3File(flag_values.data_file, flag_values.image_producer, None)
        present = label_producer in unlabelled.available_producers()
        unlabelled.close()
        if not present:
            logger.info("%s has no label producer %r: writing predictions without metrics",
                        flag_values.data_file, label_producer)
            label_producer = None

    larcv_file = Larcv3File(flag_values.data_file, flag_values.image_producer, label_producer)
    logger.info("opened %s: %d entries, planes of %d x %d, %s", larcv_file.path,
                larcv_file.num_entries, *larcv_file.image_shape,
                f"labels from {label_producer!r}" if label_producer else "no labels")
    return larcv_file


def _load_model(flag_values, larcv_file):
    path = flag_values.checkpoint_dir or flag_values.model
    if not os.path.exists(path):
        flag = "--checkpoint_dir" if flag_values.checkpoint_dir else "--model"
        raise CommandError(1, f"{path}: no such file or directory; check {flag}")

    from cosmictagger_tf.inference import models

    if flag_values.model:
        return models.load_exported(flag_values.model)
    run = models.find_run_folder(flag_values.checkpoint_dir)
    return models.load_run_folder(run, larcv_file.image_shape)


def _predict_and_write(flag_values, larcv_file, scoring, downsample):
    """Write the prediction file; return the metrics summary, or None without labels."""
    from cosmictagger_tf.evaluation.metrics import EvaluationAccumulator
    from cosmictagger_tf.inference.output_file import PredictionWriter
    from cosmictagger_tf.inference.predict import predict_entries

    has_labels = larcv_file.label_producer is not None
    accumulator = EvaluationAccumulator(larcv_file.num_planes)
    progress = Progress(logger, larcv_file.num_entries, "inference")

    with PredictionWriter(flag_values.output, larcv_file.number_of_voxels,
                          larcv_file.num_planes, overwrite=flag_values.overwrite) as writer:
        events = predict_entries(larcv_file, scoring, downsample,
                                 minibatch_size=flag_values.minibatch_size)
        for done, event in enumerate(events, start=1):
            writer.write(event)
            if has_labels:
                accumulator.add_event(event.entry, event.event_id,
                                      [plane.labels for plane in event.planes],
                                      [plane.classes for plane in event.planes])
            progress.update(done)
    logger.info("wrote %d entries to %s", larcv_file.num_entries, flag_values.output)
    return accumulator.summary() if has_labels else None


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
