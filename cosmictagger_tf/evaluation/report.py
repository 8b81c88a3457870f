"""The evaluation summary as a JSON file and as a table on screen."""
import json
import os

from cosmictagger_tf.evaluation.metrics import DEFINITIONS, METRICS


def metrics_path_for(output_path):
    """Return the default summary path beside a prediction file.

    ``OUT.h5`` gives ``OUT.metrics.json``.
    """
    stem, _ = os.path.splitext(str(output_path))
    return f"{stem}.metrics.json"


def write_summary(path, summary, **context):
    """Write ``summary`` with ``context`` (files, producers) and the definitions as JSON.

    The file is written under a temporary name and renamed, so it is never half written.
    """
    document = {**context, **summary, "definitions": DEFINITIONS}
    partial = f"{path}.partial"
    with open(partial, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(partial, path)
    return path


def format_table(summary, num_planes=3):
    """Return the file-level metrics as a text table: one row per metric, planes and mean."""
    metrics = summary["file"]
    header = ["metric"] + [f"plane {plane}" for plane in range(num_planes)] + ["mean"]
    rows = []
    for metric in METRICS:
        values = [metrics[f"plane{plane}/{metric}"] for plane in range(num_planes)]
        rows.append([metric] + [_format_value(v) for v in values + [metrics[metric]]])

    width = max(len(row[0]) for row in rows + [header])
    lines = [f"{summary['num_events']} events, {summary['num_voxels']:,} charged voxels",
             _format_row(header, width), _format_row(["-" * width] + ["-" * 8] * (len(header) - 1),
                                                     width)]
    lines += [_format_row(row, width) for row in rows]
    return "\n".join(lines)


def _format_value(value):
    return "-" if value is None else f"{value:.4f}"


def _format_row(cells, width):
    return "  ".join([cells[0].ljust(width)] + [cell.rjust(8) for cell in cells[1:]])
