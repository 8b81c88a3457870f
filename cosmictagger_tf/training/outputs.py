"""Run outputs written on rank 0: resolved configuration, metrics rows and TensorBoard summaries.

Other ranks get a writer that does nothing, so the training loop never tests the rank itself.
The run folder is checked at start-up (writable, enough free space for the checkpoints kept), and
a write that fails later, such as on a full disk, becomes one OSError line naming the file.
"""
import errno
import json
import logging
import math
import os
import shutil
import time

import tensorflow as tf

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CHECKPOINT_FOLDER = "checkpoints"

# A checkpoint contains every variable once plus Adam's two moment slots, so about three copies of
# the parameters at 4 bytes each. Variables stay float32 in every precision.
CHECKPOINT_COPIES = 3
PARAMETER_BYTES = 4
# Room for the index and object graph of each checkpoint, metrics.jsonl and TensorBoard files.
# NOTE: an estimate. Metrics and TensorBoard grow by about 3 kB per step (measured with the
# small test network), so runs of many thousand steps can outgrow it.
SPACE_MARGIN_BYTES = 16 * 2**20
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def prepare_output_dir(path):
    """Create ``path`` and prove it is writable now, rather than at the first checkpoint."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w") as handle:
            handle.write("ok")
        os.remove(probe)
    except OSError as error:
        if error.errno in _DISK_FULL_ERRNOS:
            raise OSError(f"disk full: output directory {path} is not writable "
                          f"({error.strerror}); free space there or choose another "
                          f"--output_dir") from None
        raise OSError(f"output directory {path} is not writable ({error.strerror}); "
                      f"choose another --output_dir") from None
    return path


def check_free_space(path, parameters, max_checkpoints):
    """Raise OSError unless ``path`` has room for the checkpoints a run keeps, plus a margin.

    The manager writes a new checkpoint before it deletes the oldest, so ``max_checkpoints + 1``
    exist for a moment. Checkpoints already in the folder count as space the run will reuse.
    Returns ``(free, needed)`` in bytes.
    """
    per_checkpoint = parameters * PARAMETER_BYTES * CHECKPOINT_COPIES
    existing = _folder_bytes(os.path.join(path, CHECKPOINT_FOLDER))
    needed = max(per_checkpoint * (max_checkpoints + 1) - existing, 0) + SPACE_MARGIN_BYTES
    free = shutil.disk_usage(path).free
    if free < needed:
        raise OSError(
            f"not enough space: output directory {path} has {format_bytes(free)} free, but the run "
            f"needs about {format_bytes(needed)} ({max_checkpoints + 1} checkpoints of "
            f"{format_bytes(per_checkpoint)} for {parameters:,} parameters, plus "
            f"{format_bytes(SPACE_MARGIN_BYTES)} for metrics and TensorBoard); free space there, "
            f"choose another --output_dir or lower --max_checkpoints")
    logger.info("output directory %s: %s free, about %s needed", path, format_bytes(free),
                format_bytes(needed))
    return free, needed


def write_error(description, path, error, advice):
    """Build an OSError whose one-line message names the file, the reason and ``advice``.

    ``error`` is an OSError or a TensorFlow error. A full disk or an exceeded quota is reported
    as "disk full".
    """
    reason = _error_reason(error)
    full = _is_disk_full(error)
    folder = os.path.dirname(path) or "."
    free = ""
    if full:
        try:
            free = f", {format_bytes(shutil.disk_usage(folder).free)} free"
        except OSError:
            pass
    prefix = "disk full: " if full else ""
    failure = OSError(f"{prefix}cannot write {description} {path} ({reason}{free}); {advice}")
    failure.errno = errno.ENOSPC if full else getattr(error, "errno", None)
    return failure


def format_bytes(count):
    """Return ``count`` bytes as a short text such as ``300 kB`` or ``16.8 MB``."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"


def _folder_bytes(folder):
    if not os.path.isdir(folder):
        return 0
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())


def _is_disk_full(error):
    if isinstance(error, OSError):
        return error.errno in _DISK_FULL_ERRNOS
    text = str(error)
    return any(os.strerror(number) in text for number in _DISK_FULL_ERRNOS)


