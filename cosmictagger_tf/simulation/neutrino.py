"""Neutrino interactions inside the TPC: a vertex with tracks and showers (label 2).

The mix is a rough picture of the SBND beam. Charged-current muon-neutrino events have a long
muon, a few short protons and sometimes a neutral pion whose two photons shower. Electron-neutrino
events have an electron shower, and neutral-current events have protons, sometimes a charged pion
and neutral-pion showers. Energies are in MeV and lengths in cm.
"""
import numpy as np

from cosmictagger_tf.data.larcv3_format import NEUTRINO
from cosmictagger_tf.simulation import geometry
from cosmictagger_tf.simulation.tracks import (Deposits, delta_rays, random_direction, shower,
                                               track, unit)

VERTEX_MARGIN = 15.0  # cm inside the active volume
BEAM = np.array([0.0, 0.0, 1.0])


def neutrino_interaction(rng, energy_scale=1.0):
    """Return the deposits of one interaction at a random vertex in the active volume."""
    vertex = rng.uniform(geometry.LOWER + VERTEX_MARGIN, geometry.UPPER - VERTEX_MARGIN)
    kind = rng.choice(["numu_cc", "nue_cc", "nc"], p=[0.7, 0.1, 0.2])
    parts = []

    if kind == "numu_cc":
        direction = forward_direction(rng, spread=0.6)
        length = min(rng.exponential(120.0 * energy_scale) + 20.0, 500.0)
        muon = track(rng, vertex, direction, length, NEUTRINO, scatter=0.01, stopping="muon")
        parts += [muon, delta_rays(rng, muon, NEUTRINO, rate_per_cm=0.05)]
    if kind == "nue_cc":
        parts.append(shower(rng, vertex, forward_direction(rng, spread=0.5),
                            rng.uniform(200.0, 1200.0) * energy_scale, NEUTRINO))
    if kind == "nc" and rng.random() < 0.5:
        length = rng.exponential(40.0 * energy_scale) + 5.0
        parts.append(track(rng, vertex, random_direction(rng), length, NEUTRINO, scatter=0.03,
                           stopping="muon"))

    for _ in range(rng.poisson(1.5)):
        length = rng.exponential(6.0 * energy_scale) + 0.5
        parts.append(track(rng, vertex, random_direction(rng), length, NEUTRINO,
                           dedx=4.5, scatter=0.02, stopping="proton", landau_width=0.25))

    pion_probability = {"numu_cc": 0.35, "nue_cc": 0.2, "nc": 0.7}[kind]
    if rng.random() < pion_probability:
        parts += neutral_pion_photons(rng, vertex, energy_scale)

    deposits = Deposits.concatenate(parts)
    return deposits.select(geometry.inside(deposits.points))


def forward_direction(rng, spread):
    """Return a direction around the beam axis with a Gaussian spread (rad) per component."""
    return unit(BEAM + rng.normal(size=3) * spread)


def neutral_pion_photons(rng, vertex, energy_scale):
    """Return the two photon showers of a neutral-pion decay at the vertex."""
    energy = (rng.exponential(250.0) + 140.0) * energy_scale
    share = rng.uniform(0.1, 0.9)
    first = random_direction(rng)
    second = unit(-first + rng.normal(size=3) * 0.8 + BEAM)
    return [shower(rng, vertex, first, energy * share, NEUTRINO, first_is_photon=True),
            shower(rng, vertex, second, energy * (1 - share), NEUTRINO, first_is_photon=True)]

