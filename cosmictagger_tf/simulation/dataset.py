"""The built-in default dataset: a simulated training file and validation file, made once.

Files live in a cache folder under names that encode the simulator version, the seed and the
number of events, so a change of any of them makes new files and an existing complete file is
reused. A file is written under a name unique to the process and renamed into place when it is
complete. So an interrupted run leaves no file under the final name, and processes that start at
the same time (several ranks of one job) never write into the same file.
"""
import logging
import os
from pathlib import Path

from cosmictagger_tf.simulation.events import simulate_file
from cosmictagger_tf.simulation.settings import SIMULATOR_VERSION, SimulationSettings

logger = logging.getLogger(__name__)

# 384 events: 22 s of simulation at the 17.7 events/s measured in one process on a two-core
# machine, about 40 s when other jobs share the cores, and about 210 MB of files.
DEFAULT_TRAIN_EVENTS = 320
DEFAULT_VALIDATION_EVENTS = 64
DEFAULT_SEED = 2024
# The validation file draws from a different stream than the training file of the same seed.
VALIDATION_SEED_OFFSET = 1_000_003
DEFAULT_CACHE_DIR = Path(os.environ.get("COSMICTAGGER_CACHE",
                                        Path.home() / ".cache" / "cosmictagger_tf"))


def dataset_file_name(split, num_events, seed):
    """Return the cache file name of one split, e.g. ``sim-v1-seed2024-train-320.h5``."""
    return f"sim-v{SIMULATOR_VERSION}-seed{seed}-{split}-{num_events}.h5"


def default_dataset(cache_dir=DEFAULT_CACHE_DIR, train_events=DEFAULT_TRAIN_EVENTS,
                    validation_events=DEFAULT_VALIDATION_EVENTS, seed=DEFAULT_SEED):
    """Return ``(train_path, validation_path)``, simulating the files that are not cached yet."""
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    splits = [("train", train_events, seed),
              ("validation", validation_events, seed + VALIDATION_SEED_OFFSET)]
    paths = []
    for split, num_events, split_seed in splits:
        if num_events < 1:
            raise ValueError(f"{split}_events must be at least 1, got {num_events}")
        path = cache_dir / dataset_file_name(split, num_events, seed)
        if path.exists():
            logger.info("default dataset: reusing %s (%d simulated %s events)", path,
                        num_events, split)
        else:
            logger.info("default dataset: simulating %d %s events into %s", num_events, split,
                        path)
            simulate_into_place(path, num_events, split_seed)
        paths.append(path)
    return tuple(paths)


def simulate_into_place(path, num_events, seed):
    """Simulate a file under a temporary name of this process, then rename it to ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        simulate_file(temporary, num_events, seed, SimulationSettings(), overwrite=True)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
