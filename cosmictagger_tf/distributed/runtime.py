"""Horovod start-up and the few collective operations the trainer needs.

Horovod is initialised even for one process, so the same training code runs alone or under
``horovodrun`` / ``mpiexec``. Where Horovod is not installed (a notebook, a plain pip install)
a single-process stand-in with the same methods is used, with a warning in the log.
"""
import logging
import os

import tensorflow as tf

logger = logging.getLogger(__name__)


class HorovodRuntime:
    """Rank information and collectives backed by ``horovod.tensorflow``."""

    def __init__(self, hvd):
        self.hvd = hvd
        hvd.init()
        self.rank = hvd.rank()
        self.size = hvd.size()
        self.local_rank = hvd.local_rank()
        self.local_size = hvd.local_size()
        self.backend = "horovod"

    @property
    def is_root(self):
        return self.rank == 0

    def gradient_tape(self, tape):
        return self.hvd.DistributedGradientTape(tape)

    def average(self, tensor):
        return self.hvd.allreduce(tensor, op=self.hvd.Average)

    def broadcast_variables(self, variables):
        self.hvd.broadcast_variables(variables, root_rank=0)

    def broadcast_object(self, value):
        return self.hvd.broadcast_object(value, root_rank=0)


class SingleProcessRuntime:
    """The same interface as HorovodRuntime for one process without Horovod."""

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    is_root = True
    backend = "single process (Horovod not installed)"

    def gradient_tape(self, tape):
        return tape

    def average(self, tensor):
        return tf.identity(tensor)

    def broadcast_variables(self, variables):
        return None

    def broadcast_object(self, value):
        return value


def start_runtime(require_horovod=False):
    """Initialise Horovod (or the single-process stand-in) and return the runtime."""
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        if require_horovod or "HOROVOD_RANK" in os.environ or "OMPI_COMM_WORLD_RANK" in os.environ:
            raise RuntimeError(f"Horovod is required for a multi-rank run but cannot be "
                               f"imported ({error}); install it with scripts/install.sh") from None
        logger.warning("Horovod is not installed (%s); running as a single process", error)
        return SingleProcessRuntime()
    return HorovodRuntime(hvd)


def configure_threads(intra_op_threads, inter_op_threads):
    """Apply TensorFlow thread-pool sizes; 0 keeps TensorFlow's choice. Call before any op."""
    if intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    if inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
