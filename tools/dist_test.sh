#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT NGPUS [test.py args...]
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500).
# Without a visible CUDA GPU it runs NGPUS CPU processes with gloo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch_common.sh"
[[ $# -ge 3 ]] || die "usage: $0 CONFIG CHECKPOINT NGPUS [args...]"
CONFIG=$1
CHECKPOINT=$2
NGPUS=$3
shift 3
check_ngpus "$NGPUS"
[[ -f "$CHECKPOINT" ]] || die "checkpoint $CHECKPOINT does not exist"
run_torchrun test.py "$NGPUS" "$CONFIG" "$CHECKPOINT" "$@"
