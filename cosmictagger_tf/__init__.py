"""cosmictagger_tf: multi-plane UResNet cosmic tagging for liquid-argon TPC images."""
__version__ = "0.1.0"
