"""Cosmic muons crossing the TPC during the readout window, with their delta rays (label 1).

Muons come from above with the zenith-angle spectrum of sea-level cosmic rays (intensity ~ cos^2
of the zenith angle, so the rate through a horizontal plane ~ cos^3).
Their arrival time is uniform over a window wider than the readout. A muon that arrives before
or after the trigger has its charge drift for a shorter or longer time, which moves its image
towards or away from the cathode in each TPC by opposite amounts. Charge that would cross the
cathode or the anode in the image is lost. So tracks break at the cathode tick and many are
cut short, as in the real data.
"""
import numpy as np

from cosmictagger_tf.data.larcv3_format import COSMIC
from cosmictagger_tf.simulation import geometry
from cosmictagger_tf.simulation.tracks import Deposits, delta_rays, track

# Muons are started on the plane of the detector's top face, extended this far (cm) beyond each
# side, so that tracks entering through the sides keep the right angular mix.
ENTRY_MARGIN = 700.0
CANDIDATE_BATCH = 256
MIN_LENGTH = 3.0  # cm; shorter clips are corner grazes that leave a few pixels


def zenith_cosines(rng, n):
    """Return cos(zenith) of n muons through a horizontal plane, density ~ cos^3 on (0, 1]."""
    return rng.random(n) ** 0.25


def crossing_muons(rng, count):
    """Return ``(starts, directions, lengths)`` of ``count`` muons that cross the active volume.
    """
    starts, directions, lengths = [np.zeros((0, 3))], [np.zeros((0, 3))], [np.zeros(0)]
    while sum(len(batch) for batch in lengths) < count:
        entry, direction = candidate_muons(rng, CANDIDATE_BATCH)
        t_enter, t_exit = geometry.clip_lines(entry, direction)
        hit = t_exit - t_enter >= MIN_LENGTH
        starts.append(entry[hit] + t_enter[hit, None] * direction[hit])
        directions.append(direction[hit])
        lengths.append((t_exit - t_enter)[hit])
    return (np.concatenate(starts)[:count], np.concatenate(directions)[:count],
            np.concatenate(lengths)[:count])


def candidate_muons(rng, n):
    """Return entry points on the extended top plane and downward directions of n muons."""
    cos_zenith = zenith_cosines(rng, n)
    azimuth = rng.uniform(0, 2 * np.pi, n)
    sin_zenith = np.sqrt(1 - cos_zenith ** 2)
    directions = np.stack([sin_zenith * np.cos(azimuth), -cos_zenith,
                           sin_zenith * np.sin(azimuth)], axis=1)
    entries = np.stack([
        rng.uniform(geometry.LOWER[0] - ENTRY_MARGIN, geometry.UPPER[0] + ENTRY_MARGIN, n),
        np.full(n, geometry.UPPER[1]),
        rng.uniform(geometry.LOWER[2] - ENTRY_MARGIN, geometry.UPPER[2] + ENTRY_MARGIN, n),
    ], axis=1)
    return entries, directions


def cosmic_muons(rng, mean_count, delta_ray_rate, stopping_fraction):
    """Return the deposits of a Poisson number (mean ``mean_count``) of muons crossing the TPC."""
    starts, directions, lengths = crossing_muons(rng, rng.poisson(mean_count))
    muons = []
    for start, direction, length in zip(starts, directions, lengths):
        stopping = None
        if rng.random() < stopping_fraction:
            length *= rng.uniform(0.1, 1.0)
            stopping = "muon"
        muon = track(rng, start, direction, length, COSMIC, scatter=0.002, stopping=stopping)
        muon = Deposits.concatenate([muon, delta_rays(rng, muon, COSMIC, delta_ray_rate)])
        shift = rng.uniform(-geometry.DRIFT_LENGTH, geometry.DRIFT_LENGTH)  # cm
        muons.append(shift_in_time(muon.select(geometry.inside(muon.points)), shift))
    return Deposits.concatenate(muons)


def shift_in_time(deposits, shift):
    """Return deposits as seen when their charge arrives ``shift`` cm of drift late.

    Positive shifts move each TPC's charge towards the cathode at x = 0; deposits whose image
    would leave their own TPC are dropped.
    """
    x = deposits.points[:, 0]
    seen_x = x + np.where(x < 0, shift, -shift)
    same_tpc = (np.sign(seen_x) == np.sign(x)) & (np.abs(seen_x) <= geometry.DRIFT_LENGTH)
    points = deposits.points.copy()
    points[:, 0] = seen_x
    return Deposits(points[same_tpc], deposits.energy[same_tpc], deposits.label[same_tpc])
