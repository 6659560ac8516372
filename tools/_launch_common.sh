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
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        echo 0
        return
    fi
    local n
    n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
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
