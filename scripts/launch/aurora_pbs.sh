#!/usr/bin/env bash
# Train on an Aurora-class machine (Intel Data Center GPU Max, 6 GPUs = 12 tiles per node) with
# Intel Extension for TensorFlow (XPU) and Intel's Horovod build (intel-optimization-for-horovod,
# oneCCL over Intel MPI). One rank per GPU tile, and each rank uses only its own tile.
#
# Submit:  qsub -A PROJECT -l select=NODES -l walltime=01:00:00 -q QUEUE scripts/launch/aurora_pbs.sh
# Extra training flags go in TRAIN_FLAGS, e.g. qsub -v TRAIN_FLAGS="--data_file=/path/train.h5" ...
#
# Environment: the site's frameworks module (TensorFlow 2.15, Intel Extension for TensorFlow XPU,
# intel-optimization-for-horovod), or a virtual environment with
#   pip install tensorflow==2.15.1 'intel-extension-for-tensorflow[xpu]==2.15.0.*' \
#       intel-optimization-for-horovod && pip install --no-deps -e .
#PBS -N cosmictagger-tf
#PBS -l filesystems=home:flare
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

# NOTE: module and filesystem names differ between sites and software releases; adjust these.
module load frameworks 2>/dev/null || echo "[launch] no 'frameworks' module; using the current python"

ranks_per_node=${RANKS_PER_NODE:-12}
nodes=$(sort -u "${PBS_NODEFILE:-/dev/null}" | wc -l)
nodes=$(( nodes > 0 ? nodes : 1 ))
total_ranks=$(( nodes * ranks_per_node ))
minibatch_per_rank=${MINIBATCH_PER_RANK:-12}

# Bind each rank to its own block of cores on the two 52-core sockets. The first core of each
# socket is left to the operating system.
cpu_bind="list:1-8:9-16:17-24:25-32:33-40:41-48:53-60:61-68:69-76:77-84:85-92:93-100"

# oneCCL and libfabric settings for allreduce at scale: starting points, not tuned values.
export CCL_ALLREDUCE=topo
export CCL_PROCESS_LAUNCHER=pmix
export CCL_ATL_TRANSPORT=mpi
export FI_CXI_DEFAULT_CQ_SIZE=131072
export FI_CXI_OVFLOW_BUF_SIZE=8388608
export FI_CXI_CQ_FILL_PERCENT=20
# Horovod fuses gradients into one buffer of this size before each allreduce.
export HOROVOD_FUSION_THRESHOLD=${HOROVOD_FUSION_THRESHOLD:-$((64 * 1024 * 1024))}

echo "[launch] $nodes nodes x $ranks_per_node ranks = $total_ranks ranks," \
     "global minibatch $(( total_ranks * minibatch_per_rank ))"

# gpu_tile_compact.sh (installed on ALCF systems) sets ZE_AFFINITY_MASK so that local rank i
# can use GPU tile i only. Without it, the trainer picks XPU device <local rank> itself.
tile_wrapper=$(command -v gpu_tile_compact.sh || true)
mpiexec -n "$total_ranks" -ppn "$ranks_per_node" --cpu-bind "$cpu_bind" $tile_wrapper \
  python -m cosmictagger_tf.train --flagfile=flags/intel_gpu \
    --minibatch_size=$(( total_ranks * minibatch_per_rank )) ${TRAIN_FLAGS:-}
