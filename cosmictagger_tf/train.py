"""Command-line entry point: ``python -m cosmictagger_tf.train [--flagfile=flags/NAME] ...``.

Parses flags into a RunConfig once, starts Horovod (also for one process), applies thread
settings and seeds, and hands over to the training loop. Configuration mistakes exit with
status 2 and one line saying what to change. Unreadable input, an unwritable or full output
folder and non-finite training exit with status 1. SIGTERM and SIGINT stop the run after the
current step with a checkpoint and exit with 143 and 130 (128 + the signal number).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

from cosmictagger_tf import run_flags  # noqa: E402
from cosmictagger_tf.config import ConfigError  # noqa: E402
from cosmictagger_tf.data.larcv3_reader import Larcv3FormatError  # noqa: E402
from cosmictagger_tf.distributed.extensions import extension_status  # noqa: E402

# --help lists the training flags, which live in run_flags.
flags.adopt_module_key_flags(run_flags)

logger = logging.getLogger("cosmictagger_tf.train")


def main(argv):
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.get_absl_handler().setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    if len(argv) > 1:
        _fail(2, f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag")

    config = run_flags.config_from_flags()
    if config.output_dir is None:
        run_name = f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        config.output_dir = os.path.join("runs", run_name)

    try:
        config.validate()
        _check_resumable(config)
        # Before TensorFlow loads its plugins, which a mismatched extension can crash.
        extension = extension_status()
    except ConfigError as error:
        _fail(2, str(error))

    import tensorflow as tf

    from cosmictagger_tf.distributed.device_checks import check_device
    from cosmictagger_tf.distributed.runtime import pin_devices, start_runtime
    from cosmictagger_tf.training.loop import run_training
    from cosmictagger_tf.training.stops import StopRequest
    from cosmictagger_tf.training.outputs import prepare_output_dir

    runtime = start_runtime(config.distributed)
    try:
        config.validate(runtime.size)
    except ConfigError as error:
        _fail(2, str(error))
    if not runtime.is_root:
        absl_logging.set_verbosity(absl_logging.WARNING)
    device = pin_devices(runtime, config.intra_op_threads, config.inter_op_threads)
    try:
        runtime.prepare_compression()
        # Precision and data format against the pinned device, before data or the model.
        check_device(config)
    except ConfigError as error:
        _fail(2, str(error))
    config.output_dir = runtime.broadcast_object(config.output_dir)
    if runtime.is_root:
        logger.info("%d rank(s), %d per node (%s); rank 0 runs on %s", runtime.size,
                    runtime.local_size, runtime.backend, device)
        logger.info("%s", extension)
    tf.keras.utils.set_random_seed(config.data.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    with StopRequest() as stop_request:
        status, message = _train(config, runtime, run_training, prepare_output_dir,
                                 stop_request)
    # Exiting here, outside the except clauses, drops the traceback and the tf.data iterators it
    # holds: an interpreter that shuts down with a live iterator can hang in its reader threads.
    if status and message:
        _fail(status, message)
    if status:
        sys.exit(status)


def _check_resumable(config):
    """Reject resuming a run folder with another network or image size before anything loads."""
    previous_config = os.path.join(config.output_dir, "config.json")
    if os.path.exists(previous_config):
        with open(previous_config) as handle:
            config.check_resumable(json.load(handle), config.output_dir)


def _train(config, runtime, run_training, prepare_output_dir, stop_request=None):
    """Run training and return ``(exit status, message)``, with status 0 on success.

    The message is empty when the loop has already logged it, as for a run stopped by a signal.
    """
    from cosmictagger_tf.training.stops import RunInterrupted

    created = not os.path.exists(config.output_dir)
    try:
        if runtime.is_root:
            prepare_output_dir(config.output_dir)
            logger.info("output in %s", config.output_dir)
        run_training(config, runtime, stop_request)
    except RunInterrupted as error:
        status, message = error.exit_status, "" if error.logged else str(error)
    except ConfigError as error:
        status, message = 2, str(error)
    except (Larcv3FormatError, FileNotFoundError, OSError) as error:
        status, message = 1, str(error)
    except KeyboardInterrupt:
        # A second signal arrived while the loop was finishing its step, so the run stopped.
        number = getattr(stop_request, "last_signal", 0) or signal.SIGINT
        status, message = 128 + number, (
            f"interrupted by {signal.Signals(number).name}; rerun the same command to resume "
            f"from the last checkpoint in {config.output_dir}/checkpoints")
    except Exception as error:  # noqa: BLE001 - reported with its traceback, then exit 1
        logger.exception("training failed")
        status, message = 1, f"training failed: {type(error).__name__}: {error}"
    else:
        return 0, ""

    if runtime.is_root and created and os.path.isdir(config.output_dir) \
            and not os.listdir(config.output_dir):
        os.rmdir(config.output_dir)
    return status, message


def _fail(status, message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def _parse_flags(argv):
    """Parse flags like absl does, but exit with status 2 and one line on a flag error."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def run():
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
