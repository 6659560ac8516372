#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NGPUS [train.py args...]
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500).
# Without a visible CUDA GPU it runs NGPUS CPU processes with gloo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch_common.sh"
[[ $# -ge 2 ]] || die "usage: $0 CONFIG NGPUS [args...]"
CONFIG=$1
NGPUS=$2
shift 2
check_ngpus "$NGPUS"
run_torchrun train.py "$NGPUS" "$CONFIG" "$@"
