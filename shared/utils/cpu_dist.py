"""Distributed training on CPU with gloo (how CI tests distributed code).

mmengine assumes CUDA for every distributed launch: ``init_dist`` calls
``torch.cuda.set_device`` and ``Runner.wrap_model`` passes
``device_ids=[LOCAL_RANK]``, which DDP rejects for CPU modules. When a
launcher is used and CUDA is unavailable (``CUDA_VISIBLE_DEVICES=`` forces
this), :func:`setup_cpu_distributed`:

1. creates the gloo process group before the Runner (``Runner.setup_env``
   skips ``init_dist`` when a group exists), reading torchrun's variables or
   mapping Slurm's the way mmengine does;
2. sets ``env_cfg.dist_cfg.backend='gloo'`` and wraps the model in
   :class:`CPUDDP` (or puts it in ``strategy.model_wrapper`` for
   ``FlexibleRunner`` with ``DDPStrategy``);
3. rejects by name what cannot run on CPU: ``sync_bn``, AMP, other model
   wrappers and the FSDP / DeepSpeed / ColossalAI strategies.
"""

from __future__ import annotations

import datetime
import os
import subprocess

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel

__all__ = [
    'CPUDDP',
    'CPUDistError',
    'use_cpu_distributed',
    'init_cpu_process_group',
    'setup_cpu_distributed',
]

CPUDDP_TYPE = 'shared.utils.cpu_dist.CPUDDP'
_CPU_OK_WRAPPERS = ('MMDistributedDataParallel', CPUDDP_TYPE, 'CPUDDP')
_AMP_WRAPPERS = ('AmpOptimWrapper',)


class CPUDistError(RuntimeError):
    """A config key cannot run in CPU (gloo) distributed mode."""


class CPUDDP(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also wraps CPU modules.

    mmengine always passes ``device_ids=[LOCAL_RANK]``; PyTorch's DDP requires
    ``device_ids`` and ``output_device`` to be ``None`` for CPU modules, so
    they are dropped when the module's parameters live on the CPU. On a GPU
    module it behaves exactly like its parent.

    Args:
        module (nn.Module): the model to wrap.
        **kwargs: forwarded to ``MMDistributedDataParallel``.
    """

    def __init__(self, module: torch.nn.Module, **kwargs) -> None:
        param = next(module.parameters(), None)
        if param is None or param.device.type == 'cpu':
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        super().__init__(module=module, **kwargs)


def use_cpu_distributed(launcher: str) -> bool:
    """Whether a launch must use the CPU gloo mode."""
    return launcher != 'none' and not torch.cuda.is_available()


def _slurm_env() -> None:
    """Map Slurm's variables to torch's, as mmengine's ``_init_dist_slurm``."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    local_rank = int(os.environ.get('SLURM_LOCALID', 0))
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ.get('SLURM_NODELIST', '')
        try:
            addr = subprocess.run(
                ['scontrol', 'show', 'hostname', node_list],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            raise CPUDistError(
                'launcher slurm without `scontrol`: set MASTER_ADDR (and '
                'MASTER_PORT) to the first node of the job'
            ) from None
        os.environ['MASTER_ADDR'] = addr
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = str(local_rank)
    os.environ['RANK'] = str(proc_id)


def init_cpu_process_group(
    launcher: str, timeout_s: int = 1800
) -> tuple[int, int]:
    """Create the gloo process group for ``launcher`` (pytorch or slurm).

    Returns:
        tuple[int, int]: ``(rank, world_size)``.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if launcher == 'slurm':
        _slurm_env()
    elif launcher != 'pytorch':
        raise CPUDistError(
            f'launcher {launcher!r} is not offered in CPU mode; use '
            'pytorch (torchrun, tools/dist_train.sh) or slurm'
        )
    missing = [
        k
        for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
        if k not in os.environ
    ]
    if missing:
        raise CPUDistError(
            f'--launcher {launcher} needs the environment variables '
            f'{missing}; start it with tools/dist_train.sh or torchrun'
        )
    dist.init_process_group(
        backend='gloo', timeout=datetime.timedelta(seconds=timeout_s)
    )
    return dist.get_rank(), dist.get_world_size()


def check_cpu_config(cfg: Config) -> None:
    """Raise :class:`CPUDistError` for keys that need CUDA, naming them."""
    if cfg.get('sync_bn'):
        raise CPUDistError(
            f'sync_bn={cfg.sync_bn!r} needs CUDA; CPU distributed mode uses '
            'plain BatchNorm. Pass --cfg-options sync_bn=None'
        )
    optim = cfg.get('optim_wrapper') or {}
    if optim.get('type') in _AMP_WRAPPERS:
        raise CPUDistError(
            f'optim_wrapper.type={optim["type"]!r} (AMP) needs a CUDA GPU; '
            'none is visible'
        )
    wrapper = cfg.get('model_wrapper_cfg') or {}
    wtype = wrapper.get('type', 'MMDistributedDataParallel')
    if wtype not in _CPU_OK_WRAPPERS:
        raise CPUDistError(
            f'model_wrapper_cfg.type={wtype!r} cannot run in CPU distributed '
            'mode; only MMDistributedDataParallel (run as CPUDDP) can'
        )
    strategy = cfg.get('strategy') or {}
    stype = strategy.get('type')
    if stype is not None and stype != 'DDPStrategy':
        raise CPUDistError(
            f'strategy.type={stype!r} needs CUDA; CPU distributed mode '
            'supports DDPStrategy only'
        )


def setup_cpu_distributed(cfg: Config, launcher: str) -> tuple[int, int]:
    """Prepare ``cfg`` for a CPU gloo run and create the process group.

    Args:
        cfg: the resolved config; modified in place.
        launcher: ``'pytorch'`` or ``'slurm'``.

    Returns:
        tuple[int, int]: ``(rank, world_size)``.
    """
    check_cpu_config(cfg)
    # Assign back: ConfigDict copies plain dicts on insertion.
    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = env_cfg.get('dist_cfg') or {}
    dist_cfg['backend'] = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg
    cfg.env_cfg = env_cfg
    strategy = cfg.get('strategy')
    if strategy is not None:
        model_wrapper = strategy.get('model_wrapper') or {}
        model_wrapper['type'] = CPUDDP_TYPE
        strategy['model_wrapper'] = model_wrapper
    else:
        wrapper = cfg.get('model_wrapper_cfg') or {}
        wrapper['type'] = CPUDDP_TYPE
        cfg.model_wrapper_cfg = wrapper
    return init_cpu_process_group(launcher)
