"""Early ends of a run: the signal handler that records a stop and the exception that reports it.

SIGTERM (what schedulers send at the wall-time limit) and SIGINT (Ctrl-C) are only recorded by
StopRequest. The training loop reads the record after each step, saves a checkpoint and raises
RunInterrupted with the exit status 128 + the signal number. The loop raises RunInterrupted also
for a non-finite loss, with status 1.
"""
import signal


class RunInterrupted(Exception):
    """A run that ended before ``--iterations``.

    ``exit_status`` is the exit status for the command, and ``logged`` is True when the loop has
    already logged the message on rank 0.
    """

    def __init__(self, message, exit_status, logged=False):
        super().__init__(message)
        self.exit_status = exit_status
        self.logged = logged


class StopRequest:
    """Signal handler for SIGTERM and SIGINT, so the loop can stop cleanly after the step.

    Use it as a context manager in the main thread. The handler only records the signal, and the
    loop reads ``signal_number`` after each step. A second signal raises KeyboardInterrupt at
    once, for a user who does not want to wait for the step and the checkpoint.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal_number = 0
        self.last_signal = 0
        self._previous = {}

    def __enter__(self):
        for number in self.SIGNALS:
            self._previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
        return False

    def _record(self, number, frame):
        self.last_signal = number
        if self.signal_number:
            raise KeyboardInterrupt(f"second {signal.Signals(number).name}")
        self.signal_number = number
