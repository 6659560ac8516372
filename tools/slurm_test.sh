#!/usr/bin/env bash
# Usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#        tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# MASTER_PORT defaults to a random port in 20000-39999. DRY_RUN=1 prints the
# command instead of running it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch_common.sh"
[[ $# -ge 4 ]] || die "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [args...]"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
check_positive_int GPUS "$GPUS"
check_positive_int GPUS_PER_NODE "$GPUS_PER_NODE"
((GPUS_PER_NODE <= GPUS)) || GPUS_PER_NODE=$GPUS
export MASTER_PORT=${MASTER_PORT:-$((20000 + RANDOM % 20000))}
# shellcheck disable=SC2206
CMD=(srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE"
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE"
    --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS
    "$PYTHON" -u "$REPO_ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT"
    --launcher slurm "$@")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "MASTER_PORT=$MASTER_PORT ${CMD[*]}"
    exit 0
fi
exec "${CMD[@]}"
