"""GPU-only paths (run with `make test-gpu` on a CUDA machine).

`make test` deselects the ``gpu`` marker, so CPU CI neither runs nor skips
these.
"""

from __future__ import annotations

import pytest
import torch

from shared.utils.checkpoint import safe_load
from tests.conftest import run_tool
from tests.tools.test_dist_launchers import CFG, free_port

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def needs_cuda():
    assert torch.cuda.is_available(), 'gpu tests need a CUDA device'


def gpu_env(synthetic_root) -> dict:
    return {'DATA_ROOT': str(synthetic_root), 'PORT': free_port()}


def test_nccl_ddp_with_sync_bn(synthetic_root, tmp_path):
    proc = run_tool(
        [
            'tools/dist_train.sh',
            CFG,
            '1',
            '--work-dir',
            str(tmp_path),
            '--cfg-options',
            'train_cfg.max_epochs=1',
            'sync_bn=torch',
        ],
        env=gpu_env(synthetic_root),
    )
    assert "'backend': 'nccl'" in proc.output or "backend='nccl'" in (
        proc.output
    )
    assert (tmp_path / 'epoch_1.pth').is_file()


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_training(synthetic_root, tmp_path, dtype):
    run_tool(
        [
            'tools/train.py',
            CFG,
            '--amp',
            '--work-dir',
            str(tmp_path),
            '--cfg-options',
            'train_cfg.max_epochs=1',
            f'optim_wrapper.dtype={dtype}',
        ],
        env=gpu_env(synthetic_root),
    )
    ckpt = safe_load(tmp_path / 'epoch_1.pth')
    assert ckpt['optim_wrapper']['loss_scaler'] is not None or dtype == (
        'bfloat16'
    )
    proc = run_tool(
        [
            'tools/test.py',
            CFG,
            str(tmp_path / 'epoch_1.pth'),
            '--amp',
            '--work-dir',
            str(tmp_path),
        ],
        env=gpu_env(synthetic_root),
    )
    assert 'accuracy/top1' in proc.stdout
