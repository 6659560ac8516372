"""What ``tools/train.py`` and ``tools/test.py`` share.

Config loading with plugin-aware errors, dataloader sanitising, CUDA checks,
launcher set-up (including the CPU gloo mode), runner construction with the
"unregistered type" hint, and the resume consistency check.
"""

from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
import re
from contextlib import contextmanager

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.hooks import Hook
from mmengine.logging import print_log

from shared.utils.cpu_dist import setup_cpu_distributed, use_cpu_distributed

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
_UNREGISTERED = re.compile(r'(\S+) is not in the (\S+) registry')


class ConfigError(ValueError):
    """A config value or command-line option cannot be used as given."""


def add_common_args(parser: argparse.ArgumentParser, example: str) -> None:
    """Add ``--cfg-options``, ``--launcher`` and ``--local-rank``.

    Args:
        parser: the tool's parser.
        example: a ``key=value`` example for the ``--cfg-options`` help.
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help=f'override config keys, e.g. {example}',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='job launcher (tools/dist_*.sh pass pytorch, tools/slurm_*.sh '
        'slurm)',
    )
    parser.add_argument(
        '--local-rank',
        '--local_rank',
        type=int,
        default=None,
        dest='local_rank',
        help='set by old launchers; copied to LOCAL_RANK',
    )


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    """Load a config, importing its plugins, and apply ``--cfg-options``.

    Raises:
        FileNotFoundError: the config does not exist.
        ImportError: a plugin in ``custom_imports`` failed to import (the
            message names the plugin and the cause).
        ConfigError: ``custom_imports.allow_failed_imports=True``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    try:
        cfg = Config.fromfile(path)
    except ImportError as exc:
        raise ImportError(
            f'a plugin in custom_imports of {path} failed to import: {exc!r}'
        ) from exc
    custom = cfg.get('custom_imports') or {}
    if custom.get('allow_failed_imports'):
        raise ConfigError(
            f'{path}: custom_imports.allow_failed_imports=True is forbidden '
            'because it hides broken plugins; set it to False'
        )
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def resolve_work_dir(
    cfg: Config, config_path: str, cli_work_dir: str | None
) -> None:
    """Work dir precedence: CLI, then the config's, then work_dirs/<stem>."""
    if cli_work_dir is not None:
        cfg.work_dir = cli_work_dir
    elif cfg.get('work_dir') is None:
        stem = osp.splitext(osp.basename(config_path))[0]
        cfg.work_dir = osp.join('work_dirs', stem)


def require_cuda(what: str) -> None:
    """Raise a clear error when ``what`` needs a GPU and none is visible."""
    if not torch.cuda.is_available():
        raise ConfigError(f'{what} needs a CUDA GPU; none is visible')


def check_cuda_keys(cfg: Config) -> None:
    """Name config keys that need CUDA when none is visible."""
    if torch.cuda.is_available():
        return
    optim = cfg.get('optim_wrapper') or {}
    if optim.get('type') == 'AmpOptimWrapper':
        raise ConfigError(
            "optim_wrapper.type='AmpOptimWrapper' (AMP) needs a CUDA GPU; "
            'none is visible. Use OptimWrapper on CPU'
        )
    test_cfg = cfg.get('test_cfg') or {}
    if test_cfg.get('fp16'):
        raise ConfigError(
            'test_cfg.fp16=True (AMP) needs a CUDA GPU; none is visible'
        )


def sanitize_dataloaders(cfg: Config) -> None:
    """Make dataloader settings valid for this machine.

    ``persistent_workers`` requires workers (mmpretrain sets it on every
    base, and PyTorch raises with ``num_workers=0``); ``pin_memory`` is
    pointless without CUDA.
    """
    for key in DATALOADERS:
        loader = cfg.get(key)
        if not loader:
            continue
        if loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False
        if not torch.cuda.is_available():
            loader['pin_memory'] = False


def setup_launcher(cfg: Config, launcher: str) -> None:
    """Record the launcher; use the CPU gloo mode when CUDA is absent."""
    cfg.launcher = launcher
    if use_cpu_distributed(launcher):
        rank, world = setup_cpu_distributed(cfg, launcher)
        print_log(
            f'CPU distributed mode (gloo): rank {rank} of {world}',
            logger='current',
            level=logging.INFO,
        )


