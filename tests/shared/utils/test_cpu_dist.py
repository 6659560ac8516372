"""CPU gloo mode: config checks, wrapper, and the Slurm variable mapping."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config

from shared.utils.cpu_dist import (
    CPUDDP_TYPE,
    CPUDistError,
    check_cpu_config,
    init_cpu_process_group,
    use_cpu_distributed,
)
from tests.conftest import REPO_ROOT


def base_cfg(**kwargs) -> Config:
    cfg = dict(
        optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD'))
    )
    cfg.update(kwargs)
    return Config(cfg)


@pytest.mark.parametrize(
    'kwargs,message',
    [
        (dict(sync_bn='torch'), 'sync_bn=None'),
        (dict(optim_wrapper=dict(type='AmpOptimWrapper')), 'AmpOptimWrapper'),
        (
            dict(model_wrapper_cfg=dict(type='MMFullyShardedDataParallel')),
            'MMFullyShardedDataParallel',
        ),
        (dict(strategy=dict(type='FSDPStrategy')), 'FSDPStrategy'),
        (dict(strategy=dict(type='DeepSpeedStrategy')), 'DeepSpeedStrategy'),
        (dict(strategy=dict(type='ColossalAIStrategy')), 'ColossalAIStrategy'),
    ],
)
def test_cpu_mode_rejects_by_name(kwargs, message):
    with pytest.raises(CPUDistError, match=message):
        check_cpu_config(base_cfg(**kwargs))


def test_cpu_mode_accepts_ddp():
    check_cpu_config(base_cfg())
    check_cpu_config(
        base_cfg(
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel', find_unused_parameters=True
            )
        )
    )
    check_cpu_config(base_cfg(strategy=dict(type='DDPStrategy')))


def test_use_cpu_distributed():
    assert not use_cpu_distributed('none')
    assert use_cpu_distributed('pytorch') == (not torch.cuda.is_available())


def test_missing_torchrun_variables(monkeypatch):
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(CPUDistError, match='tools/dist_train.sh'):
        init_cpu_process_group('pytorch')
    with pytest.raises(CPUDistError, match='not offered'):
        init_cpu_process_group('mpi')


def test_slurm_mapping_and_cpuddp_in_subprocess(tmp_path):
    """One Slurm task: the group forms, and CPUDDP wraps a CPU module."""
    code = textwrap.dedent(f"""
        import torch, torch.distributed as dist
        from mmengine.config import Config
        from shared.utils.cpu_dist import setup_cpu_distributed, CPUDDP
        cfg = Config(dict(model_wrapper_cfg=dict(
            find_unused_parameters=True)))
        rank, world = setup_cpu_distributed(cfg, 'slurm')
        assert (rank, world) == (0, 1)
        assert dist.get_backend() == 'gloo'
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.type == {CPUDDP_TYPE!r}
        assert cfg.model_wrapper_cfg.find_unused_parameters is True
        import os
        assert os.environ['LOCAL_RANK'] == '0'
        model = CPUDDP(torch.nn.Linear(2, 2), device_ids=[0],
                       output_device=0)
        model(torch.ones(1, 2)).sum().backward()
        print('OK')
        """)
    env = dict(
        os.environ,
        SLURM_PROCID='0',
        SLURM_NTASKS='1',
        SLURM_LOCALID='0',
        SLURM_NODELIST='localhost',
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT='0',
        PYTHONPATH=str(REPO_ROOT),
        CUDA_VISIBLE_DEVICES='',
    )
    proc = subprocess.run(
        [sys.executable, '-c', code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'OK' in proc.stdout


def test_slurm_without_scontrol_needs_master_addr(monkeypatch):
    monkeypatch.setenv('SLURM_PROCID', '0')
    monkeypatch.setenv('SLURM_NTASKS', '1')
    monkeypatch.setenv('SLURM_NODELIST', 'node[1-2]')
    monkeypatch.delenv('MASTER_ADDR', raising=False)
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(CPUDistError, match='MASTER_ADDR'):
        init_cpu_process_group('slurm')
