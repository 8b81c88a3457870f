"""Event displays: the charge, true and predicted classes of each wire plane of an event.

``python -m cosmictagger_tf.display`` draws an entry of a file to a PNG; from Python,
``event_image`` returns the drawing as an RGB array (for ``tf.summary.image``) and
``save_event_png`` writes it to a file.
"""
from cosmictagger_tf.display.drawing import event_figure, event_image, save_event_png

__all__ = ["event_figure", "event_image", "save_event_png"]
