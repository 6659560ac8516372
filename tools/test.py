"""Evaluate a checkpoint on a config's test set.

Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out work_dirs/x/metrics.json
    python tools/test.py CONFIG CHECKPOINT --out preds.pkl --show-dir vis
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from copy import deepcopy

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if sys.path[0] != REPO_ROOT:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import ConfigDict  # noqa: E402

from shared.utils.compat import apply_patches  # noqa: E402
from shared.utils.entrypoint import add_common_args  # noqa: E402

PRED_EXTS = ('.pkl', '.pickle')
METRIC_EXTS = ('.json', '.yaml', '.yml', '.pkl', '.pickle')


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Test a checkpoint with an MMEngine config.'
    )
    parser.add_argument('config', help='config file (or a dumped config)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the test logs go')
    parser.add_argument(
        '--out',
        help='write predictions (.pkl/.pickle) or, with --out-item metrics, '
        'the metrics (.json/.yaml/.pkl)',
    )
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out holds (default: pred for .pkl/.pickle, metrics for '
        '.json/.yaml)',
    )
    parser.add_argument(
        '--show-dir', help='draw predictions (and CAMs) into this folder'
    )
    parser.add_argument(
        '--show', action='store_true', help='show predictions in a window'
    )
    parser.add_argument(
        '--interval', type=int, default=1, help='draw every N-th sample'
    )
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds per shown image'
    )
    parser.add_argument(
        '--tta',
        action='store_true',
        help="test-time augmentation: the config's tta_model/tta_pipeline, "
        'else flip TTA with averaged scores',
    )
    parser.add_argument(
        '--amp', action='store_true', help='fp16 inference (GPU only)'
    )
    add_common_args(parser, 'test_dataloader.batch_size=64')
    return parser.parse_args(argv)


def resolve_out(args) -> str | None:
    """Validate ``--out``/``--out-item``; return the item kind or None."""
    from shared.utils.entrypoint import ConfigError

    if args.out is None:
        if args.out_item is not None:
            raise ConfigError('--out-item needs --out FILE')
        return None
    ext = osp.splitext(args.out)[1].lower()
    item = args.out_item or ('pred' if ext in PRED_EXTS else 'metrics')
    allowed = PRED_EXTS if item == 'pred' else METRIC_EXTS
    if ext not in allowed:
        raise ConfigError(
            f'--out {args.out}: unsupported extension {ext or "(none)"} for '
            f'{item}; allowed: {", ".join(allowed)}'
        )
    return item


def _model_returns_loc_maps(cfg) -> bool:
    from mmengine.registry import init_default_scope

    from shared.registry import MODELS

    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cls = MODELS.get(cfg.model['type'])
    return bool(getattr(model_cls, 'returns_loc_maps', False))


def setup_visualization(cfg, args) -> None:
    """``--show``/``--show-dir``: CAM overlays or mmpretrain's hook."""
    from shared.registry import HOOKS
    from shared.utils.entrypoint import ConfigError

    if not (args.show or args.show_dir):
        return
    if args.show and not os.environ.get('DISPLAY'):
        raise ConfigError(
            '--show needs a display and none is set (DISPLAY is empty); '
            'use --show-dir DIR to write the images instead'
        )
    if (
        args.show_dir
        and HOOKS.get('CAMVisualizationHook') is not None
        and _model_returns_loc_maps(cfg)
    ):
        hooks = list(cfg.get('custom_hooks') or [])
        # A configured hook keeps its preset, cam_threshold, map_key, ...
        configured = [
            h for h in hooks if h.get('type') == 'CAMVisualizationHook'
        ]
        hooks = [h for h in hooks if h.get('type') != 'CAMVisualizationHook']
        hook = dict(configured[-1]) if configured else {}
        hook.update(
            type='CAMVisualizationHook',
            draw_all=True,
            out_dir=args.show_dir,
            interval=args.interval,
        )
        hooks.append(hook)
        cfg.custom_hooks = hooks
        return
    hooks = cfg.get('default_hooks') or {}
    if not hooks.get('visualization'):
        raise ConfigError(
            '--show/--show-dir need default_hooks.visualization (e.g. '
            "dict(type='VisualizationHook', enable=False)) in the config"
        )
    vis = hooks['visualization']
    vis.enable = True
    vis.show = args.show
    vis.wait_time = args.wait_time
    vis.out_dir = args.show_dir
    vis.interval = args.interval


def setup_tta(cfg) -> None:
    """Wrap the model for test-time augmentation."""
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        test_pipeline = cfg.test_dataloader.dataset.pipeline
        cfg.tta_pipeline = deepcopy(test_pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[
                [
                    dict(type='RandomFlip', prob=1.0),
                    dict(type='RandomFlip', prob=0.0),
                ],
                [test_pipeline[-1]],
            ],
        )
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    applied = apply_patches()
    import mmengine
    from mmengine.evaluator import DumpResults
    from mmengine.logging import print_log

    from shared.utils.entrypoint import (
        build_runner,
        check_cuda_keys,
        explain_registry_errors,
        load_config,
        require_cuda,
        resolve_work_dir,
        sanitize_dataloaders,
        set_local_rank,
        setup_launcher,
    )

    set_local_rank(args.local_rank)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    out_item = resolve_out(args)
    cfg = load_config(args.config)
    resolve_work_dir(cfg, args.config, args.work_dir)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.amp:
        require_cuda('--amp')
        test_cfg = cfg.get('test_cfg') or {}
        test_cfg['fp16'] = True
        cfg.test_cfg = test_cfg
    # --cfg-options first: the flags below read the merged config.
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    setup_visualization(cfg, args)
    if args.tta:
        setup_tta(cfg)
    sanitize_dataloaders(cfg)
    check_cuda_keys(cfg)
    setup_launcher(cfg, args.launcher)
    runner = build_runner(cfg)
    print_log(
        f'compat patches applied: {", ".join(applied)}', logger='current'
    )
    if out_item == 'pred':
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out)
        )
    with explain_registry_errors(cfg):
        metrics = runner.test()
    if out_item == 'metrics' and runner.rank == 0:
        mmengine.dump(metrics, args.out)
    if runner.rank == 0:
        print('metrics: ' + ', '.join(f'{k}: {v}' for k, v in metrics.items()))
        if args.out:
            print(f'{out_item} written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
