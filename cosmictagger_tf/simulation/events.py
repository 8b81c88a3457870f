"""Event assembly and file writing: cosmics, a neutrino and detector response per entry.

Every entry draws from its own random stream, seeded by ``(seed, entry)``, so an event does not
depend on the events before it and a file is the same for a given seed and settings.
"""
import logging
import time

import numpy as np

from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.data.larcv3_writer import Larcv3Writer
from cosmictagger_tf.simulation import geometry
from cosmictagger_tf.simulation.cosmics import cosmic_muons
from cosmictagger_tf.simulation.neutrino import neutrino_interaction
from cosmictagger_tf.simulation.response import plane_voxels
from cosmictagger_tf.simulation.settings import SimulationSettings
from cosmictagger_tf.simulation.tracks import Deposits

logger = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 10.0


def event_rng(seed, entry):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, entry])))


def simulate_deposits(rng, settings):
    """Return the energy deposits of one event: cosmic muons and maybe a neutrino."""
    parts = [cosmic_muons(rng, settings.cosmic_rate, settings.delta_ray_rate,
                          settings.stopping_fraction)]
    if rng.random() < settings.neutrino_probability:
        parts.append(neutrino_interaction(rng, settings.neutrino_energy_scale))
    return Deposits.concatenate(parts)


def simulate_event(seed, entry, settings=SimulationSettings()):
    """Return one event as ``[(ids, charge, labels), ...]``, one triple per plane.

    ids are ascending voxel ids ``wire * 1280 + tick`` (uint64), charge is float32 ADC and labels
    are uint8 classes on the same voxels.
    """
    rng = event_rng(seed, entry)
    deposits = simulate_deposits(rng, settings)
    planes = []
    for plane in range(geometry.NUM_PLANES):
        ids, charge, labels = plane_voxels(rng, deposits, plane, settings)
        planes.append((ids.astype(np.uint64), charge, labels))
    return planes


def simulate_file(path, num_events, seed, settings=SimulationSettings(), overwrite=False,
                  run=1):
    """Simulate ``num_events`` entries into a larcv3 file; return the events per second.

    The file appears at ``path`` only when complete. Entry i has event id ``(run, seed, i)``.
    """
    settings.validate()
    start = time.perf_counter()
    last_log = start
    with Larcv3Writer(path, overwrite=overwrite) as writer:
        for entry in range(num_events):
            planes = simulate_event(seed, entry, settings)
            writer.write_event({
                fmt.DEFAULT_IMAGE_PRODUCER: [(ids, charge) for ids, charge, _ in planes],
                fmt.DEFAULT_LABEL_PRODUCER: [(ids, labels.astype(np.float32))
                                             for ids, _, labels in planes],
            }, event_id=(run, seed, entry))

            now = time.perf_counter()
            if now - last_log >= LOG_EVERY_SECONDS:
                logger.info("%s: %d of %d events, %.1f events/s", path, entry + 1, num_events,
                            (entry + 1) / (now - start))
                last_log = now
    elapsed = time.perf_counter() - start
    rate = num_events / elapsed if elapsed > 0 else float("inf")
    logger.info("%s: wrote %d events in %.1f s (%.2f events/s)", path, num_events, elapsed, rate)
    return rate
