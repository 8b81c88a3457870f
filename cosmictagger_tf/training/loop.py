"""The training loop: data, model, validation, logging, timing and early stops of a run.

``run_training(config, runtime)`` is what ``python -m cosmictagger_tf.train`` calls after turning
flags into a RunConfig; a notebook can call it directly with a hand-made RunConfig.

Three events end a run before ``--iterations`` and raise RunInterrupted with the exit status for
the command. SIGTERM or SIGINT, caught by StopRequest, stops the run after the current step with a
final checkpoint. A non-finite loss or gradient stops it without saving that step, or, with
``skip_nonfinite_steps``, only after too many such steps in a row. A checkpoint or metrics write
that fails, for example on a full disk, raises OSError naming the file instead, and the previous
checkpoints stay intact.
"""
import dataclasses
import logging
import math
import os
import signal
import time

import tensorflow as tf

from cosmictagger_tf.config import ConfigError
from cosmictagger_tf.data import dense, pipeline
from cosmictagger_tf.model import build_uresnet, count_parameters
from cosmictagger_tf.training import checkpoints
from cosmictagger_tf.training.outputs import (NullWriter, RunWriter, check_free_space,
                                              prepare_output_dir, write_error, write_rank_summary)
from cosmictagger_tf.training.schedule import build_learning_rate
from cosmictagger_tf.training.stops import RunInterrupted
from cosmictagger_tf.training.trainer import Trainer

logger = logging.getLogger(__name__)

# Synthetic data has no file to define an epoch; the learning-rate schedule then counts epochs
# of the SBND training set's size.
SYNTHETIC_EPOCH_EVENTS = 43_075
LOGGED_METRICS = ("loss", "accuracy", "non_bkg_accuracy", "cosmic_iou", "neutrino_iou", "miou")


@dataclasses.dataclass
class RunSummary:
    """Summary of a finished run: the steps run and the last logged values."""

    first_step: int
    last_step: int
    events_per_second: float
    last_train: dict
    last_aux: dict
    nonfinite_steps: int = 0


def run_training(config, runtime, stop_request=None):
    """Train with ``config`` on the ranks of ``runtime`` and return a RunSummary.

    ``stop_request`` is a StopRequest or None. Once it has caught a signal, every rank stops
    after the same step, rank 0 saves a checkpoint, and RunInterrupted carries the exit status
    128 + the signal number.
    """
    config.validate(runtime.size)
    if not config.output_dir:
        raise ConfigError("RunConfig.output_dir is missing: set it to the run folder "
                          "(--output_dir on the command line)")
    if runtime.is_root:
        prepare_output_dir(config.output_dir)
    local_minibatch = config.local_minibatch_size(runtime.size)
    if config.data.uses_default_dataset():
        _use_default_dataset(config, runtime)
    train_source, aux_source = _open_sources(config)
    image_shape = _image_shape(config, train_source, aux_source)
    train_data = _make_dataset(config, train_source, local_minibatch, runtime, start_step=0)

    model = build_uresnet(config.network, image_shape, config.precision, name=config.preset,
                          data_format=config.data_format)
    trainable, total = count_parameters(model)
    logger.info("model %s: %s trainable parameters, %s with batch-norm statistics; "
                "input %d x %d x %d per event, precision %s, %s", config.preset, f"{trainable:,}",
                f"{total:,}", *image_shape, config.network.num_planes, config.precision,
                config.data_format)
    if runtime.is_root:
        check_free_space(config.output_dir, total, config.max_checkpoints)

    events_per_epoch = train_source.num_events if train_source else SYNTHETIC_EPOCH_EVENTS
    steps_per_epoch = max(1.0, events_per_epoch / (config.minibatch_size
                                                   * config.optimizer.gradient_accumulation))
    learning_rate = build_learning_rate(_scaled_optimizer_config(config), steps_per_epoch)
    trainer = Trainer(model, tf.keras.optimizers.Adam(learning_rate), runtime, config.optimizer,
                      config.precision, config.jit_compile)

    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    manager = checkpoints.checkpoint_manager(config, model, trainer.optimizer, step, runtime)
    start_step = runtime.broadcast_object(int(step.numpy()))
    step.assign(start_step)
    if start_step >= config.iterations:
        logger.info("checkpoint is at step %d, which is not below --iterations=%d: nothing to "
                    "train; raise --iterations to continue", start_step, config.iterations)
        return RunSummary(start_step, start_step, 0.0, {}, {})

    writer = _make_writer(config, runtime, trainable, total, steps_per_epoch, start_step)
    if start_step:
        train_data = _make_dataset(config, train_source, local_minibatch, runtime, start_step)
    aux_data = (_make_dataset(config, aux_source, local_minibatch, runtime, 0, seed_offset=1)
                if aux_source else None)

    # The optimiser built its slot variables in Trainer, so rank 0's model and optimiser state,
    # freshly initialised or restored, can reach every rank before the first step.
    trainer.broadcast_state()

    loop = _Loop(config, runtime, trainer, manager, writer, step, learning_rate, stop_request)
    summary = loop.run(start_step, iter(train_data), iter(aux_data) if aux_data else None)
    if config.distributed.rank_summaries:
        write_rank_summary(config.output_dir, runtime, trainer, summary)
    return summary