def set_local_rank(local_rank: int | None) -> None:
    """Copy ``--local-rank``/``--local_rank`` into ``LOCAL_RANK``."""
    if local_rank is not None:
        os.environ['LOCAL_RANK'] = str(local_rank)
    os.environ.setdefault('LOCAL_RANK', '0')


def unregistered_type_error(exc: KeyError, cfg: Config) -> KeyError | None:
    """Rewrite mmengine's "X is not in the registry" into an actionable one."""
    msg = str(exc.args[0]) if exc.args else ''
    match = _UNREGISTERED.search(msg)
    if not match:
        return None
    name, registry = match.group(1), match.group(2)
    imports = (cfg.get('custom_imports') or {}).get('imports', [])
    hint = ', '.join(f'{m.replace(".", "/")}/__init__.py' for m in imports)
    return KeyError(
        f'{name} is not registered in the {registry} registry (default '
        f'scope {cfg.get("default_scope")!r}, custom_imports={imports}). '
        f'Is it registered in {hint or "projects/<name>/__init__.py"} (or '
        'does the config miss custom_imports=dict(imports=[...])?)'
    )


@contextmanager
def explain_registry_errors(cfg: Config):
    """Re-raise unregistered-type KeyErrors with scope and plugin hints."""
    try:
        yield
    except KeyError as exc:
        better = unregistered_type_error(exc, cfg)
        if better is None:
            raise
        raise better from exc


def build_runner(cfg: Config):
    """``RUNNERS.build`` when ``runner_type`` is set, else ``Runner``."""
    with explain_registry_errors(cfg):
        if 'runner_type' in cfg:
            from mmengine.registry import RUNNERS

            return RUNNERS.build(cfg)
        from mmengine.runner import Runner

        return Runner.from_cfg(cfg)


def resume_checkpoint_path(cfg: Config) -> str | None:
    """The file a resume will read, or None for a fresh start."""
    if not cfg.get('resume'):
        return None
    if cfg.get('load_from'):
        return cfg.load_from
    from mmengine.runner import find_latest_checkpoint

    return find_latest_checkpoint(cfg.work_dir)


