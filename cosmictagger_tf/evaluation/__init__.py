"""Measuring a tagger's predictions against the labels of a file.

Modules, one job each:
    metrics          metric definitions and their accumulation over events and planes
    report           the summary as JSON and as a table on screen
    prediction_file  evaluate a prediction file written by ``cosmictagger_tf.infer``

``python -m cosmictagger_tf.evaluation --data_file=IN --predictions=P`` evaluates an existing
prediction file.
"""
