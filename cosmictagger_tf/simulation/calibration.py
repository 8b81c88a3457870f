"""Calibration statistics of events: the figures that compare simulated events with real ones.

Statistics per plane are the mean number of stored voxels per event, the charge median and upper
percentiles (ADC), the occupied wire range and the class fractions among stored (charged) voxels.
The class fractions over all planes come on top. Events are ``[(ids, charge, labels), ...]`` per
plane, as ``simulate_event`` returns them and as ``file_events`` reads them from a larcv3 file.
"""
import numpy as np

from cosmictagger_tf.data.larcv3_format import NEUTRINO, NUM_CLASSES
from cosmictagger_tf.data.larcv3_reader import Larcv3File


def file_events(path, entries=None):
    """Yield the events of a larcv3 file as ``[(ids, charge, labels), ...]`` per plane."""
    larcv_file = Larcv3File(path)
    try:
        entries = range(larcv_file.num_entries) if entries is None else entries
        for entry in entries:
            plane_index, ids, charge, labels = larcv_file.read_entry_sparse(entry)
            yield [(ids[plane_index == plane], charge[plane_index == plane],
                    labels[plane_index == plane]) for plane in range(larcv_file.num_planes)]
    finally:
        larcv_file.close()


def event_statistics(events, ticks_per_wire=1280):
    """Return the calibration statistics of an iterable of events as a dict."""
    per_plane = None
    num_events = 0
    for planes in events:
        if per_plane is None:
            per_plane = [{"counts": [], "charge": [], "labels": [], "wires": []} for _ in planes]
        for store, (ids, charge, labels) in zip(per_plane, planes):
            store["counts"].append(len(ids))
            store["charge"].append(np.asarray(charge, np.float64))
            store["labels"].append(np.asarray(labels, np.int64))
            store["wires"].append(np.asarray(ids, np.int64) // ticks_per_wire)
        num_events += 1
    if not num_events:
        raise ValueError("no events to compute statistics on")

    planes = [plane_statistics(store) for store in per_plane]
    all_labels = np.concatenate([np.concatenate(store["labels"]) for store in per_plane])
    return {"events": num_events, "planes": planes, "fractions": class_fractions(all_labels)}


def plane_statistics(store):
    charge = np.concatenate(store["charge"])
    wires = np.concatenate(store["wires"])
    return {
        "voxels": float(np.mean(store["counts"])),
        "charge_median": float(np.median(charge)),
        "charge_p90": float(np.percentile(charge, 90)),
        "charge_p99": float(np.percentile(charge, 99)),
        "first_wire": int(wires.min()),
        "last_wire": int(wires.max()),
        "fractions": class_fractions(np.concatenate(store["labels"])),
    }


def class_fractions(labels):
    """Return the fractions of background, cosmic and neutrino among labelled voxels."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)[:NUM_CLASSES]
    return tuple(float(count) / max(len(labels), 1) for count in counts)


def neutrino_tick_ranges(planes, ticks_per_wire=1280):
    """Return ``(first tick, last tick)`` of neutrino voxels per plane, None where a plane has none.
    """
    ranges = []
    for ids, _, labels in planes:
        ticks = np.asarray(ids, np.int64)[np.asarray(labels) == NEUTRINO] % ticks_per_wire
        ranges.append((int(ticks.min()), int(ticks.max())) if len(ticks) else None)
    return ranges


def comparison_rows(real, simulated):
    """Return ``[(statistic, real value, simulated value), ...]`` of two statistics dicts."""
    rows = []
    for plane, (real_plane, sim_plane) in enumerate(zip(real["planes"], simulated["planes"])):
        for name in ("voxels", "charge_median", "charge_p90", "charge_p99", "first_wire",
                     "last_wire"):
            rows.append((f"plane {plane} {name}", real_plane[name], sim_plane[name]))
        for name, real_value, sim_value in zip(("background", "cosmic", "neutrino"),
                                               real_plane["fractions"],
                                               sim_plane["fractions"]):
            rows.append((f"plane {plane} {name} fraction", real_value, sim_value))
    for name, real_value, sim_value in zip(("background", "cosmic", "neutrino"),
                                           real["fractions"], simulated["fractions"]):
        rows.append((f"all planes {name} fraction", real_value, sim_value))
    return rows


def format_comparison(real, simulated):
    """Return a Markdown table of real against simulated statistics."""
    lines = [f"| statistic | real ({real['events']} events) | simulated "
             f"({simulated['events']} events) |", "|---|---|---|"]
    for name, real_value, sim_value in comparison_rows(real, simulated):
        lines.append(f"| {name} | {real_value:.3g} | {sim_value:.3g} |")
    return "\n".join(lines)
