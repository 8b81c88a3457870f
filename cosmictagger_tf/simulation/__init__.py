"""Simulation of SBND-like wire-plane events, written as larcv3 files for training and tests.

Public API:
    simulate_event(seed, entry, settings) -> [(ids, charge, labels), ...] per plane
    simulate_file(path, num_events, seed, settings) -> events per second
    default_dataset(cache_dir, train_events, validation_events, seed) -> (train, validation)
    SimulationSettings: the physics and detector-response knobs
    event_statistics, file_events, format_comparison: calibration against real files
"""
from cosmictagger_tf.simulation.calibration import (event_statistics, file_events,
                                                    format_comparison, neutrino_tick_ranges)
from cosmictagger_tf.simulation.dataset import default_dataset
from cosmictagger_tf.simulation.events import simulate_event, simulate_file
from cosmictagger_tf.simulation.settings import SIMULATOR_VERSION, SimulationSettings

__all__ = ["SIMULATOR_VERSION", "SimulationSettings", "default_dataset", "event_statistics",
           "file_events", "format_comparison", "neutrino_tick_ranges", "simulate_event",
           "simulate_file"]
