"""Benchmark a config's data pipeline and the cost of the dataset adapter.

In one process, on the same samples, times:

1. ``decode``: reading and decoding the image files only (mmcv, pillow);
2. ``bare``: the config's pipeline applied directly to pre-fetched data
   infos (decoding + transforms, no dataset object involved);
3. ``adapter``: ``dataset[i]``, i.e. the adapter's ``get_data_info``,
   policy keys, error wrapping and the same pipeline;
4. optionally a ``DataLoader`` with ``--workers`` processes.

and prints images/s per worker and the ratio ``adapter / bare`` (the
adapter's overhead; the target is below 1.10). Each measurement is the
median of ``--repeats`` rounds, the rounds of 2 and 3 interleaved.

Examples::

    python tools/analysis/benchmark_dataloader.py \\
        configs/_base_/datasets/cub_loc.py --num-samples 200
    DATA_ROOT=/tmp/synth python tools/analysis/benchmark_dataloader.py \\
        configs/demo/resnet18-micro_1xb16-5e_synthetic-imagefolder.py \\
        --workers 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from mmengine.config import DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from shared.utils.compat import apply_patches  # noqa: E402

DATALOADERS = {
    'train': 'train_dataloader',
    'val': 'val_dataloader',
    'test': 'test_dataloader',
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Images/s of a config pipeline and the adapter overhead.'
    )
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--split', choices=sorted(DATALOADERS), default='train'
    )
    parser.add_argument(
        '--num-samples', type=int, default=200, help='samples per round'
    )
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument(
        '--workers',
        type=int,
        default=0,
        help='also time a DataLoader with this many workers (0: skip)',
    )
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark; return the rates (images/s) and the ratio."""
    import mmcv
    from mmengine.dataset import Compose
    from mmengine.fileio import get

    from shared.registry import DATASETS
    from shared.utils.entrypoint import load_config

    cfg = load_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    import shared  # noqa: F401 - registers the adapters and transforms

    loader_cfg = cfg[DATALOADERS[args.split]]
    ds_cfg = copy.deepcopy(loader_cfg['dataset'])
    dataset = DATASETS.build(ds_cfg)
    n = min(args.num_samples, len(dataset))
    if n == 0:
        raise ValueError(f'{args.split} dataset of {args.config} is empty')
    indices = list(range(n))
    infos = [dataset.get_data_info(i) for i in indices]
    pipeline = Compose(ds_cfg['pipeline'])
    paths = [info['img_path'] for info in infos]

    def decode():
        for path in paths:
            mmcv.imfrombytes(get(path), backend='pillow')

    def bare():
        for info in infos:
            pipeline(copy.copy(info))

    def adapter():
        for i in indices:
            dataset[i]

    bare()  # warm up caches and lazy imports
    adapter()
    decode_t = statistics.median(_timed(decode) for _ in range(args.repeats))
    bare_t, adapter_t = [], []
    for _ in range(args.repeats):
        bare_t.append(_timed(bare))
        adapter_t.append(_timed(adapter))
    result = {
        'samples': n,
        'decode': n / decode_t,
        'bare': n / statistics.median(bare_t),
        'adapter': n / statistics.median(adapter_t),
    }
    result['ratio'] = statistics.median(adapter_t) / statistics.median(bare_t)
    if args.workers > 0:
        from mmengine.dataset import pseudo_collate
        from torch.utils.data import DataLoader, Subset

        loader = DataLoader(
            Subset(dataset, indices),
            batch_size=loader_cfg.get('batch_size', 16),
            num_workers=args.workers,
            collate_fn=pseudo_collate,
        )
        for _ in loader:  # start the workers once
            break
        t = _timed(lambda: [None for _ in loader])
        result['loader'] = n / t
        result['loader_per_worker'] = n / t / args.workers
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    apply_patches()
    result = run(args)
    n = result['samples']
    print(
        f'{args.config} [{args.split}], {n} samples, median of '
        f'{args.repeats} rounds, one process:'
    )
    print(f'  decode only            {result["decode"]:9.1f} images/s')
    print(f'  bare pipeline          {result["bare"]:9.1f} images/s')
    print(f'  adapter (dataset[i])   {result["adapter"]:9.1f} images/s')
    overhead = 100 * (result['ratio'] - 1)
    verdict = 'OK' if result['ratio'] < 1.10 else 'ABOVE TARGET'
    print(
        f'  adapter / bare time    {result["ratio"]:9.3f}  '
        f'({overhead:+.1f}% overhead; target < +10%: {verdict})'
    )
    if 'loader' in result:
        print(
            f'  DataLoader, {args.workers} workers  {result["loader"]:9.1f} '
            f'images/s ({result["loader_per_worker"]:.1f} per worker)'
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
