"""Packaging for cosmictagger-tf.

The runtime stack is pinned in requirements.txt, which is read here so that there is one list.
Horovod is not a dependency of the package: scripts/install.sh builds it from source with Gloo,
and Intel GPU users install Intel's build (intel-optimization-for-horovod) instead.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name):
    lines = (HERE / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="cosmictagger-tf",
    version="0.1.0",
    description="TensorFlow/Keras CosmicTagger: pixel-level cosmic and neutrino tagging of "
                "liquid-argon TPC wire-plane images with a multi-plane UResNet",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9,<3.12",
    packages=find_packages(include=["cosmictagger_tf", "cosmictagger_tf.*"]),
    install_requires=read_requirements("requirements.txt"),
    extras_require={
        "test": read_requirements("requirements-test.txt"),
        "horovod": ["horovod==0.28.1"],
    },
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Physics",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
