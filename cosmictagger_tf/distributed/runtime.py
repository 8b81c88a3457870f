"""Horovod start-up, device pinning and the few collective operations the trainer needs.

Horovod is initialised even for one process, so the same training code runs alone or under
``horovodrun`` / ``mpiexec``. Where Horovod is not installed (a notebook, a plain pip install)
a single-process stand-in with the same methods is used, with a warning in the log.
"""
import hashlib
import logging
import os

import tensorflow as tf

logger = logging.getLogger(__name__)

# Launchers that start ranks set one of these; without Horovod such a job cannot cooperate.
_RANK_VARIABLES = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK",
                   "PALS_RANKID", "SLURM_PROCID")


class HorovodRuntime:
    """Rank information and collectives backed by ``horovod.tensorflow``."""

    def __init__(self, hvd, compression="none", num_groups=0):
        self.hvd = hvd
        hvd.init()
        self.rank = hvd.rank()
        self.size = hvd.size()
        self.local_rank = hvd.local_rank()
        self.local_size = hvd.local_size()
        self.backend = "horovod"
        self.compression = compression
        self.num_groups = num_groups
        self._compressor = hvd.Compression.none

    def prepare_compression(self):
        """Check and set up gradient compression; call after pin_devices, as it runs an op."""
        self._compressor = _gradient_compressor(self.hvd, self.compression)

    @property
    def is_root(self):
        return self.rank == 0

    def gradient_tape(self, tape):
        return self.hvd.DistributedGradientTape(tape, compression=self._compressor,
                                                num_groups=self.num_groups)

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

    def prepare_compression(self):
        return None

    def average(self, tensor):
        return tf.identity(tensor)

    def broadcast_variables(self, variables):
        return None

    def broadcast_object(self, value):
        return value


def start_runtime(settings=None):
    """Initialise Horovod (or the single-process stand-in) and return the runtime.

    ``settings`` is a DistributedConfig; its fusion threshold and timeline go into Horovod's
    environment variables, which Horovod reads once, in ``hvd.init()``.
    """
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        if any(name in os.environ for name in _RANK_VARIABLES):
            raise RuntimeError(f"this process was started as one rank of a parallel job, but "
                               f"Horovod cannot be imported ({error}); install it with "
                               f"scripts/install.sh") from None
        logger.warning("Horovod is not installed (%s); running as a single process", error)
        return SingleProcessRuntime()

    if settings is not None:
        _set_horovod_environment(settings)
    return HorovodRuntime(hvd, getattr(settings, "compression", "none"),
                          getattr(settings, "num_groups", 0))


def _set_horovod_environment(settings):
    if settings.fusion_threshold_mb is not None:
        os.environ["HOROVOD_FUSION_THRESHOLD"] = str(int(settings.fusion_threshold_mb * 2**20))
    if settings.timeline:
        os.environ["HOROVOD_TIMELINE"] = settings.timeline
    # A rank that stops sending tensors (hung, not dead) would leave the others waiting in an
    # allreduce for ever; Horovod's stall inspector then shuts the job down instead.
    os.environ.setdefault("HOROVOD_STALL_CHECK_TIME_SECONDS", "60")
    os.environ.setdefault("HOROVOD_STALL_SHUTDOWN_TIME_SECONDS", str(settings.stall_shutdown_s))


def _gradient_compressor(hvd, compression):
    if compression == "fp16":
        return hvd.Compression.fp16
    if compression == "bf16":
        return _bfloat16_compressor(hvd)
    return hvd.Compression.none


def _bfloat16_compressor(hvd):
    from cosmictagger_tf.config import ConfigError

    try:
        # The op's dtype list is checked before anything is sent to the other ranks.
        hvd.allreduce(tf.zeros([1], tf.bfloat16), op=hvd.Sum)
    except (TypeError, tf.errors.InvalidArgumentError):
        raise ConfigError("--horovod_compression=bf16 needs a Horovod build with bfloat16 "
                          "allreduce, such as intel-optimization-for-horovod; this build "
                          "supports fp16") from None

    class BFloat16Compressor(hvd.compression.Compressor):
        """Send floating-point gradients as bfloat16 and restore their dtype on arrival."""

        @staticmethod
        def compress(tensor):
            if tensor.dtype.is_floating and tensor.dtype != tf.bfloat16:
                return tf.cast(tensor, tf.bfloat16), tensor.dtype
            return tensor, None

        @staticmethod
        def decompress(tensor, original_dtype):
            return tensor if original_dtype is None else tf.cast(tensor, original_dtype)

    return BFloat16Compressor


def pin_devices(runtime, intra_op_threads=0, inter_op_threads=0):
    """Give each rank its own accelerator, or its share of the CPU cores; return a description.

    Call before TensorFlow runs its first op. With one GPU or Intel XPU tile per local rank, rank
    ``local_rank`` is given only device ``local_rank``. On CPUs shared by several local ranks, the
    intra-op thread pool defaults to ``cores / local ranks`` unless ``intra_op_threads`` is set.
    """
    for kind in ("GPU", "XPU"):
        devices = tf.config.list_physical_devices(kind)
        if devices:
            device = devices[runtime.local_rank % len(devices)]
            tf.config.set_visible_devices(device, kind)
            if kind == "GPU":
                tf.config.experimental.set_memory_growth(device, True)
            configure_threads(intra_op_threads, inter_op_threads)
            return f"{kind} {device.name} (local rank {runtime.local_rank})"

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not intra_op_threads and runtime.local_size > 1:
        intra_op_threads = max(1, cores // runtime.local_size)
    configure_threads(intra_op_threads, inter_op_threads)
    threads = intra_op_threads or "TensorFlow's default"
    return f"CPU, {threads} intra-op threads of {cores} cores seen by this rank"


def configure_threads(intra_op_threads, inter_op_threads):
    """Apply TensorFlow thread-pool sizes; 0 keeps TensorFlow's choice. Call before any op."""
    if intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    if inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)


def variables_digest(variables):
    """Return a SHA-256 hex digest over the values of ``variables``, in order."""
    digest = hashlib.sha256()
    for variable in variables:
        digest.update(variable.numpy().tobytes())
    return digest.hexdigest()
