"""Wire response and noise: deposits of one event become the stored voxels of each plane.

Per plane, deposits are projected to (tick, wire), spread over neighbouring ticks by diffusion
(wider for longer drifts), converted to ADC and summed per pixel. A pixel is labelled with the
particle class whose own charge there reaches ``label_min_charge``, neutrino before cosmic. Charge
induced on neighbouring wires, electronics noise and noise hits add charge labelled background,
and pixels below the threshold are dropped. Noise hits are short runs along the time axis. In
each TPC one induction plane is much noisier than the other, as in SBND data.
"""
import numpy as np

from cosmictagger_tf.data.larcv3_format import BACKGROUND, COSMIC, NEUTRINO
from cosmictagger_tf.simulation import geometry

TICK_OFFSETS = np.arange(-2, 3)
NOISE_RUN_MEAN = 1.3  # ticks, mean length of a noise hit along the time axis
NOISE_TAIL = 0.72  # ADC, exponential slope of noise-hit charge above the threshold
# Induction plane whose half of the drift (first tick, last tick + 1) carries the many noise hits.
NOISY_HALF = {0: (geometry.CATHODE_TICK, geometry.NUM_TICKS), 1: (0, geometry.CATHODE_TICK)}


def plane_voxels(rng, deposits, plane, settings):
    """Return ``(ids, charge, labels)`` of one plane: ascending ids ``wire * 1280 + tick``."""
    ids, charge, labels = signal_pixels(deposits, plane, settings)
    ids, charge, labels = add_crosstalk(ids, charge, labels, plane, settings)
    charge = charge + rng.normal(0.0, settings.electronics_noise, len(charge))
    ids, charge, labels = add_noise_hits(rng, ids, charge, labels, plane, settings)

    keep = charge >= settings.threshold
    return ids[keep], charge[keep].astype(np.float32), labels[keep]


