# Intel GPU image: Intel's TensorFlow XPU base (TensorFlow 2.15 with Intel Extension for
# TensorFlow and the oneAPI runtime) plus intel-optimization-for-horovod and this package.
# Build from the repository root:
#   docker build -f docker/intel-gpu.Dockerfile -t cosmictagger-tf:intel-gpu .
# NOTE: pin BASE_IMAGE to the Intel Extension for TensorFlow 2.15 XPU release of your site; the
# default tag follows Intel's newest XPU image and may move to another TensorFlow version.
ARG BASE_IMAGE=intel/intel-extension-for-tensorflow:xpu
FROM ${BASE_IMAGE}

RUN python -m pip install --no-cache-dir intel-optimization-for-horovod==0.28.1.5 \
        "h5py==3.*" "absl-py==2.*"

WORKDIR /opt/cosmictagger-tf
COPY . .
# The base image provides TensorFlow and Intel's Horovod, so only this package is added.
RUN python -m pip install --no-cache-dir --no-deps -e .

ENTRYPOINT ["python", "-m", "cosmictagger_tf.train"]
CMD ["--flagfile=flags/intel_gpu", "--minibatch_size=12"]
