"""Command-line entry point: export a trained tagger for serving.

    python -m cosmictagger_tf.export --checkpoint_dir=RUN --output_dir=OUT

OUT receives ``model.keras``, ``saved_model/`` (``serving_default`` signature), ``model.onnx``
and ``model_info.json``; see ``cosmictagger_tf.inference.export_formats`` for the input and
output of the models. The models are float32 whatever the training precision. The ONNX file is
checked against Keras with onnxruntime on fixed events before the command succeeds. Everything
is written into ``OUT.partial`` first and renamed at the end, so a failed export leaves no OUT.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import logging  # noqa: E402
import shutil  # noqa: E402

from absl import app, flags  # noqa: E402

from cosmictagger_tf.config import ConfigError  # noqa: E402
from cosmictagger_tf.data import larcv3_format as fmt  # noqa: E402
from cosmictagger_tf.inference.command_line import (CommandError, fail, run_command,  # noqa: E402
                                                   setup_logging)

FLAGS = flags.FLAGS
logger = logging.getLogger("cosmictagger_tf.export")


def define_flags():
    """Define the command's flags; called by run() so that importing this module defines none."""
    flags.DEFINE_string("checkpoint_dir", None, "Training run folder (or its checkpoints/ "
                        "folder); its newest checkpoint is exported.")
    flags.DEFINE_string("output_dir", None, "Folder to create with the exported models.")
    flags.DEFINE_integer("image_height", fmt.IMAGE_HEIGHT, "Plane height (time ticks) at full "
                         "resolution; the model takes it divided by 2**downsample.")
    flags.DEFINE_integer("image_width", fmt.IMAGE_WIDTH, "Plane width (wires) at full "
                         "resolution.")
    flags.DEFINE_integer("onnx_opset", 17, "ONNX opset of the ONNX file.")
    flags.DEFINE_float("onnx_tolerance", 1e-4, "Largest score difference between ONNX and Keras "
                       "accepted by the check at export time.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.")


def main(argv):
    setup_logging()
    status, message = run_command(lambda: export(FLAGS), argv, logger, "export")
    if status:
        fail(logger, status, message)


def export(flag_values):
    """Run the whole command from parsed flags; raise on any failure."""
    output_dir = _check_flags(flag_values)

    from cosmictagger_tf.inference import export_formats, models

    run = models.find_run_folder(flag_values.checkpoint_dir)
    scoring = models.load_run_folder(run, (flag_values.image_height, flag_values.image_width))
    keras_model = scoring.keras_model
    logger.info("exporting %s: input planes [batch, %d, %d, %d] (downsample %d)",
                scoring.description, *keras_model.input_shape[1:], run.downsample)

    partial = f"{output_dir}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    try:
        difference = _write_models(export_formats, keras_model, partial, flag_values)
        export_formats.write_info(partial, keras_model, run.downsample, run.checkpoint,
                                  difference, flag_values.onnx_opset)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise

    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)
    os.replace(partial, output_dir)
    logger.info("exported to %s: %s, %s/, %s, %s", output_dir, models.KERAS_FILE,
                models.SAVED_MODEL_FOLDER, export_formats.ONNX_FILE, export_formats.INFO_FILE)


def _check_flags(flag_values):
    for name in ("checkpoint_dir", "output_dir"):
        if not flag_values[name].value:
            raise ConfigError(f"--{name} is required")
    if not os.path.isdir(flag_values.checkpoint_dir):
        raise CommandError(1, f"{flag_values.checkpoint_dir}: no such directory; check "
                              f"--checkpoint_dir")
    output_dir = os.path.normpath(flag_values.output_dir)
    if os.path.exists(output_dir) and not flag_values.overwrite:
        raise ConfigError(f"{output_dir} exists; pass --overwrite to replace it or choose "
                          f"another --output_dir")
    return output_dir


def _write_models(export_formats, keras_model, folder, flag_values):
    """Write the three formats and return the ONNX check's largest score difference."""
    logger.info("wrote %s", export_formats.save_keras(keras_model, folder))
    logger.info("wrote %s", export_formats.save_saved_model(keras_model, folder))
    onnx_path = export_formats.save_onnx(keras_model, folder, flag_values.onnx_opset)
    logger.info("wrote %s (opset %d)", onnx_path, flag_values.onnx_opset)

    events = export_formats.check_events(keras_model)
    difference = export_formats.onnx_max_difference(onnx_path, keras_model, events)
    logger.info("ONNX check with onnxruntime on %d fixed events: max abs difference of scores "
                "%.3g (tolerance %.1g)", len(events), difference, flag_values.onnx_tolerance)
    if not difference <= flag_values.onnx_tolerance:
        raise CommandError(1, f"the ONNX model's scores differ from Keras by up to "
                              f"{difference:.3g}, above --onnx_tolerance="
                              f"{flag_values.onnx_tolerance:g}; try another --onnx_opset")
    return difference


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