def signal_pixels(deposits, plane, settings):
    """Return the pixels that deposits reach on one plane, with their charge and label."""
    if not len(deposits.energy):
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint8)

    ticks = geometry.drift_ticks(deposits.points[:, 0])
    wires = np.floor(geometry.wire_coordinate(deposits.points, plane)).astype(np.int64)
    drift_fraction = geometry.drift_distance(deposits.points[:, 0]) / geometry.DRIFT_LENGTH
    sigma = 0.35 + 0.35 * np.sqrt(drift_fraction)  # ticks

    base = np.floor(ticks).astype(np.int64)
    centres = TICK_OFFSETS[None, :] + 0.5 - (ticks - base)[:, None]
    weights = np.exp(-0.5 * (centres / sigma[:, None]) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    gain = (settings.collection_gain if plane == geometry.COLLECTION_PLANE
            else settings.induction_gain)
    adc = weights * (deposits.energy * gain)[:, None]

    tick_ids = base[:, None] + TICK_OFFSETS[None, :]
    first, last = geometry.wire_range(plane)
    valid = ((tick_ids >= 0) & (tick_ids < geometry.NUM_TICKS) & (adc > 0.05)
             & ((wires >= first) & (wires <= last))[:, None])
    flat_ids = (wires[:, None] * geometry.NUM_TICKS + tick_ids)[valid]
    adc = adc[valid]
    is_neutrino = np.broadcast_to((deposits.label == NEUTRINO)[:, None], valid.shape)[valid]

    ids, inverse = np.unique(flat_ids, return_inverse=True)
    charge = np.bincount(inverse, adc, len(ids))
    neutrino_charge = np.bincount(inverse, adc * is_neutrino, len(ids))
    labels = np.where(neutrino_charge >= settings.label_min_charge, NEUTRINO,
                      np.where(charge - neutrino_charge >= settings.label_min_charge, COSMIC,
                               BACKGROUND)).astype(np.uint8)
    return ids, compress(charge, settings), labels


def compress(charge, settings):
    """Return pulse heights compressed above ``compression_scale`` ADC, linear below it.

    Real processed wire signals grow more slowly than the deposited charge for large pulses, such
    as tracks that run along a wire or along the drift, so a linear response overshoots their
    charge tail. NOTE: the logarithm is an empirical fit to that tail, not a model of the
    electronics.
    """
    scale = settings.compression_scale
    return scale * np.log1p(charge / scale) if scale > 0 else charge


def add_crosstalk(ids, charge, labels, plane, settings):
    """Add ``crosstalk`` of each pixel's charge to the same tick on both neighbouring wires."""
    if not len(ids) or settings.crosstalk == 0:
        return ids, charge, labels
    first, last = geometry.wire_range(plane)
    wires = ids // geometry.NUM_TICKS
    neighbour_ids, neighbour_charge = [], []
    for step in (-1, 1):
        on_plane = (wires + step >= first) & (wires + step <= last)
        neighbour_ids.append(ids[on_plane] + step * geometry.NUM_TICKS)
        neighbour_charge.append(charge[on_plane] * settings.crosstalk)
    return merge_pixels(ids, charge, labels, np.concatenate(neighbour_ids),
                        np.concatenate(neighbour_charge))


def add_noise_hits(rng, ids, charge, labels, plane, settings):
    """Add noise hits, labelled background, where no pixel has charge yet."""
    noise_ids = []
    for (first_tick, end_tick), mean_hits in noise_regions(plane, settings):
        noise_ids.append(noise_runs(rng, plane, first_tick, end_tick, rng.poisson(mean_hits)))
    noise_ids = np.unique(np.concatenate(noise_ids))
    noise_ids = noise_ids[~np.isin(noise_ids, ids, assume_unique=True)]
    noise_charge = settings.threshold + rng.exponential(NOISE_TAIL, len(noise_ids))

    all_ids = np.concatenate([ids, noise_ids])
    order = np.argsort(all_ids, kind="stable")
    return (all_ids[order], np.concatenate([charge, noise_charge])[order],
            np.concatenate([labels, np.zeros(len(noise_ids), np.uint8)])[order])


def noise_regions(plane, settings):
    """Return ``[((first tick, end tick), mean hits), ...]`` of one plane's noise."""
    if plane == geometry.COLLECTION_PLANE:
        return [((0, geometry.NUM_TICKS), settings.collection_hits)]
    noisy = NOISY_HALF[plane]
    quiet = (0, geometry.CATHODE_TICK) if noisy[0] else (geometry.CATHODE_TICK,
                                                          geometry.NUM_TICKS)
    return [(noisy, settings.noisy_half_hits), (quiet, settings.quiet_half_hits)]


def noise_runs(rng, plane, first_tick, end_tick, count):
    """Return voxel ids of ``count`` noise hits: runs of consecutive ticks on random wires."""
    first_wire, last_wire = geometry.wire_range(plane)
    wires = rng.integers(first_wire, last_wire + 1, count)
    starts = rng.integers(first_tick, end_tick, count)
    lengths = rng.geometric(1.0 / NOISE_RUN_MEAN, count)
    run_of = np.repeat(np.arange(count), lengths)
    position = np.arange(len(run_of)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ticks = np.minimum(starts[run_of] + position, end_tick - 1)
    return wires[run_of] * geometry.NUM_TICKS + ticks


def merge_pixels(ids, charge, labels, extra_ids, extra_charge):
    """Add background-labelled charge on extra ids to the pixels; return sorted unique pixels."""
    all_ids = np.concatenate([ids, extra_ids])
    merged_ids, inverse = np.unique(all_ids, return_inverse=True)
    merged_charge = np.bincount(inverse, np.concatenate([charge, extra_charge]), len(merged_ids))
    merged_labels = np.zeros(len(merged_ids), np.uint8)
    merged_labels[inverse[:len(ids)]] = labels
    return merged_ids, merged_charge, merged_labels