def _plain(value):
    if isinstance(value, ConfigDict | dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def schedule_summary(cfg: Config, world_size: int) -> dict:
    """The schedule-relevant values of ``cfg`` as JSON-like primitives.

    Stored in each checkpoint (``meta.schedule``) so that a resume can be
    compared with the run it continues without evaluating the stored config
    text (which would execute whatever a crafted checkpoint put there).
    """
    train_cfg = cfg.get('train_cfg') or {}
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    batch = (cfg.get('train_dataloader') or {}).get('batch_size')
    return dict(
        max_epochs=train_cfg.get('max_epochs'),
        max_iters=train_cfg.get('max_iters'),
        param_scheduler=_plain(cfg.get('param_scheduler')),
        lr=optimizer.get('lr'),
        total_batch=None if batch is None else batch * world_size,
    )


def compare_schedules(old: dict, new: dict) -> list[str]:
    """List the entries of two :func:`schedule_summary` dicts that differ."""
    names = dict(
        max_epochs='train_cfg.max_epochs',
        max_iters='train_cfg.max_iters',
        param_scheduler='param_scheduler',
        lr='optim_wrapper.optimizer.lr',
        total_batch='total batch size',
    )
    changed = []
    for key, label in names.items():
        if key in old and old[key] != new.get(key):
            if key == 'param_scheduler':
                changed.append(label)
            else:
                changed.append(f'{label}: {old[key]} -> {new.get(key)}')
    return changed


class ResumeStateHook(Hook):
    """Make resumed runs continue exactly like uninterrupted ones.

    mmengine checkpoints hold neither the random-number generators' states
    nor the world size. This hook, registered by ``tools/train.py``:

    * captures the Python, NumPy and torch RNG states at the end of every
      training epoch and restores them at the start of the next one, so
      validation never perturbs training randomness;
    * stores those states (as tensors and primitives, which
      :func:`shared.utils.checkpoint.safe_load` accepts), the world size and
      the :func:`schedule_summary` in each checkpoint's ``meta``;
    * on resume (not for ``load_from``, which keeps the configured seed)
      restores the stored states before the next epoch, so augmentations
      continue as if never interrupted (exactly so with ``num_workers=0``;
      worker processes keep their own random streams).
    """

    priority = 'HIGH'

    def __init__(self) -> None:
        self._states: dict | None = None
        self._at_epoch_end = False

    @staticmethod
    def _capture() -> dict:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = dict(
            python=random.getstate(),
            numpy=dict(
                kind=kind,
                keys=torch.from_numpy(keys.astype(np.int64)),
                pos=int(pos),
                has_gauss=int(has_gauss),
                cached=float(cached),
            ),
            torch=torch.get_rng_state(),
        )
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def _restore(state: dict) -> None:
        import random

        import numpy as np

        python = state['python']
        random.setstate((python[0], tuple(python[1]), python[2]))
        npy = state['numpy']
        keys = npy['keys'].cpu().numpy().astype(np.uint32)
        np.random.set_state(
            (npy['kind'], keys, npy['pos'], npy['has_gauss'], npy['cached'])
        )
        torch.set_rng_state(state['torch'].cpu())
        if 'cuda' in state and torch.cuda.is_available():
            # map_location may have moved them to the GPU; the checkpoint may
            # come from a machine with more GPUs than this one.
            cuda = [s.cpu() for s in state['cuda']]
            torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])

    def after_train_epoch(self, runner) -> None:
        """Capture the RNG states (before the checkpoint is written)."""
        self._states = self._capture()
        self._at_epoch_end = True

    def before_train_epoch(self, runner) -> None:
        """Restore the states captured at the end of the previous epoch."""
        if self._states is not None:
            self._restore(self._states)
        self._at_epoch_end = False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add ``meta.world_size``, ``meta.rng_state`` and ``meta.schedule``.

        At an epoch end the captured states are stored; a checkpoint saved
        inside an epoch (iteration-based schedules) stores the current ones.
        """
        meta = checkpoint.setdefault('meta', {})
        meta['world_size'] = runner.world_size
        meta['rng_state'] = (
            self._states if self._at_epoch_end else self._capture()
        )
        meta['schedule'] = schedule_summary(runner.cfg, runner.world_size)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """On resume, keep the stored RNG states for the next epoch."""
        if not getattr(runner, '_resume', False):
            return  # load_from: weights only; the configured seed rules
        states = (checkpoint.get('meta') or {}).get('rng_state')
        if _valid_rng_state(states):
            self._states = states
        elif states is not None:
            print_log(
                "the checkpoint's meta.rng_state is incomplete; the resumed "
                'run continues with the configured seed',
                logger='current',
                level=logging.WARNING,
            )


def _valid_rng_state(states) -> bool:
    try:
        numpy_state = states['numpy']
        return (
            len(states['python']) == 3
            and isinstance(states['torch'], torch.Tensor)
            and isinstance(numpy_state['keys'], torch.Tensor)
            and all(
                k in numpy_state
                for k in ('kind', 'pos', 'has_gauss', 'cached')
            )
        )
    except (KeyError, TypeError):
        return False


def warn_on_resume_changes(cfg: Config, world_size: int) -> None:
    """Warn before resuming when the schedule or batch changed.

    mmengine restores the schedulers' state, so a new ``max_epochs`` does not
    move their horizon (mmengine#1542) and the checkpoint's learning rate
    survives a change of world size. The comparison reads the primitives of
    ``meta.schedule`` (never the stored config text). Without a checkpoint to
    resume from, a warning says the run starts fresh.
    """
    if not cfg.get('resume'):
        return
    path = resume_checkpoint_path(cfg)
    if path is None:
        print_log(
            f'--resume: no checkpoint in {cfg.work_dir}; starting a fresh '
            'run.',
            logger='current',
            level=logging.WARNING,
        )
        return
    if not osp.isfile(path):
        return  # remote URLs: mmengine reports them itself
    from shared.utils.checkpoint import safe_load

    meta = (safe_load(path) or {}).get('meta') or {}
    old = meta.get('schedule')
    if not isinstance(old, dict):
        return
    changed = compare_schedules(old, schedule_summary(cfg, world_size))
    if changed:
        print_log(
            f'Resuming from {path} with a changed schedule: '
            f'{"; ".join(changed)}. mmengine restores the schedulers, so '
            'their horizon (e.g. a cosine length from max_epochs) keeps the '
            "checkpoint's values, and the checkpoint's learning rate is "
            'kept even if the world size changed.',
            logger='current',
            level=logging.WARNING,
        )
