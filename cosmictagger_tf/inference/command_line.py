"""Logging set-up and exit handling shared by the inference, export and display commands.

Exit status 2 means a configuration that cannot work, status 1 input that cannot be read or a
failed run. Either way the command prints one line with the problem and the next step, without a
traceback.
"""
import logging
import sys

from absl import logging as absl_logging

CONFIGURATION_ERROR = 2
INPUT_ERROR = 1


class CommandError(Exception):
    """A failure to report as one line with an exit status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def setup_logging():
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.get_absl_handler().setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))


def fail(logger, status, message):
    """Print ``message`` on one line of standard error, then exit with ``status``."""
    del logger  # The message goes to standard error once, not also through the log.
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def run_command(action, argv, logger, name):
    """Run ``action()`` for command ``name``; return ``(exit status, message)``, 0 on success.

    A CommandError keeps its status. A ConfigError or an existing output (FileExistsError) gives
    2, unreadable input (Larcv3FormatError, OSError) gives 1, and any other exception gives 1
    with its traceback in the log. Callers exit outside the except clauses, so the traceback and
    the objects it references are gone by then.
    """
    from cosmictagger_tf.config import ConfigError
    from cosmictagger_tf.data.larcv3_reader import Larcv3FormatError

    try:
        if len(argv) > 1:
            raise ConfigError(f"unexpected arguments {' '.join(argv[1:])}; every option is a "
                              f"--flag")
        action()
    except CommandError as error:
        return error.status, str(error)
    except (ConfigError, FileExistsError) as error:
        return CONFIGURATION_ERROR, str(error)
    except (Larcv3FormatError, OSError) as error:
        return INPUT_ERROR, str(error)
    except Exception as error:  # noqa: BLE001 - reported with its traceback, then exit 1
        logger.exception("%s failed", name)
        return INPUT_ERROR, f"{name} failed: {type(error).__name__}: {error}"
    return 0, ""


class Progress:
    """A progress bar on a terminal, or a log line every tenth of the work otherwise."""

    def __init__(self, logger, total, label, stream=sys.stderr, width=30):
        self.logger = logger
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream
        self.width = width
        self.interactive = stream.isatty()
        self._next_log = 0.1

    def update(self, done):
        fraction = min(done / self.total, 1.0)
        if self.interactive:
            filled = int(round(fraction * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            end = "\n" if done >= self.total else ""
            self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total}{end}")
            self.stream.flush()
        elif fraction >= self._next_log or done >= self.total:
            self.logger.info("%s: %d of %d done", self.label, done, self.total)
            while self._next_log <= fraction:
                self._next_log += 0.1
