#!/usr/bin/env bash
# Train on a GPU cluster under Slurm: one rank per GPU, Horovod over MPI/NCCL.
#
# Submit:  sbatch --nodes=NODES scripts/launch/slurm_srun.sh [training flags...]
#
# Horovod must be built with MPI and NCCL on such a cluster, for example
#   HOROVOD_WITH_MPI=1 HOROVOD_GPU_OPERATIONS=NCCL bash scripts/install.sh
#SBATCH --job-name=cosmictagger-tf
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=01:00:00
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

venv_dir=${VENV_DIR:-.venv}
minibatch_per_rank=${MINIBATCH_PER_RANK:-2}
total_ranks=${SLURM_NTASKS:-1}
echo "[launch] $total_ranks ranks, global minibatch $(( total_ranks * minibatch_per_rank ))"

srun --cpu-bind=cores "$venv_dir/bin/python" -m cosmictagger_tf.train \
  --intra_op_threads="${SLURM_CPUS_PER_TASK:-8}" \
  --minibatch_size=$(( total_ranks * minibatch_per_rank )) "$@"
