"""Detector geometry of the toy SBND TPC and the projection of 3-D points onto the wire planes.

Coordinates are in cm. x is the drift axis: two TPCs share a cathode at x = 0 and read out at
anodes at x = -200 and x = +200. y points up and z along the beam. The image's time axis (ticks)
is the drift coordinate, shared by all planes: tick 0 is the anode at x = -200, tick 639 the
cathode and tick 1279 the anode at x = +200. Planes 0 and 1 are induction planes with wires at
+60 and -60 degrees from the vertical, and plane 2 is the collection plane with vertical wires.
The two TPCs are mirror images, so the induction wire angles swap between them.
"""
import numpy as np

from cosmictagger_tf.data.larcv3_format import IMAGE_HEIGHT, IMAGE_WIDTH

NUM_TICKS = IMAGE_HEIGHT
NUM_IMAGE_WIRES = IMAGE_WIDTH

DRIFT_LENGTH = 200.0  # cm, cathode to anode in one TPC
HALF_HEIGHT = 200.0  # cm, y runs over [-200, 200]
LENGTH = 500.0  # cm, z runs over [0, 500]
TICK_CM = 2 * DRIFT_LENGTH / NUM_TICKS  # 0.3125 cm of drift per tick
WIRE_PITCH = 0.3  # cm
CATHODE_TICK = NUM_TICKS // 2

INDUCTION_ANGLE = np.radians(60.0)
# First image column of each plane; the planes are centred in the 2048-wire image as in SBND data.
INDUCTION_FIRST_WIRE = 31
COLLECTION_FIRST_WIRE = 191
INDUCTION_U_MIN = -HALF_HEIGHT * np.sin(INDUCTION_ANGLE)  # cm, lowest coordinate across wires
INDUCTION_WIRES = int((LENGTH * np.cos(INDUCTION_ANGLE) + 2 * HALF_HEIGHT
                       * np.sin(INDUCTION_ANGLE)) / WIRE_PITCH)  # 1986
COLLECTION_WIRES = int(LENGTH / WIRE_PITCH)  # 1666
NUM_PLANES = 3
COLLECTION_PLANE = 2

LOWER = np.array([-DRIFT_LENGTH, -HALF_HEIGHT, 0.0])
UPPER = np.array([DRIFT_LENGTH, HALF_HEIGHT, LENGTH])


def wire_range(plane):
    """Return ``(first, last)`` image column of a plane's wires."""
    if plane == COLLECTION_PLANE:
        return COLLECTION_FIRST_WIRE, COLLECTION_FIRST_WIRE + COLLECTION_WIRES - 1
    return INDUCTION_FIRST_WIRE, INDUCTION_FIRST_WIRE + INDUCTION_WIRES - 1


def drift_ticks(x):
    """Return the fractional tick of drift positions x (cm)."""
    return (np.asarray(x) + DRIFT_LENGTH) / TICK_CM


def drift_distance(x):
    """Return the distance (cm) that ionisation at x drifts to its anode."""
    return DRIFT_LENGTH - np.abs(x)


def wire_coordinate(points, plane):
    """Return the fractional image column of 3-D points (cm) on one plane."""
    y, z = points[:, 1], points[:, 2]
    if plane == COLLECTION_PLANE:
        return COLLECTION_FIRST_WIRE + z / WIRE_PITCH

    # +1 for wires rising at +60 degrees. The mirrored TPC at x > 0 has the other angle.
    sign = np.where(points[:, 0] < 0, 1.0, -1.0) * (1.0 if plane == 0 else -1.0)
    u = z * np.cos(INDUCTION_ANGLE) - sign * y * np.sin(INDUCTION_ANGLE)
    return INDUCTION_FIRST_WIRE + (u - INDUCTION_U_MIN) / WIRE_PITCH


def inside(points, margin=0.0):
    """Return a mask of points inside the active volume, shrunk by margin (cm)."""
    return np.all((points >= LOWER + margin) & (points <= UPPER - margin), axis=1)


def clip_lines(starts, directions, lower=LOWER, upper=UPPER):
    """Return ``(t_enter, t_exit)`` of lines ``start + t * direction`` in a box, per line.

    Lines that miss the box get ``t_exit <= t_enter``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        t_lower = (lower - starts) / directions
        t_upper = (upper - starts) / directions
    # A line parallel to a face is inside that slab for all t, or for none.
    parallel = directions == 0
    outside = parallel & ((starts < lower) | (starts > upper))
    t_near = np.where(parallel, -np.inf, np.minimum(t_lower, t_upper))
    t_far = np.where(parallel, np.where(outside, -np.inf, np.inf), np.maximum(t_lower, t_upper))
    return t_near.max(axis=1), t_far.min(axis=1)
