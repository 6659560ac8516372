"""Train a model from a config.

Examples::

    python tools/train.py configs/demo/<demo config>.py  # see make demo
    bash tools/dist_train.sh CONFIG 8                 # 8 GPUs (torchrun)
    CUDA_VISIBLE_DEVICES= bash tools/dist_train.sh CONFIG 2   # 2 CPU ranks
    python tools/train.py CONFIG --resume             # latest in work_dir
    python tools/train.py CONFIG --resume work_dirs/x/epoch_3.pth
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if sys.path[0] != REPO_ROOT:
    sys.path.insert(0, REPO_ROOT)

from mmengine.logging import print_log  # noqa: E402

from shared.utils.compat import apply_patches  # noqa: E402
from shared.utils.entrypoint import add_common_args  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Train a model from an MMEngine config.'
    )
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--work-dir',
        help="where logs and checkpoints go (default: the config's "
        'work_dir, else work_dirs/<config stem>)',
    )
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='PATH|auto',
        help='resume from PATH, or (no value / auto) from the latest '
        'checkpoint of the work dir; without one it starts fresh',
    )
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (AmpOptimWrapper, dynamic loss scale); GPU only',
    )
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the LR by world_size * batch / '
        'auto_scale_lr.base_batch_size',
    )
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip validation during training',
    )
    add_common_args(
        parser, 'train_cfg.max_epochs=2 optim_wrapper.optimizer.lr=0.1'
    )
    return parser.parse_args(argv)


def merge_args(cfg, args) -> None:
    """Apply the command-line options to ``cfg`` (spec order, steps 4-7)."""
    from shared.utils.entrypoint import (
        ConfigError,
        require_cuda,
        resolve_work_dir,
        sanitize_dataloaders,
    )

    resolve_work_dir(cfg, args.config, args.work_dir)
    if args.amp:
        require_cuda('--amp')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(
                f'--resume checkpoint {args.resume} does not exist'
            )
        cfg.resume = True
        cfg.load_from = args.resume
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # Checked after --cfg-options, which may change the key.
    if args.auto_scale_lr:
        scale = cfg.get('auto_scale_lr') or {}
        if scale.get('base_batch_size') is None:
            raise ConfigError(
                '--auto-scale-lr needs auto_scale_lr.base_batch_size in the '
                'config (the total batch size of the original recipe)'
            )
        cfg.auto_scale_lr.enable = True
    sanitize_dataloaders(cfg)


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    applied = apply_patches()
    from shared.utils.entrypoint import (
        ResumeStateHook,
        build_runner,
        check_cuda_keys,
        explain_registry_errors,
        load_config,
        set_local_rank,
        setup_launcher,
        warn_on_resume_changes,
    )

    set_local_rank(args.local_rank)
    cfg = load_config(args.config)
    merge_args(cfg, args)
    check_cuda_keys(cfg)
    setup_launcher(cfg, args.launcher)
    runner = build_runner(cfg)
    print_log(
        f'compat patches applied: {", ".join(applied)}', logger='current'
    )
    runner.register_hook(ResumeStateHook())
    warn_on_resume_changes(cfg, runner.world_size)
    with explain_registry_errors(cfg):
        runner.train()
    return 0


if __name__ == '__main__':
    sys.exit(main())
