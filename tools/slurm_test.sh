#!/usr/bin/env bash
# Usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#        tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# One task per GPU. MASTER_PORT defaults to a random port in 20000-39999. DRY_RUN=1
# prints the command instead of running it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch_common.sh"
[[ $# -ge 4 ]] || die "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [args...]"
run_srun "$1" "$2" test.py "$3" "$4" "${@:5}"
