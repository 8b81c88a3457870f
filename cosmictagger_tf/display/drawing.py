"""Draw one event: per wire plane, the charge (log scale), the true and the predicted classes.

Rows are planes; columns are charge, true labels and predicted labels (a column is left out when
its input is None). Class panels colour only the charged pixels: background grey, cosmic blue,
neutrino red, empty pixels white. Large planes are shrunk for drawing by taking the maximum over
blocks of pixels, so thin tracks stay visible and neutrino pixels win over cosmic ones.

``event_image`` returns an RGB array for ``tf.summary.image``; ``save_event_png`` writes a PNG.
Drawing uses matplotlib's Agg canvas directly, without pyplot, so it is safe in a training loop.
"""
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from cosmictagger_tf.data import larcv3_format as fmt

EMPTY = -1
CLASS_COLOURS = {EMPTY: (1.0, 1.0, 1.0), fmt.BACKGROUND: (0.72, 0.72, 0.72),
                 fmt.COSMIC: (0.12, 0.40, 0.85), fmt.NEUTRINO: (0.90, 0.12, 0.10)}
CHARGE_COLOURMAP = "viridis"

DPI = 100
PANEL_WIDTH_PX = 480           # width of one panel's image area before the layout's margins
MAX_DRAWN_WIDTH = 512          # planes wider than this are shrunk by a power of two
ROW_MARGIN_PX = 70             # axis labels and panel title of one row
HEADER_PX = 90                 # title above and legend below the panels


def figure_pixels(num_columns, num_planes, image_shape):
    """Return (width, height) in pixels of the figure for planes of ``image_shape``."""
    height, width = image_shape
    panel_height = int(round(PANEL_WIDTH_PX * height / width))
    return (num_columns * (PANEL_WIDTH_PX + 120),
            HEADER_PX + num_planes * (panel_height + ROW_MARGIN_PX))


def event_figure(charge, labels=None, predictions=None, title=""):
    """Return a matplotlib Figure of one event.

    ``charge`` is float ``[H, W, P]``; ``labels`` and ``predictions`` are integer class ids
    ``[H, W, P]`` or None. Pixels without charge are drawn empty in the class panels.
    """
    charge = np.asarray(charge, dtype=np.float32)
    columns = [("charge", None)]
    columns += [("true labels", labels)] if labels is not None else []
    columns += [("predicted labels", predictions)] if predictions is not None else []
    height, width, num_planes = charge.shape

    width_px, height_px = figure_pixels(len(columns), num_planes, (height, width))
    # A hundredth of a pixel more keeps float rounding from dropping the last pixel row.
    figure = Figure(figsize=((width_px + 0.01) / DPI, (height_px + 0.01) / DPI), dpi=DPI,
                    layout="constrained")
    axes = figure.subplots(num_planes, len(columns), squeeze=False)

    factor = _drawing_factor(width)
    norm = _charge_norm(charge)
    extent = (0, width, 0, height)
    for plane in range(num_planes):
        plane_charge = block_max(charge[:, :, plane], factor, 0.0)
        for column, (name, classes) in enumerate(columns):
            ax = axes[plane, column]
            if classes is None:
                drawn = np.ma.masked_less_equal(plane_charge, 0.0)
                image = ax.imshow(drawn, cmap=_charge_colourmap(), norm=norm, origin="lower",
                                  extent=extent, interpolation="nearest", aspect="auto")
                figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="charge")
            else:
                codes = class_codes(charge[:, :, plane], np.asarray(classes)[:, :, plane])
                ax.imshow(class_rgb(block_max(codes, factor, EMPTY)), origin="lower",
                          extent=extent, interpolation="nearest", aspect="auto")
            ax.set_title(f"plane {plane}: {name}", fontsize=10)
            ax.set_xlabel("wire", fontsize=8)
            ax.set_ylabel("time tick", fontsize=8)
            ax.tick_params(labelsize=7)

    figure.suptitle(title, fontsize=12)
    if len(columns) > 1:
        figure.legend(handles=_legend_handles(), loc="outside lower center", ncols=4,
                      fontsize=10, frameon=False)
    return figure


def event_image(charge, labels=None, predictions=None, title=""):
    """Return the event drawing as uint8 RGB ``[height, width, 3]``.

    For TensorBoard: ``tf.summary.image("event", event_image(...)[None], step=step)``.
    """
    figure = event_figure(charge, labels, predictions, title)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_event_png(path, charge, labels=None, predictions=None, title=""):
    """Write the event drawing to ``path`` as PNG; return the path."""
    figure = event_figure(charge, labels, predictions, title)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI, format="png")
    return path


def class_codes(charge, classes):
    """Return int8 codes per pixel: EMPTY where there is no charge, the class elsewhere."""
    classes = np.clip(np.asarray(classes), fmt.BACKGROUND, fmt.NEUTRINO).astype(np.int8)
    return np.where(np.asarray(charge) > 0, classes, np.int8(EMPTY)).astype(np.int8)


def class_rgb(codes):
    """Return float RGB ``[H, W, 3]`` of class codes."""
    palette = np.array([CLASS_COLOURS[code] for code in (EMPTY, fmt.BACKGROUND, fmt.COSMIC,
                                                          fmt.NEUTRINO)])
    return palette[np.asarray(codes, dtype=np.int64) - EMPTY]


def block_max(image, factor, fill):
    """Return the maximum over ``factor x factor`` blocks, padding the edges with ``fill``."""
    if factor == 1:
        return image
    height, width = image.shape
    padded_height = -(-height // factor) * factor
    padded_width = -(-width // factor) * factor
    padded = np.full((padded_height, padded_width), fill, dtype=image.dtype)
    padded[:height, :width] = image
    blocks = padded.reshape(padded_height // factor, factor, padded_width // factor, factor)
    return blocks.max(axis=(1, 3))


def _drawing_factor(width):
    return 2 ** max(0, math.ceil(math.log2(width / MAX_DRAWN_WIDTH)))


def _charge_norm(charge):
    positive = charge[charge > 0]
    if positive.size == 0:
        return LogNorm(vmin=1.0, vmax=10.0)
    low, high = float(positive.min()), float(positive.max())
    return LogNorm(vmin=low, vmax=max(high, low * 10.0))


def _charge_colourmap():
    from matplotlib import colormaps

    colourmap = colormaps[CHARGE_COLOURMAP].copy()
    colourmap.set_bad("white")
    return colourmap


def _legend_handles():
    names = {EMPTY: "no charge", fmt.BACKGROUND: "background", fmt.COSMIC: "cosmic",
             fmt.NEUTRINO: "neutrino"}
    return [Patch(facecolor=CLASS_COLOURS[code], edgecolor="black", linewidth=0.5,
                  label=names[code]) for code in (EMPTY, fmt.BACKGROUND, fmt.COSMIC,
                                                 fmt.NEUTRINO)]
