"""One optimisation step and one validation step of the UResNet, as tf.functions.

The train step records the forward pass on a gradient tape, wraps it in Horovod's distributed
tape (gradients averaged over ranks), and applies the update. With gradient accumulation the
gradients of ``k`` consecutive minibatches are summed in accumulators and the optimiser applies
their mean on every ``k``-th minibatch. Both steps return every scalar (loss, per-plane losses,
metrics) stacked in one tensor and averaged over ranks with a single allreduce. The train step
also returns the global norm of the applied gradients, so the loop finds a non-finite step among
the values it already reads.

With ``skip_nonfinite_steps``, an update whose gradients (averaged over ranks, so every rank
decides the same) have a non-finite global norm is skipped in the graph: the weights, the Adam
slots and the batch-norm statistics keep their values, and the step counter of the optimiser
still advances so the learning-rate schedule stays in step. Under loss scaling (``mixed``) the
LossScaleOptimizer skips such updates itself and lowers its scale.
"""
import tensorflow as tf

from cosmictagger_tf.model import convolution_kernels
from cosmictagger_tf.training import losses, metrics


class Trainer:
    """Holds the model, the optimiser and the compiled steps of one run."""

    def __init__(self, model, optimizer, runtime, optimizer_config, precision="float32",
                 jit_compile=False):
        self.model = model
        self.runtime = runtime
        self.scheme = optimizer_config.loss_balance_scheme
        self.weight_decay = optimizer_config.weight_decay
        self.accumulation = optimizer_config.gradient_accumulation
        self.skip_nonfinite = optimizer_config.skip_nonfinite_steps and precision != "mixed"
        self.num_planes = len(model.outputs)
        self.kernels = convolution_kernels(model)

        self.loss_scaling = precision == "mixed"
        if self.loss_scaling:
            optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        self.optimizer.build(model.trainable_variables)

        self.accumulators = []
        if self.accumulation > 1:
            self.accumulators = [tf.Variable(tf.zeros_like(variable), trainable=False)
                                 for variable in model.trainable_variables]

        self.scalar_names = (["loss", "weight_decay"]
                             + [f"plane{p}/loss" for p in range(self.num_planes)]
                             + metrics.metric_names(self.num_planes)
                             # Last, because only the train step returns it.
                             + ["gradient_norm"])
        self._update_step = tf.function(self._train_step, jit_compile=jit_compile or None)
        self._accumulate_step = tf.function(
            lambda images, labels: self._train_step(images, labels, apply_update=False),
            jit_compile=jit_compile or None)
        self._eval_step = tf.function(self._evaluate_step, jit_compile=jit_compile or None)

    # ---- public steps -------------------------------------------------------------------------

    def train_step(self, images, labels, apply_update=True):
        """Run one minibatch; update the weights unless it only accumulates gradients."""
        step = self._update_step if apply_update else self._accumulate_step
        return step(images, labels)

    def evaluate_step(self, images, labels):
        """Return the stacked scalars for one minibatch in inference mode (no update)."""
        return self._eval_step(images, labels)

    def broadcast_state(self):
        """Copy rank 0's model and optimiser state, slot variables included, to every rank."""
        self.runtime.broadcast_variables(self.model.variables)
        self.runtime.broadcast_variables(self.optimizer.variables)

    def scalars_to_dict(self, stacked):
        """Name the stacked scalars. Those of the validation step lack ``gradient_norm``."""
        return dict(zip(self.scalar_names, (float(value) for value in stacked.numpy())))

    # ---- traced bodies ------------------------------------------------------------------------

    def _objective(self, images, labels, training):
        logits = self.model(images, training=training)
        data_loss, plane_losses = losses.segmentation_loss(labels, logits, self.scheme)
        decay = losses.weight_decay_term(self.kernels, self.weight_decay)
        return logits, data_loss, plane_losses, decay

    def _train_step(self, images, labels, apply_update=True):
        # Read before the forward pass updates them, to put back if the update is skipped.
        statistics = ([variable.read_value() for variable in self.model.non_trainable_variables]
                      if self.skip_nonfinite else [])
        with tf.GradientTape() as tape:
            logits, data_loss, plane_losses, decay = self._objective(images, labels, True)
            total_loss = data_loss + decay
            scaled_loss = (self.optimizer.get_scaled_loss(total_loss) if self.loss_scaling
                           else total_loss)

        tape = self.runtime.gradient_tape(tape)
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        if self.loss_scaling:
            gradients = self.optimizer.get_unscaled_gradients(gradients)

        gradient_norm = tf.linalg.global_norm(gradients)
        if self.accumulation > 1:
            for accumulator, gradient in zip(self.accumulators, gradients):
                accumulator.assign_add(gradient)
            if apply_update:
                mean = [accumulator / self.accumulation for accumulator in self.accumulators]
                gradient_norm = tf.linalg.global_norm(mean)
                self._apply_gradients(mean, variables, gradient_norm, statistics)
                for accumulator in self.accumulators:
                    accumulator.assign(tf.zeros_like(accumulator))
            else:
                self._restore_statistics_unless_finite(gradient_norm, statistics)
        else:
            self._apply_gradients(gradients, variables, gradient_norm, statistics)

        stacked = self._stack_scalars(labels, logits, data_loss, plane_losses, decay)
        # The norm is equal on every rank because the gradients were averaged over ranks.
        return tf.concat([stacked, tf.reshape(tf.cast(gradient_norm, tf.float32), [1])], 0)

    def _apply_gradients(self, gradients, variables, gradient_norm, statistics):
        """Apply the update, or with skip_nonfinite, only when ``gradient_norm`` is finite."""
        if not self.skip_nonfinite:
            self.optimizer.apply_gradients(zip(gradients, variables))
            return

        def apply():
            self.optimizer.apply_gradients(zip(gradients, variables))
            return tf.constant(True)

        def skip():
            # The schedule reads the optimiser's step counter, which must still count this step.
            self.optimizer.iterations.assign_add(1)
            self._assign_statistics(statistics)
            return tf.constant(False)

        tf.cond(tf.math.is_finite(gradient_norm), apply, skip)

    def _restore_statistics_unless_finite(self, gradient_norm, statistics):
        """Undo this minibatch's batch-norm statistics update when its gradients are not finite."""
        if not self.skip_nonfinite:
            return

        def keep():
            return tf.constant(True)

        def restore():
            self._assign_statistics(statistics)
            return tf.constant(False)

        tf.cond(tf.math.is_finite(gradient_norm), keep, restore)

    def _assign_statistics(self, statistics):
        for variable, value in zip(self.model.non_trainable_variables, statistics):
            variable.assign(value)

    def _evaluate_step(self, images, labels):
        logits, data_loss, plane_losses, decay = self._objective(images, labels, False)
        return self._stack_scalars(labels, logits, data_loss, plane_losses, decay)

    def _stack_scalars(self, labels, logits, data_loss, plane_losses, decay):
        values = metrics.segmentation_metrics(labels, logits)
        names = metrics.metric_names(self.num_planes)
        stacked = tf.stack([data_loss, decay]
                           + [plane_losses[p] for p in range(self.num_planes)]
                           + [tf.cast(values[name], tf.float32) for name in names])
        return self.runtime.average(tf.cast(stacked, tf.float32))
