"""Checkpoints of a run: the manager, restoring the newest complete one, cleaning up after kills.

A run killed while it writes a checkpoint (SIGKILL, out of memory, a node failure) leaves
temporary files, and the newest named checkpoint can be damaged later by a full or failing disk.
Restoring skips what is incomplete with a warning and falls back to the checkpoint before it;
the leftovers of interrupted writes are removed at start-up.
"""
import glob
import logging
import os
import re
import shutil

import tensorflow as tf

from cosmictagger_tf.config import ConfigError
from cosmictagger_tf.training.outputs import CHECKPOINT_FOLDER

logger = logging.getLogger(__name__)


def checkpoint_manager(config, model, optimizer, step, runtime):
    """Return a CheckpointManager; restore the newest checkpoint on rank 0 if one exists."""
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    directory = os.path.join(config.output_dir, CHECKPOINT_FOLDER)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=config.max_checkpoints)
    if runtime.is_root and manager.latest_checkpoint:
        path = _restore_newest(checkpoint, manager)
        logger.info("resumed from %s at step %d", path, int(step.numpy()))
    if runtime.is_root:
        remove_interrupted_writes(directory, int(step.numpy()))
    return manager


def _restore_newest(checkpoint, manager):
    """Restore the newest complete and readable checkpoint and return its path.

    TensorFlow 2.15's CheckpointManager rewrites the ``checkpoint`` index file only after the
    checkpoint's files are written. A named checkpoint whose files are missing, empty or
    unreadable is still skipped with a warning, and the one before it is tried.
    """
    candidates = [manager.latest_checkpoint] + [
        path for path in reversed(manager.checkpoints) if path != manager.latest_checkpoint]
    for path in candidates:
        problem = _checkpoint_problem(path)
        if problem is None:
            try:
                checkpoint.restore(path).assert_existing_objects_matched()
                return path
            except (ValueError, AssertionError) as error:
                raise ConfigError(
                    f"checkpoint {path} does not fit the network built from the flags "
                    f"({str(error).splitlines()[0]}); resume with the run's network flags, or "
                    f"choose a new --output_dir") from None
            except (tf.errors.OpError, IndexError) as error:
                # TensorFlow 2.15 raises IndexError for a data file cut short.
                problem = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        logger.warning("ignoring incomplete checkpoint %s (%s); trying the one before it",
                       path, problem)
    raise OSError(f"no complete checkpoint in {manager.directory} ({len(candidates)} named in its "
                  f"checkpoint file, all incomplete or unreadable); move the folder away to "
                  f"start again, or choose a new --output_dir")


def _checkpoint_problem(path):
    """Return what is missing from the checkpoint files of ``path``, or None if complete."""
    index = path + ".index"
    if not os.path.isfile(index) or os.path.getsize(index) == 0:
        return "no index file"
    shards = glob.glob(glob.escape(path) + ".data-*-of-*")
    if not shards:
        return "no data file"
    expected = int(shards[0].rsplit("-of-", 1)[1])
    if len(shards) != expected:
        return f"{len(shards)} of {expected} data files"
    if any(os.path.getsize(shard) == 0 for shard in shards):
        return "empty data file"
    return None


def remove_interrupted_writes(directory, after_step):
    """Delete what interrupted or failed checkpoint writes left in ``directory``.

    These are ``ckpt-N_temp`` folders, ``checkpoint.tmp*`` files, and the files of checkpoints
    past ``after_step`` that the ``checkpoint`` index file does not name, because the run writes
    those steps again. Returns the number of entries removed.
    """
    if not os.path.isdir(directory):
        return 0
    state = tf.train.get_checkpoint_state(directory)
    recorded = set()
    if state:
        names = [*state.all_model_checkpoint_paths, state.model_checkpoint_path]
        recorded = {os.path.basename(name) for name in names}

    removed = []
    for entry in os.scandir(directory):
        numbered = re.match(r"(ckpt-(\d+))\.(index|data-\d+-of-\d+)$", entry.name)
        if entry.is_dir() and entry.name.endswith("_temp"):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif entry.name.startswith("checkpoint.tmp") or (
                numbered and int(numbered.group(2)) > after_step
                and numbered.group(1) not in recorded):
            _remove_quietly(entry.path)
        else:
            continue
        removed.append(entry.name)
    if removed:
        logger.warning("removed %d file(s) left by interrupted checkpoint writes in %s: %s",
                       len(removed), directory, ", ".join(sorted(removed)))
    return len(removed)


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError as error:
        logger.warning("cannot remove %s (%s)", path, error.strerror)
