"""Training pieces: loss, metrics, learning-rate schedule and the training step."""
