"""Learning-rate schedule of the reference CosmicTagger training: warm-up, flat, then decay.

The schedule runs in epochs, epoch = step / steps_per_epoch as a float:
    epoch < 1             Linear from ``warmup`` to ``peak``.
    1 <= epoch < flat     ``peak``.
    epoch >= flat         (peak - floor) * exp(-decay_rate * (epoch - flat)) + floor.
"""
import tensorflow as tf


@tf.keras.saving.register_keras_serializable(package="cosmictagger_tf")
class ReferenceSchedule(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Warm-up over the first epoch, flat until ``flat_epochs``, then exponential decay."""

    def __init__(self, steps_per_epoch, peak=3e-4, warmup=1e-4, floor=1e-4, flat_epochs=21.0,
                 decay_rate=0.999):
        super().__init__()
        if steps_per_epoch <= 0:
            raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
        self.steps_per_epoch = float(steps_per_epoch)
        self.peak = float(peak)
        self.warmup = float(warmup)
        self.floor = float(floor)
        self.flat_epochs = float(flat_epochs)
        self.decay_rate = float(decay_rate)

    def __call__(self, step):
        # NOTE: float32 counts steps exactly only up to 2**24 (about 16.8 million).
        epoch = tf.cast(step, tf.float32) / self.steps_per_epoch

        warming_up = self.warmup + (self.peak - self.warmup) * epoch

        # Clamped at 0 so that exp cannot overflow before the decay phase starts.
        decay_epochs = tf.maximum(epoch - self.flat_epochs, 0.0)
        decaying = (self.peak - self.floor) * tf.exp(-self.decay_rate * decay_epochs) + self.floor

        after_warmup = tf.where(epoch < self.flat_epochs, self.peak, decaying)
        return tf.where(epoch < 1.0, warming_up, after_warmup)

    def get_config(self):
        return {
            "steps_per_epoch": self.steps_per_epoch,
            "peak": self.peak,
            "warmup": self.warmup,
            "floor": self.floor,
            "flat_epochs": self.flat_epochs,
            "decay_rate": self.decay_rate,
        }


def build_learning_rate(optimizer_config, steps_per_epoch):
    """Return the learning rate that ``optimizer_config.lr_schedule`` selects.

    Args:
        optimizer_config: an OptimizerConfig.
        steps_per_epoch: optimiser updates per pass over the training set, possibly fractional.

    Returns:
        A ReferenceSchedule for "reference", or the float learning rate for "constant".
    """
    if optimizer_config.lr_schedule == "constant":
        return float(optimizer_config.learning_rate)

    if optimizer_config.lr_schedule == "reference":
        return ReferenceSchedule(
            steps_per_epoch,
            peak=optimizer_config.learning_rate,
            warmup=optimizer_config.warmup_learning_rate,
            floor=optimizer_config.floor_learning_rate,
            flat_epochs=optimizer_config.flat_epochs,
            decay_rate=optimizer_config.decay_rate,
        )

    raise ValueError(f"unknown lr_schedule {optimizer_config.lr_schedule!r}, "
                     "expected one of: reference, constant")
