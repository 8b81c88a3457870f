"""Run outputs written on rank 0: resolved configuration, metrics rows and TensorBoard summaries.

Other ranks get a writer that does nothing, so the training loop never tests the rank itself.
"""
import json
import logging
import os
import time

import tensorflow as tf

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"


def prepare_output_dir(path):
    """Create ``path`` and prove it is writable now, rather than at the first checkpoint."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        with open(probe, "w") as handle:
            handle.write("ok")
        os.remove(probe)
    except OSError as error:
        raise OSError(f"output directory {path} is not writable ({error.strerror}); "
                      f"choose another --output_dir") from None
    return path


class RunWriter:
    """Writes config.json, one metrics.jsonl row per step and TensorBoard summaries."""

    def __init__(self, output_dir, resume_step=0):
        self.output_dir = output_dir
        self.resume_step = resume_step
        self.metrics_path = os.path.join(output_dir, METRICS_FILE)
        if resume_step:
            self._drop_rows_after(resume_step)
        board = os.path.join(output_dir, "tensorboard")
        self.summary_writers = {split: tf.summary.create_file_writer(os.path.join(board, split))
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
        row = {"split": split, "step": int(step), "time": round(time.time(), 3), **values}
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        with self.summary_writers[split].as_default(step=int(step)):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def flush(self):
        for writer in self.summary_writers.values():
            writer.flush()

    def _drop_rows_after(self, step):
        """Remove metrics rows past the restored checkpoint: those steps run again."""
        if not os.path.exists(self.metrics_path):
            return
        with open(self.metrics_path) as handle:
            lines = handle.readlines()
        rows_to_keep = [line for line in lines if json.loads(line)["step"] <= step]
        if len(rows_to_keep) == len(lines):
            return
        partial_path = self.metrics_path + ".partial"
        with open(partial_path, "w") as handle:
            handle.writelines(rows_to_keep)
        os.replace(partial_path, self.metrics_path)
        logger.info("resuming at step %d: dropped %d metrics rows of later steps, which run "
                    "again", step, len(lines) - len(rows_to_keep))


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
