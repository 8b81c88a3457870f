"""Command-line entry point: ``python -m cosmictagger_tf.train [--flagfile=flags/NAME] ...``.

Parses flags into a RunConfig once, starts Horovod (also for one process), applies thread
settings and seeds, and hands over to the training loop. Configuration mistakes exit with
status 2 and one line saying what to change; unreadable input exits with status 1.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

from cosmictagger_tf import run_flags  # noqa: E402
from cosmictagger_tf.config import ConfigError  # noqa: E402
from cosmictagger_tf.data.larcv3_reader import Larcv3FormatError  # noqa: E402

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
        config.output_dir = os.path.join("runs", f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}")

    try:
        config.validate()
        _check_resumable(config)
    except ConfigError as error:
        _fail(2, str(error))

    import tensorflow as tf

    from cosmictagger_tf.distributed.runtime import pin_devices, start_runtime
    from cosmictagger_tf.training.loop import run_training
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
    except ConfigError as error:
        _fail(2, str(error))
    config.output_dir = runtime.broadcast_object(config.output_dir)
    if runtime.is_root:
        logger.info("%d rank(s), %d per node (%s); rank 0 runs on %s", runtime.size,
                    runtime.local_size, runtime.backend, device)
    tf.keras.utils.set_random_seed(config.data.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    status, message = _train(config, runtime, run_training, prepare_output_dir)
    # Exiting here, outside the except clauses, drops the traceback and the tf.data iterators it
    # holds: an interpreter that shuts down with a live iterator can hang in its reader threads.
    if status:
        _fail(status, message)


def _check_resumable(config):
    """Reject resuming a run folder with another network or image size before anything loads."""
    previous_config = os.path.join(config.output_dir, "config.json")
    if os.path.exists(previous_config):
        with open(previous_config) as handle:
            config.check_resumable(json.load(handle), config.output_dir)


def _train(config, runtime, run_training, prepare_output_dir):
    """Run training; return ``(exit status, message)`` with status 0 on success."""
    created = not os.path.exists(config.output_dir)
    try:
        if runtime.is_root:
            prepare_output_dir(config.output_dir)
            logger.info("output in %s", config.output_dir)
        run_training(config, runtime)
    except ConfigError as error:
        status, message = 2, str(error)
    except (Larcv3FormatError, FileNotFoundError, OSError) as error:
        status, message = 1, str(error)
    except KeyboardInterrupt:
        status, message = 130, ("interrupted; rerun the same command to resume from the last "
                                f"checkpoint in {config.output_dir}/checkpoints")
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
