# Shared by the launchers: repository root, python, and argument checks.
# shellcheck shell=bash
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${REPO_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "${REPO_ROOT}/.venv/bin/python" ]]; then
        PYTHON="${REPO_ROOT}/.venv/bin/python"
    else
        PYTHON=python3
    fi
fi

die() {
    echo "error: $*" >&2
    exit 2
}

# check_positive_int NAME VALUE
check_positive_int() {
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

# visible_gpus: number of GPUs this process may use (0 = CPU gloo mode).
visible_gpus() {
    if [[ "${CUDA_VISIBLE_DEVICES+set}" == set ]]; then
        if [[ -z "${CUDA_VISIBLE_DEVICES}" || "${CUDA_VISIBLE_DEVICES}" == -1 ]]; then
            echo 0
            return
        fi
    fi
    local n
    if command -v nvidia-smi >/dev/null 2>&1; then
        n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    else
        # No nvidia-smi in PATH: the driver still lists its GPUs here.
        n=$(find /proc/driver/nvidia/gpus -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    fi
    if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
        local listed
        listed=$(tr ',' '\n' <<<"${CUDA_VISIBLE_DEVICES}" | grep -c . || true)
        ((listed < n)) && n=$listed
    fi
    echo "${n:-0}"
}

# check_ngpus NGPUS: a positive integer, at most the visible GPUs (if any).
check_ngpus() {
    check_positive_int NGPUS "$1"
    local gpus
    gpus=$(visible_gpus)
    if ((gpus > 0 && $1 > gpus)); then
        die "NGPUS=$1 but only ${gpus} GPU(s) are visible"
    fi
    if ((gpus == 0)); then
        echo "no CUDA GPU visible: running $1 CPU process(es) with gloo" >&2
    fi
}

# run_torchrun SCRIPT NGPUS ARGS...: NGPUS processes per node via torchrun
# (call check_ngpus first). Environment: NNODES (1), NODE_RANK (0),
# MASTER_ADDR (127.0.0.1), PORT (29500).
run_torchrun() {
    local script=$1 ngpus=$2
    shift 2
    local nnodes=${NNODES:-1}
    check_positive_int NNODES "$nnodes"
    exec "$PYTHON" -m torch.distributed.run \
        --nnodes="$nnodes" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --master_port="${PORT:-29500}" \
        --nproc_per_node="$ngpus" \
        "$REPO_ROOT/tools/$script" "$@" --launcher pytorch
}

# run_srun PARTITION JOB_NAME SCRIPT ARGS...: one Slurm task per GPU.
# Environment: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS,
# MASTER_PORT (default: random in 20000-39999), DRY_RUN=1 prints the command.
run_srun() {
    local partition=$1 job=$2 script=$3
    shift 3
    local gpus=${GPUS:-8} per_node=${GPUS_PER_NODE:-8}
    check_positive_int GPUS "$gpus"
    check_positive_int GPUS_PER_NODE "$per_node"
    ((per_node <= gpus)) || per_node=$gpus
    export MASTER_PORT=${MASTER_PORT:-$((20000 + RANDOM % 20000))}
    # shellcheck disable=SC2206
    local cmd=(srun -p "$partition" --job-name="$job" --gres=gpu:"$per_node"
        --ntasks="$gpus" --ntasks-per-node="$per_node"
        --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1
        ${SRUN_ARGS:-} "$PYTHON" -u "$REPO_ROOT/tools/$script" "$@"
        --launcher slurm)
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        echo "MASTER_PORT=$MASTER_PORT ${cmd[*]}"
        exit 0
    fi
    exec "${cmd[@]}"
}