def _error_reason(error):
    """Return the system's reason for a failed write, without TensorFlow's op decoration."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    for number in (*_DISK_FULL_ERRNOS, errno.EROFS, errno.EACCES, errno.EIO):
        if os.strerror(number) in text:
            return os.strerror(number)
    return text.splitlines()[0][:200] if text else type(error).__name__


class RunWriter:
    """Writes config.json, one metrics.jsonl row per step and TensorBoard summaries."""

    def __init__(self, output_dir, resume_step=0):
        self.output_dir = output_dir
        self.resume_step = resume_step
        self.metrics_path = os.path.join(output_dir, METRICS_FILE)
        # Also at step 0, because a run stopped before its first checkpoint leaves rows of steps
        # that run again.
        self._drop_rows_after(resume_step)
        self.board = os.path.join(output_dir, "tensorboard")
        self.summary_writers = {
            split: tf.summary.create_file_writer(os.path.join(self.board, split))
            for split in ("train", "aux")}

    def write_config(self, config_dict, extra):
        path = os.path.join(self.output_dir, CONFIG_FILE)
        if self.resume_step and os.path.exists(path):
            logger.info("resuming: keeping %s from the run's start", path)
            return
        with open(path, "w") as handle:
            json.dump({**config_dict, **extra}, handle, indent=2, sort_keys=True)
        logger.info("wrote resolved configuration to %s", path)

    def write_row(self, split, step, values):
        """Append one metrics row and its TensorBoard scalars, writing NaN and infinity as null."""
        row = {"split": split, "step": int(step), "time": round(time.time(), 3),
               **{name: _json_number(value) for name, value in values.items()}}
        self._append_line(json.dumps(row) + "\n")
        try:
            with self.summary_writers[split].as_default(step=int(step)):
                for name, value in values.items():
                    tf.summary.scalar(name, value)
        except tf.errors.OpError as error:
            raise write_error("TensorBoard summaries in", self.board, error, RERUN_ADVICE) from None

    def flush(self):
        try:
            for writer in self.summary_writers.values():
                writer.flush()
        except tf.errors.OpError as error:
            raise write_error("TensorBoard summaries in", self.board, error, RERUN_ADVICE) from None

    def _append_line(self, line):
        """Append ``line`` to metrics.jsonl, truncating the file back when the write fails."""
        size = os.path.getsize(self.metrics_path) if os.path.exists(self.metrics_path) else 0
        try:
            with open(self.metrics_path, "a") as handle:
                handle.write(line)
        except OSError as error:
            try:
                os.truncate(self.metrics_path, size)
            except OSError:
                pass
            raise write_error("metrics to", self.metrics_path, error, RERUN_ADVICE) from None

    def _drop_rows_after(self, step):
        """Remove metrics rows past the restored checkpoint: those steps run again."""
        if not os.path.exists(self.metrics_path):
            return
        with open(self.metrics_path) as handle:
            lines = handle.readlines()
        if lines and not _is_whole_row(lines[-1]):
            # A process killed while appending leaves a cut-off last row.
            logger.warning("%s: dropping its last line, cut off by a stopped run: %r",
                           self.metrics_path, lines[-1][:80])
        rows_to_keep = [line for line in lines
                        if _is_whole_row(line) and json.loads(line)["step"] <= step]
        if len(rows_to_keep) == len(lines):
            return
        partial_path = self.metrics_path + ".partial"
        with open(partial_path, "w") as handle:
            handle.writelines(rows_to_keep)
        os.replace(partial_path, self.metrics_path)
        logger.info("resuming at step %d: dropped %d metrics rows of later steps, which run "
                    "again", step, len(lines) - len(rows_to_keep))


RERUN_ADVICE = "free space there and rerun the same command to resume from the last checkpoint"


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _is_whole_row(line):
    if not line.endswith("\n"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def write_rank_summary(output_dir, runtime, trainer, summary):
    """Write ``ranks/rank<R>.json``: digests of this rank's weights and optimiser, last values.

    Every rank writes its own file, so a job can show that all ranks hold identical state.
    """
    from cosmictagger_tf.distributed.runtime import variables_digest

    folder = os.path.join(output_dir, "ranks")
    os.makedirs(folder, exist_ok=True)
    record = {
        "rank": runtime.rank, "size": runtime.size, "local_rank": runtime.local_rank,
        "first_step": summary.first_step, "last_step": summary.last_step,
        "trainable_sha256": variables_digest(trainer.model.trainable_variables),
        # Batch-norm moving statistics follow each rank's own minibatches, so they differ
        # between ranks; rank 0's are the ones saved in checkpoints.
        "statistics_sha256": variables_digest(trainer.model.non_trainable_variables),
        "optimizer_sha256": variables_digest(trainer.optimizer.variables),
        "last_train": summary.last_train, "last_aux": summary.last_aux,
    }
    with open(os.path.join(folder, f"rank{runtime.rank}.json"), "w") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)


class NullWriter:
    """Stands in for RunWriter on ranks other than 0."""

    def write_config(self, config_dict, extra):
        return None

    def write_row(self, split, step, values):
        return None

    def flush(self):
        return None
