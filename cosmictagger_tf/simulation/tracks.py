"""Energy deposits of charged-particle tracks and electromagnetic showers in liquid argon.

A deposit set is three arrays: 3-D points (cm), visible energy per point (MeV, the deposited
energy scaled by charge recombination relative to a minimum-ionising particle) and the class
label of the particle that left it. Tracks are sampled in steps of ``STEP_CM`` with Landau-like
fluctuations of the energy loss, multiple-scattering wiggles and Bragg peaks for stopping
particles. Showers are branching cascades of short electron segments and photon gaps.
"""
from dataclasses import dataclass

import numpy as np

STEP_CM = 0.15  # cm, half a wire pitch, so every wire that a track crosses gets deposits
MIP_DEDX = 2.1  # MeV/cm, minimum-ionising muon in liquid argon
RADIATION_LENGTH = 14.0  # cm
PHOTON_CONVERSION_LENGTH = 18.0  # cm, 9/7 of the radiation length
# Recombination (Birks' law): the fraction of ionisation charge that survives falls with dE/dx.
BIRKS_K = 0.07  # cm/MeV, liquid argon at 500 V/cm
CRITICAL_ENERGY = 30.0  # MeV, below it an electron ranges out instead of branching
MAX_SHOWER_SEGMENTS = 120
COMPTON_SPACING = 4.0  # cm of photon path per low-energy Compton electron ("blip")


@dataclass
class Deposits:
    """Points (cm, [n, 3]), energy (MeV, [n]) and class label ([n], uint8) of energy deposits."""

    points: np.ndarray
    energy: np.ndarray
    label: np.ndarray

    @staticmethod
    def empty():
        return Deposits(np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.uint8))

    @staticmethod
    def concatenate(parts):
        parts = [part for part in parts if len(part.energy)]
        if not parts:
            return Deposits.empty()
        return Deposits(np.concatenate([part.points for part in parts]),
                        np.concatenate([part.energy for part in parts]),
                        np.concatenate([part.label for part in parts]))

    def select(self, mask):
        return Deposits(self.points[mask], self.energy[mask], self.label[mask])


def unit(vector):
    vector = np.asarray(vector, dtype=float)
    return vector / np.sqrt(np.einsum("...i,...i->...", vector, vector))[..., None]


def random_direction(rng):
    return unit(rng.normal(size=3))


def deflect(rng, direction, angle_sigma):
    """Return a unit vector deflected from direction by a Gaussian angle (rad) in a random plane."""
    kick = rng.normal(size=3) * angle_sigma
    kick -= kick.dot(direction) * direction
    return unit(direction + kick)


def landau_factors(rng, n, width):
    """Return n energy-loss factors around 1 with a Landau-like (Moyal) high tail."""
    moyal = -np.log(np.maximum(rng.normal(size=n) ** 2, 1e-12))
    return np.clip(1.0 + width * (moyal - 1.27) / 2.0, 0.2, 12.0)


def track(rng, start, direction, length, label, dedx=MIP_DEDX, scatter=0.0, stopping=None,
          landau_width=0.25):
    """Return the deposits of one track of ``length`` cm from ``start``.

    ``scatter`` is the multiple-scattering angle (rad) per sqrt(cm). ``stopping`` names the
    particle that stops at the end ("muon" or "proton") and so gets a Bragg peak.
    """
    steps = max(int(length / STEP_CM), 1)
    directions = np.repeat(unit(direction)[None, :], steps, axis=0)
    if scatter > 0:
        kicks = rng.normal(size=(steps, 3)) * scatter * np.sqrt(STEP_CM)
        directions = unit(directions + np.cumsum(kicks, axis=0))
    points = np.asarray(start) + np.cumsum(directions * STEP_CM, axis=0)

    dedx = np.full(steps, float(dedx))
    if stopping is not None:
        residual_range = length - STEP_CM * np.arange(steps) + STEP_CM / 2
        dedx = np.maximum(dedx, bragg_dedx(residual_range, stopping))
    dedx = dedx * landau_factors(rng, steps, landau_width)
    energy = dedx * STEP_CM * recombination(dedx) / recombination(MIP_DEDX)
    return Deposits(points, energy, np.full(steps, label, np.uint8))


def recombination(dedx):
    """Return the fraction of ionisation charge that escapes recombination at dE/dx (MeV/cm)."""
    return 1.0 / (1.0 + BIRKS_K * dedx)


def bragg_dedx(residual_range, particle):
    """Return dE/dx (MeV/cm) at a residual range (cm) of a stopping muon or proton."""
    if particle == "proton":
        return 17.0 * residual_range ** -0.42
    return 8.0 * residual_range ** -0.37


def delta_rays(rng, muon, label, rate_per_cm):
    """Return short electron tracks knocked out along a muon track at ``rate_per_cm``."""
    count = rng.poisson(rate_per_cm * len(muon.energy) * STEP_CM)
    rays = []
    for origin in muon.points[rng.integers(0, len(muon.energy), count)] if count else []:
        length = min(rng.pareto(1.5) * 1.5 + 1.0, 25.0)  # cm, a falling range spectrum
        rays.append(track(rng, origin, random_direction(rng), length, label, scatter=0.25,
                          stopping="muon", landau_width=0.3))
    return Deposits.concatenate(rays)


def shower(rng, start, direction, energy, label, first_is_photon=False):
    """Return the deposits of an electromagnetic shower of ``energy`` MeV starting at start.

    Each branch travels, deposits along its charged segments, and splits in two below the
    critical energy; photon branches leave a gap before converting.
    """
    branches = [(np.asarray(start, float), unit(direction), float(energy), first_is_photon)]
    parts, segments = [], 0
    while branches:
        position, heading, branch_energy, is_photon = branches.pop()
        segments += 1
        if is_photon:
            gap = rng.exponential(PHOTON_CONVERSION_LENGTH)
            parts.append(compton_blips(rng, position, heading, gap, label))
            position = position + heading * gap

        if branch_energy < CRITICAL_ENERGY or segments > MAX_SHOWER_SEGMENTS:
            length = max(branch_energy / MIP_DEDX, STEP_CM)
            parts.append(track(rng, position, heading, length, label, scatter=0.35,
                               landau_width=0.3))
            continue

        length = rng.exponential(RADIATION_LENGTH * 0.5) + 1.0
        segment = track(rng, position, heading, length, label, scatter=0.1, landau_width=0.3)
        parts.append(segment)
        remaining = max(branch_energy - segment.energy.sum(), 0.0)
        split = rng.uniform(0.15, 0.85)
        for fraction in (split, 1.0 - split):
            spread = min(0.8, 4.0 / np.sqrt(max(remaining * fraction, 1.0)))  # rad
            branches.append((segment.points[-1], deflect(rng, heading, spread),
                             remaining * fraction, bool(rng.random() < 0.5)))
    return Deposits.concatenate(parts)


def compton_blips(rng, start, heading, path, label):
    """Return the small isolated deposits that Compton electrons leave along a photon's path."""
    count = rng.poisson(path / COMPTON_SPACING)
    blips = [track(rng, start + heading * rng.uniform(0, path) + rng.normal(size=3) * 2.0,
                   random_direction(rng), rng.uniform(0.2, 1.5), label, scatter=0.3)
             for _ in range(count)]
    return Deposits.concatenate(blips)
