"""Version check of Intel Extension for TensorFlow against TensorFlow, run before TF loads.

TensorFlow loads every plugin in ``site-packages/tensorflow-plugins`` when it is imported, and a
plugin built for another TensorFlow release can crash inside that import, before any of our
code could report it. So the check reads the installed versions from the package metadata,
without importing either package:

- the extension absent: the run goes on with plain TensorFlow and logs that it does;
- the extension's major.minor release differs from TensorFlow's: the run stops with exit
  status 2, naming both versions and the pip command that fixes it;
- otherwise the run goes on with the extension loaded.
"""
from importlib import metadata

from cosmictagger_tf.config import ConfigError

EXTENSION_DISTRIBUTIONS = ("intel_extension_for_tensorflow", "intel-extension-for-tensorflow")


def installed_version(distribution_names):
    """Return the version of the first installed distribution among the names, or None."""
    for name in distribution_names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def extension_status(tensorflow_version=None, extension_version=None):
    """Return one line describing the extension, or raise ConfigError when it does not fit.

    The versions default to the installed ones, and tests pass them in.
    """
    if tensorflow_version is None:
        tensorflow_version = installed_version(("tensorflow", "tensorflow-cpu", "intel-tensorflow"))
    if extension_version is None:
        extension_version = installed_version(EXTENSION_DISTRIBUTIONS)

    if extension_version is None:
        return ("Intel Extension for TensorFlow is not installed: running on plain TensorFlow "
                f"{tensorflow_version}")
    if tensorflow_version is None or _release(extension_version) != _release(tensorflow_version):
        raise ConfigError(
            f"Intel Extension for TensorFlow {extension_version} does not fit TensorFlow "
            f"{tensorflow_version}: its release must match TensorFlow's major.minor; install "
            f"the matching one (for TensorFlow 2.15: pip install "
            f"'intel-extension-for-tensorflow[cpu]==2.15.0.0') or remove it with "
            f"pip uninstall intel-extension-for-tensorflow intel-extension-for-tensorflow-lib")
    return (f"Intel Extension for TensorFlow {extension_version} loaded on TensorFlow "
            f"{tensorflow_version}")


def _release(version):
    """Return the major.minor part of a version string, e.g. '2.15' for '2.15.0.0'."""
    return ".".join(version.split(".")[:2])
