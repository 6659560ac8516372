#!/usr/bin/env bash
# `make demo`: synthetic data -> train -> test with drawn predictions -> curves.
# CPU only, no downloads. Environment: PYTHON (the venv's python), DATA_ROOT
# (default data), DEMO_WORK_DIR (default work_dirs/demo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export DATA_ROOT=${DATA_ROOT:-data}
WORK_DIR=${DEMO_WORK_DIR:-work_dirs/demo}
CONFIG=configs/demo/resnet18-micro_1xb16-5e_synthetic-imagefolder.py
start=$SECONDS
mkdir -p "$WORK_DIR"

echo "== 1/4 synthetic ImageFolder data in ${DATA_ROOT}/synthetic_imagefolder"
"$PYTHON" tools/dataset_converters/make_synthetic.py --format imagefolder \
    --out "${DATA_ROOT}/synthetic_imagefolder" --num-classes 4 \
    --per-class 32 --size 32 --seed 0

echo "== 2/4 training ${CONFIG} (CPU)"
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" \
    --cfg-options default_hooks.logger.interval=4 >"${WORK_DIR}/train.log" 2>&1 \
    || { tail -n 60 "${WORK_DIR}/train.log"; exit 1; }
grep -E "Epoch\((train|val)\)" "${WORK_DIR}/train.log" | sed 's/^.*mmengine - INFO - //'
CKPT=$(cat "${WORK_DIR}/last_checkpoint")

echo "== 3/4 testing ${CKPT}"
"$PYTHON" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" \
    --out "${WORK_DIR}/test_metrics.json" --show-dir "${WORK_DIR}/vis" \
    >"${WORK_DIR}/test.log" 2>&1 || { tail -n 60 "${WORK_DIR}/test.log"; exit 1; }

echo "== 4/4 loss and accuracy curves"
"$PYTHON" tools/analysis/analyze_logs.py plot_curve "$WORK_DIR" \
    --keys loss accuracy/top1 --out "${WORK_DIR}/curves.png" >/dev/null
"$PYTHON" tools/analysis/analyze_logs.py summary "$WORK_DIR"

echo
echo "demo finished in $((SECONDS - start)) s"
echo "  test metrics : $(cat "${WORK_DIR}/test_metrics.json") (${WORK_DIR}/test_metrics.json)"
echo "  checkpoint   : ${CKPT}"
echo "  predictions  : ${WORK_DIR}/vis/ ($(find "${WORK_DIR}/vis" -type f | wc -l) images)"
echo "  curves       : ${WORK_DIR}/curves.png"
echo "  logs         : ${WORK_DIR}/train.log, ${WORK_DIR}/test.log"
