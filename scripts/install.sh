#!/usr/bin/env bash
# Install cosmictagger-tf and its pinned stack into a virtual environment.
#
# Usage: scripts/install.sh [VENV_DIR]      (default: .venv beside this repository)
#
# Steps: create the environment, install the pinned TensorFlow stack, build Horovod 0.28.1
# from source with Gloo (no MPI, no PyTorch, no MXNet), then install this package in editable
# mode with its test extras. Every step is skipped when it is already satisfied, so running the
# script again is cheap. The README, CI and the Dockerfiles all install through this script.
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv_dir=${1:-"$repo_dir/.venv"}
python_bin=${PYTHON:-python3.11}
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3

log() { printf '[install] %s\n' "$*"; }

if [ ! -x "$venv_dir/bin/python" ]; then
  log "creating virtual environment $venv_dir with $("$python_bin" --version)"
  "$python_bin" -m venv "$venv_dir"
fi
pip=("$venv_dir/bin/python" -m pip --disable-pip-version-check)

log "installing the pinned TensorFlow stack"
"${pip[@]}" install -q -r "$repo_dir/requirements.txt"

if "$venv_dir/bin/python" -c "import horovod.tensorflow" >/dev/null 2>&1; then
  log "Horovod already installed: $("$venv_dir/bin/python" -c 'import horovod; print(horovod.__version__)')"
else
  log "building Horovod 0.28.1 from source with Gloo (about two minutes per core pair)"
  "${pip[@]}" install -q psutil cloudpickle pyyaml packaging cmake wheel
  # Clusters set HOROVOD_WITH_MPI=1 (and HOROVOD_GPU_OPERATIONS=NCCL on NVIDIA GPUs) to build
  # the MPI launcher support that mpiexec and srun need; the default is Gloo only.
  mpi_setting=HOROVOD_WITHOUT_MPI=1
  [ "${HOROVOD_WITH_MPI:-0}" = 1 ] && mpi_setting=HOROVOD_WITH_MPI=1
  env HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 \
    HOROVOD_WITHOUT_MXNET=1 "$mpi_setting" \
    "${pip[@]}" install -q --no-build-isolation --no-cache-dir horovod==0.28.1
fi

log "installing cosmictagger_tf (editable) with test extras"
"${pip[@]}" install -q --no-build-isolation --no-deps -e "$repo_dir"
"${pip[@]}" install -q -r "$repo_dir/requirements-test.txt"

"$venv_dir/bin/python" - <<'PY'
import horovod, tensorflow as tf, numpy, h5py
import horovod.tensorflow as hvd
print(f"[install] ok: tensorflow {tf.__version__}, numpy {numpy.__version__}, "
      f"h5py {h5py.__version__}, horovod {horovod.__version__} (gloo built: {hvd.gloo_built()})")
PY
