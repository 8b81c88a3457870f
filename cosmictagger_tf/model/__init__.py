"""The multi-plane UResNet: layer definitions and the model builder."""
from cosmictagger_tf.model.uresnet import build_uresnet, convolution_kernels, count_parameters

__all__ = ["build_uresnet", "convolution_kernels", "count_parameters"]