def _scaled_optimizer_config(config):
    """Return the optimiser settings with the learning rates scaled for the global minibatch."""
    settings = config.distributed
    factor = settings.learning_rate_factor(config.minibatch_size)
    if settings.lr_scaling == "none":
        return config.optimizer
    optimizer = dataclasses.replace(
        config.optimizer, learning_rate=config.optimizer.learning_rate * factor,
        warmup_learning_rate=config.optimizer.warmup_learning_rate * factor,
        floor_learning_rate=config.optimizer.floor_learning_rate * factor)
    logger.info("learning rates scaled by %.3f (%s, global minibatch %d over reference %d): "
                "peak %.2e", factor, settings.lr_scaling, config.minibatch_size,
                settings.lr_reference_minibatch, optimizer.learning_rate)
    return optimizer


def _use_default_dataset(config, runtime):
    """Point the run at the simulated default files, simulating them first on rank 0 only."""
    from cosmictagger_tf.simulation import dataset

    cache_dir = config.data.cache_dir or dataset.DEFAULT_CACHE_DIR
    train_events, validation_events = config.data.default_events
    if runtime.is_root:
        train_path, validation_path = dataset.default_dataset(cache_dir, train_events,
                                                              validation_events)
    # The other ranks wait here until rank 0 has the files, then find them in the cache.
    runtime.broadcast_object(0)
    if not runtime.is_root:
        train_path, validation_path = dataset.default_dataset(cache_dir, train_events,
                                                              validation_events)

    config.data.data_files = (str(train_path),)
    if not config.data.aux_files:
        config.data.aux_files = (str(validation_path),)
    logger.info("no --data_file given: training on the built-in simulated dataset %s, "
                "validating on %s", train_path, config.data.aux_files[0])


def _open_sources(config):
    if config.data.synthetic:
        logger.info("synthetic data: random events of the real shape, no file input")
        return None, None
    train_source = _event_source("--data_file", config.data.data_files, config)
    aux_source = None
    if config.data.aux_files:
        aux_source = _event_source("--aux_file", config.data.aux_files, config)
    return train_source, aux_source


def _event_source(flag, files, config):
    try:
        return pipeline.EventSource(files, config.data.image_producer,
                                    config.data.label_producer, config.network.num_planes,
                                    skip_bad_files=config.data.skip_bad_files)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{flag}: {error}") from None


def _image_shape(config, train_source, aux_source):
    """Return the (height, width) of the network input, the files' image size downsampled."""
    if train_source is None:
        return config.data.image_shape()
    if aux_source and aux_source.number_of_voxels != train_source.number_of_voxels:
        raise ConfigError(f"validation images ({aux_source.number_of_voxels}) and training images "
                          f"({train_source.number_of_voxels}) differ in size (wires, ticks); "
                          "validate on files of the same detector")
    image_shape = dense.coarse_shape(train_source.number_of_voxels, config.data.downsample)
    config.check_image_shape(image_shape)
    return image_shape


def _make_dataset(config, source, local_minibatch, runtime, start_step, seed_offset=0):
    """Return the minibatch stream of one rank, positioned at ``start_step``."""
    if source is None:
        return pipeline.synthetic_dataset(local_minibatch, config.data.image_shape(),
                                          config.network.num_planes,
                                          seed=config.data.seed + runtime.rank)
    minibatches_done = start_step * config.optimizer.gradient_accumulation
    return pipeline.larcv3_dataset(
        source, local_minibatch, config.data.downsample, config.data.seed + seed_offset,
        shuffle=config.data.shuffle, start_step=minibatches_done, rank=runtime.rank,
        num_ranks=runtime.size, reader_threads=config.data.reader_threads,
        prefetch=config.data.prefetch)


def _make_writer(config, runtime, trainable, total, steps_per_epoch, start_step):
    if not runtime.is_root:
        return NullWriter()
    writer = RunWriter(config.output_dir, resume_step=start_step)
    writer.write_config(config.to_dict(), {
        "ranks": runtime.size, "horovod_backend": runtime.backend,
        "trainable_parameters": trainable, "total_parameters": total,
        "steps_per_epoch": steps_per_epoch, "tensorflow_version": tf.__version__})
    return writer


