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
    """Log and print ``message`` on one line, then exit with ``status``."""
    logger.error("%s", message)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


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
