"""Write predictions as sparse2d producers of a larcv3 file that any larcv3 reader can open.

The output has the input's ``Events/event_id`` rows, entry for entry, and three sparse2d
producers on the charged voxels of the input's image producer, with the same ids in the same
order, plane by plane:

    cosmictagger_class           predicted class: 0 background, 1 cosmic, 2 neutrino
    cosmictagger_cosmic_score    softmax score of the cosmic class, in [0, 1]
    cosmictagger_neutrino_score  softmax score of the neutrino class, in [0, 1]

The background score is one minus the other two. The file is written as ``<path>.partial`` and
renamed when complete, so an interrupted run leaves no output file behind.
"""
from cosmictagger_tf.data import larcv3_format as fmt
from cosmictagger_tf.data.larcv3_writer import Larcv3Writer

CLASS_PRODUCER = "cosmictagger_class"
COSMIC_SCORE_PRODUCER = "cosmictagger_cosmic_score"
NEUTRINO_SCORE_PRODUCER = "cosmictagger_neutrino_score"
PREDICTION_PRODUCERS = (CLASS_PRODUCER, COSMIC_SCORE_PRODUCER, NEUTRINO_SCORE_PRODUCER)


class PredictionWriter:
    """Context manager that writes one EventPrediction per entry."""

    def __init__(self, path, number_of_voxels, num_planes=fmt.NUM_PLANES, overwrite=False):
        self._writer = Larcv3Writer(path, PREDICTION_PRODUCERS, number_of_voxels, num_planes,
                                    overwrite=overwrite)
        self.path = self._writer.path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        return self._writer.__exit__(exc_type, exc_value, traceback)

    def write(self, event):
        """Write the predicted class and the cosmic and neutrino scores of one event."""
        products = {producer: [] for producer in PREDICTION_PRODUCERS}
        for plane in event.planes:
            products[CLASS_PRODUCER].append((plane.ids, plane.classes))
            products[COSMIC_SCORE_PRODUCER].append((plane.ids, plane.scores[:, fmt.COSMIC]))
            products[NEUTRINO_SCORE_PRODUCER].append((plane.ids, plane.scores[:, fmt.NEUTRINO]))
        self._writer.write_event(products, event.event_id)
