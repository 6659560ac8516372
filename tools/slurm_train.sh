#!/usr/bin/env bash
# Usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#        tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# One task per GPU. MASTER_PORT defaults to a random port in 20000-39999 so
# that jobs sharing a node do not collide. DRY_RUN=1 prints the command.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch_common.sh"
[[ $# -ge 4 ]] || die "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [args...]"
run_srun "$1" "$2" train.py "$3" --work-dir="$4" "${@:5}"