class _Loop:
    """Runs the steps, times them, and triggers logging, validation and checkpoints."""

    def __init__(self, config, runtime, trainer, manager, writer, step, learning_rate,
                 stop_request=None):
        self.config = config
        self.runtime = runtime
        self.trainer = trainer
        self.manager = manager
        self.writer = writer
        self.step = step
        self.learning_rate = learning_rate
        self.stop_request = stop_request
        self.events_per_step = config.minibatch_size * config.optimizer.gradient_accumulation
        self.last_train = {}
        self.last_aux = {}
        self.nonfinite_steps = 0
        self.nonfinite_in_a_row = 0

    def run(self, start_step, train_iterator, aux_iterator):
        logger.info("training steps %d to %d on %d rank(s), global minibatch %d%s",
                    start_step + 1, self.config.iterations, self.runtime.size,
                    self.config.minibatch_size, self._accumulation_note())
        window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0
        run_start, run_rate = None, 0.0

        for step in range(start_step, self.config.iterations):
            scalars, wait = self._train_one_step(train_iterator)
            self.step.assign(step + 1)
            values = self.trainer.scalars_to_dict(scalars)
            values["learning_rate"] = self._learning_rate_at(step)
            self._check_finite(step + 1, values)
            self.writer.write_row("train", step + 1, values)
            self.last_train = values
            window_steps, window_wait = window_steps + 1, window_wait + wait

            if step == start_step:
                # The first step includes tracing; time the rest of the run from here.
                run_start = time.perf_counter()
                self._log_first_step(step + 1, values, run_start - window_start)
                window_start, window_steps, window_wait = run_start, 0, 0.0
            elif self._due(step, self.config.log_iteration):
                elapsed = time.perf_counter() - window_start
                self._log_train(step + 1, values, window_steps, elapsed, window_wait)
                window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0

            if aux_iterator is not None and self._due(step, self.config.aux_iteration):
                self._validate(step + 1, aux_iterator)
            saved = None
            if self._due(step, self.config.checkpoint_iteration):
                saved = self._save(step + 1)
            if step + 1 < self.config.iterations:
                self._stop_if_requested(step + 1, saved)

        steps_timed = self.config.iterations - start_step - 1
        if steps_timed > 0:
            run_rate = steps_timed * self.events_per_step / (time.perf_counter() - run_start)
            logger.info("finished at step %d: %.3f events/s over %d steps (first step excluded)",
                        self.config.iterations, run_rate, steps_timed)
        if self.nonfinite_steps:
            logger.warning("%d of %d steps had a non-finite loss or gradients",
                           self.nonfinite_steps, self.config.iterations - start_step)
        self.writer.flush()
        return RunSummary(start_step, self.config.iterations, run_rate, self.last_train,
                          self.last_aux, self.nonfinite_steps)

    def _train_one_step(self, train_iterator):
        wait = 0.0
        accumulation = self.config.optimizer.gradient_accumulation
        for index in range(accumulation):
            fetch_start = time.perf_counter()
            images, labels = next(train_iterator)
            wait += time.perf_counter() - fetch_start
            scalars = self.trainer.train_step(images, labels,
                                              apply_update=index == accumulation - 1)
        # Reading the scalars on the host waits for the step to finish.
        scalars.numpy()
        return scalars, wait

    def _validate(self, step, aux_iterator):
        images, labels = next(aux_iterator)
        values = self.trainer.scalars_to_dict(self.trainer.evaluate_step(images, labels))
        self.writer.write_row("aux", step, values)
        self.last_aux = values
        if self.runtime.is_root:
            logger.info("step %d  validation  %s", step, _format_metrics(values))

    def _save(self, step):
        """Save a checkpoint on rank 0 and return its path. A failed write raises OSError."""
        path = f"{os.path.join(self.manager.directory, 'ckpt')}-{step}"
        if not self.runtime.is_root:
            return path
        try:
            path = self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            checkpoints.remove_interrupted_writes(self.manager.directory, step - 1)
            advice = (f"the newest complete checkpoint is {self._newest_checkpoint()}; free "
                      f"space there and rerun the same command to resume from it")
            raise write_error("checkpoint", path, error, advice) from None
        logger.info("step %d  saved checkpoint %s", step, path)
        return path

    def _newest_checkpoint(self):
        """Return the checkpoint a rerun would resume from, as the index file names it."""
        return (tf.train.latest_checkpoint(self.manager.directory)
                or "none (a rerun starts from step 0)")

    def _last_good_state(self):
        """Say where the last good state is: the newest checkpoint, or none written yet."""
        newest = tf.train.latest_checkpoint(self.manager.directory)
        if newest is None:
            return "no checkpoint was written yet, and a rerun starts from step 0"
        return f"the newest checkpoint {newest} keeps the last good state"

    def _stop_if_requested(self, step, saved):
        """After a step, stop every rank when any rank has caught SIGTERM or SIGINT."""
        signal_number = self._agreed_stop_signal()
        if not signal_number:
            return
        path = saved or self._save(step)
        self.writer.flush()
        message = (f"stopped by {signal.Signals(signal_number).name} at step {step}; checkpoint "
                   f"saved to {path}; rerun the same command to continue")
        if self.runtime.is_root:
            logger.warning(message)
        if self.runtime.size > 1:
            # Launchers end every rank once one exits with an error, so the other ranks wait
            # here until rank 0 has written the checkpoint.
            self.runtime.broadcast_object(path)
        raise RunInterrupted(message, 128 + signal_number, logged=True)

    def _agreed_stop_signal(self):
        """Return the signal all ranks stop on after this step, or 0 to go on."""
        if self.stop_request is None:
            return 0
        local = self.stop_request.signal_number
        if self.runtime.size == 1:
            return local
        # One tiny allreduce per step, so that all ranks stop after the same step.
        caught = tf.constant([local == signal.SIGTERM, local == signal.SIGINT], tf.float32)
        terminate, interrupt = self.runtime.average(caught).numpy()
        if terminate > 0:
            return signal.SIGTERM
        return signal.SIGINT if interrupt > 0 else 0

    def _check_finite(self, step, values):
        """Stop on a non-finite loss or gradient norm, or count the step when skipping is on.

        The values were already read on the host, so this check adds no wait on the device.
        """
        settings = self.config.optimizer
        gradient_norm = values.get("gradient_norm", 0.0)
        update_skipped = not math.isfinite(gradient_norm)
        if settings.skip_nonfinite_steps:
            values["update_skipped"] = float(update_skipped)
        # Under loss scaling, overflowing gradients are routine because the LossScaleOptimizer
        # skips those updates and lowers its scale.
        gradients_finite = self.trainer.loss_scaling or not update_skipped
        if math.isfinite(values["loss"]) and gradients_finite:
            self.nonfinite_in_a_row = 0
            return

        self.nonfinite_steps += 1
        self.nonfinite_in_a_row += 1
        found = f"loss {values['loss']}, gradient norm {gradient_norm}"
        last_good = self._last_good_state()
        if not settings.skip_nonfinite_steps:
            raise RunInterrupted(
                f"non-finite values at step {step} ({found}); stopped without saving this step, "
                f"so {last_good}; lower --learning_rate, check the input events near this step, "
                f"or rerun with --skip_nonfinite_steps", 1)
        _blank_step_metrics(values)
        if self.runtime.is_root:
            logger.warning("step %d  non-finite (%s): %s; %d in a row, %d in this run", step,
                           found, "update skipped" if update_skipped else
                           "gradients finite, update applied", self.nonfinite_in_a_row,
                           self.nonfinite_steps)
        if self.nonfinite_in_a_row >= settings.max_consecutive_skips:
            raise RunInterrupted(
                f"gave up at step {step} after {self.nonfinite_in_a_row} non-finite steps in a "
                f"row (--max_consecutive_skips={settings.max_consecutive_skips}, "
                f"{self.nonfinite_steps} in this run); {last_good}; lower --learning_rate or "
                f"check the input events", 1)

    def _log_train(self, step, values, steps, elapsed, wait):
        if not self.runtime.is_root:
            return
        rate = steps * self.events_per_step / elapsed if elapsed > 0 else 0.0
        logger.info("step %d  %s  lr %.2e  %.3f events/s  input wait %.1f%%", step,
                    _format_metrics(values), values["learning_rate"], rate,
                    100.0 * wait / elapsed if elapsed > 0 else 0.0)

    def _log_first_step(self, step, values, elapsed):
        if self.runtime.is_root:
            logger.info("step %d  %s  lr %.2e  (first step, including graph tracing: %.1f s)",
                        step, _format_metrics(values), values["learning_rate"], elapsed)

    def _due(self, step, every):
        return (step + 1) % every == 0 or step + 1 == self.config.iterations

    def _learning_rate_at(self, step):
        if callable(self.learning_rate):
            return float(self.learning_rate(step))
        return float(self.learning_rate)

    def _accumulation_note(self):
        accumulation = self.config.optimizer.gradient_accumulation
        if accumulation == 1:
            return ""
        return f", {accumulation} minibatches accumulated per update"


def _blank_step_metrics(values):
    """Set the losses and metrics of a skipped step to NaN: its logits are not finite.

    The metrics row then contains null for them, so averages and curves skip the step.
    """
    step_facts = ("learning_rate", "gradient_norm", "update_skipped")
    for name in values:
        if name not in step_facts:
            values[name] = float("nan")


def _format_metrics(values):
    return "  ".join(f"{name} {values[name]:.4f}" for name in LOGGED_METRICS if name in values)
