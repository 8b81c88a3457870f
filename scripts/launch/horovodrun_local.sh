#!/usr/bin/env bash
# Train on several ranks of one machine with horovodrun and Gloo (the build scripts/install.sh
# makes). The CPU cores are split evenly between the ranks.
#
# Usage: scripts/launch/horovodrun_local.sh NUM_RANKS [training flags...]
#   scripts/launch/horovodrun_local.sh 2 --flagfile=flags/a21 --synthetic --minibatch_size=4
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv_dir=${VENV_DIR:-$repo_dir/.venv}
num_ranks=${1:?usage: $0 NUM_RANKS [training flags...]}
shift

cores=$(nproc)
threads=$(( cores / num_ranks > 0 ? cores / num_ranks : 1 ))
echo "[launch] $num_ranks ranks on $(hostname), $threads intra-op threads each of $cores cores"

cd "$repo_dir"
exec "$venv_dir/bin/horovodrun" -np "$num_ranks" --gloo -H "localhost:$num_ranks" \
  "$venv_dir/bin/python" -m cosmictagger_tf.train --intra_op_threads="$threads" "$@"
