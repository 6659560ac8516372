"""tools/dist_train.sh and dist_test.sh: real 2-process gloo runs on CPU."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import torch

from shared.utils.checkpoint import safe_load
from tests.conftest import run_tool

CFG = 'configs/demo/resnet18-micro_1xb16-5e_synthetic-imagefolder.py'


def free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def cpu_env(synthetic_root) -> dict:
    return {
        'CUDA_VISIBLE_DEVICES': '',
        'DATA_ROOT': str(synthetic_root),
        'PORT': free_port(),
        'OMP_NUM_THREADS': '1',
    }


@pytest.fixture(scope='module')
def dist_run(synthetic_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('dist')
    proc = run_tool(
        [
            'tools/dist_train.sh',
            CFG,
            '2',
            '--work-dir',
            str(work),
            '--cfg-options',
            'train_cfg.max_epochs=2',
            'default_hooks.logger.interval=1',
        ],
        env=cpu_env(synthetic_root),
    )
    return work, proc.output


def test_dist_train_two_gloo_ranks(dist_run):
    work, log = dist_run
    assert 'running 2 CPU process(es) with gloo' in log
    assert 'rank 0 of 2' in log and 'rank 1 of 2' in log
    assert "backend='gloo'" in log or "'backend': 'gloo'" in log
    assert sorted(p.name for p in work.glob('*.pth')) == [
        'epoch_1.pth',
        'epoch_2.pth',
    ]
    # Only rank 0 writes: one timestamped log folder.
    assert len([p for p in work.iterdir() if p.is_dir()]) == 1
    ckpt = safe_load(work / 'epoch_2.pth')
    assert ckpt['meta']['world_size'] == 2
    # 4 classes x 8 images / (2 ranks x 16) = 1 iteration per epoch
    assert 'Epoch(train) [2][1/1]' in log


def test_dist_resume_equals_uninterrupted(dist_run, synthetic_root, tmp_path):
    """Resume a 2-rank run from epoch 1: same weights as the 2-epoch run."""
    work, _ = dist_run
    resumed = tmp_path / 'resumed'
    resumed.mkdir()
    shutil.copy(work / 'epoch_1.pth', resumed / 'epoch_1.pth')
    (resumed / 'last_checkpoint').write_text(str(resumed / 'epoch_1.pth'))
    proc = run_tool(
        [
            'tools/dist_train.sh',
            CFG,
            '2',
            '--work-dir',
            str(resumed),
            '--resume',
            '--cfg-options',
            'train_cfg.max_epochs=2',
            'default_hooks.logger.interval=1',
        ],
        env=cpu_env(synthetic_root),
    )
    assert 'resumed epoch: 1' in proc.output
    a = safe_load(work / 'epoch_2.pth')['state_dict']
    b = safe_load(resumed / 'epoch_2.pth')['state_dict']
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_dist_test_equals_single_process(dist_run, synthetic_root, tmp_path):
    """An odd-length test set: the padded sample must not be counted."""
    work, _ = dist_run
    ckpt = str(work / 'epoch_2.pth')
    odd = ['--cfg-options', 'test_dataloader.dataset.indices=7']
    single, double = tmp_path / 'single.json', tmp_path / 'double.json'
    run_tool(
        [
            'tools/test.py',
            CFG,
            ckpt,
            '--work-dir',
            str(tmp_path / 'a'),
            '--out',
            str(single),
            *odd,
        ],
        env={'DATA_ROOT': str(synthetic_root)},
    )
    proc = run_tool(
        [
            'tools/dist_test.sh',
            CFG,
            ckpt,
            '2',
            '--work-dir',
            str(tmp_path / 'b'),
            '--out',
            str(double),
            *odd,
        ],
        env=cpu_env(synthetic_root),
    )
    assert 'rank 1 of 2' in proc.output
    a = json.loads(single.read_text())
    b = json.loads(double.read_text())
    assert a == b
    # 7 samples: every accuracy is a multiple of 100/7.
    assert round(a['accuracy/top1'] * 7 / 100, 4) == round(
        a['accuracy/top1'] * 7 / 100
    )


def test_flexible_runner_ddp_strategy(synthetic_root, tmp_path):
    work = tmp_path / 'flex'
    run_tool(
        [
            'tools/dist_train.sh',
            CFG,
            '2',
            '--work-dir',
            str(work),
            '--cfg-options',
            'runner_type=FlexibleRunner',
            'strategy.type=DDPStrategy',
            'train_cfg.max_epochs=1',
        ],
        env=cpu_env(synthetic_root),
    )
    assert (work / 'epoch_1.pth').is_file()


@pytest.mark.parametrize(
    'ngpus,message',
    [
        ('0', 'NGPUS must be a positive integer'),
        ('two', 'NGPUS must be a positive integer'),
    ],
)
def test_bad_ngpus(ngpus, message):
    proc = run_tool(['tools/dist_train.sh', CFG, ngpus], check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_cpu_mode_rejects_sync_bn(synthetic_root, tmp_path):
    proc = run_tool(
        [
            'tools/dist_train.sh',
            CFG,
            '1',
            '--work-dir',
            str(tmp_path),
            '--cfg-options',
            'sync_bn=torch',
        ],
        env=cpu_env(synthetic_root),
        check=False,
    )
    assert proc.returncode != 0
    assert 'sync_bn=None' in proc.output


def test_ngpus_above_visible_gpus(tmp_path):
    """A fake nvidia-smi reporting 2 GPUs: asking for 3 is refused."""
    smi = tmp_path / 'nvidia-smi'
    smi.write_text(
        '#!/bin/sh\necho "GPU 0: Fake (UUID: a)"\n'
        'echo "GPU 1: Fake (UUID: b)"\n'
    )
    smi.chmod(0o755)
    env = {'PATH': f'{tmp_path}:/usr/bin:/bin', 'CUDA_VISIBLE_DEVICES': None}
    proc = run_tool(['tools/dist_train.sh', CFG, '3'], env=env, check=False)
    assert proc.returncode != 0
    assert 'NGPUS=3 but only 2 GPU(s) are visible' in proc.stderr
    env['CUDA_VISIBLE_DEVICES'] = '1'
    proc = run_tool(
        ['tools/dist_test.sh', CFG, 'x.pth', '2'], env=env, check=False
    )
    assert 'NGPUS=2 but only 1 GPU(s) are visible' in proc.stderr
