"""Benchmark GOLANG's hot paths against their SwAV references
(``golang_ssl.md`` §10).

In one process, with random weights and inputs, on one device:

- **train step**: images/s of one forward + backward + ``GAELLELARC`` step
  of ``GAELLE`` over the multi-crop batch, against the same algorithm
  with the local branch off (plain SwAV: same trunk, same crops). The
  ratio is the local branch's cost (the spec estimates about +6 % of the
  forward FLOPs; the per-position calls of g add latency on top);
- **neck**: the training forward of ``GAELLENeck`` with
  ``position_bn='loop'`` (faithful, P calls of g) against ``'flatten'``
  (one call), on the stage-4 maps of the crops;
- **sinkhorn**: ``distributed_sinkhorn_knopp`` against mmpretrain 1.2.0's
  ``distributed_sinkhorn`` (single process, where both compute the same
  codes) on a queue-plus-batch score matrix.

Variants are interleaved (one timed run of each per repeat, the order
reversed every other repeat) after ``--warmup`` untimed runs; the median
of ``--iters`` repeats is printed with the ratio ours / reference.

Examples::

    python tools/analysis/benchmark_golang.py --depth 18 --crops 112 48 \\
        --batch-size 4 --iters 5 --threads 2
    python tools/analysis/benchmark_golang.py --device cuda --batch-size 64
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from mmpretrain.models.losses.swav_loss import (  # noqa: E402
    distributed_sinkhorn,
)

import projects.golang_ssl  # noqa: E402,F401  (registers GAELLE)
from projects.golang_ssl.models.sinkhorn import (  # noqa: E402
    distributed_sinkhorn_knopp,
)
from shared.registry import MODELS, OPTIMIZERS  # noqa: E402
from shared.utils.compat import apply_patches  # noqa: E402
from shared.utils.timing import time_interleaved  # noqa: E402

CHANNELS = {18: 512, 34: 512, 50: 2048}


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--depth', type=int, default=50, choices=CHANNELS)
    parser.add_argument(
        '--crops',
        type=int,
        nargs=2,
        default=(224, 96),
        metavar=('GLOBAL', 'LOCAL'),
        help='crop sizes of the two view groups (recipe: 224 96)',
    )
    parser.add_argument(
        '--num-crops', type=int, nargs=2, default=(2, 6), metavar=('V', 'L')
    )
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--prototypes', type=int, default=3000)
    parser.add_argument('--queue-rows', type=int, default=3840)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        parser.error('--batch-size must be >= 2 (BatchNorm1d in the neck)')
    if args.iters < 1 or args.warmup < 0:
        parser.error('--iters must be >= 1 and --warmup >= 0')
    return args


def build_model(args, with_local: bool) -> torch.nn.Module:
    """A GAELLE (or, without the local branch, SwAV) with BN layers."""
    model = MODELS.build(
        dict(
            type='GAELLE',
            backbone=dict(
                type='ResNet',
                depth=args.depth,
                out_indices=(3,),
                norm_cfg=dict(type='BN'),
            ),
            neck=dict(
                type='GAELLENeck',
                in_channels=CHANNELS[args.depth],
                with_local=with_local,
                norm_cfg=dict(type='BN1d'),
            ),
            head=dict(
                type='GAELLEHead',
                loss=dict(
                    type='GAELLELoss',
                    num_prototypes=args.prototypes,
                    num_local_prototypes=args.prototypes,
                    num_crops=list(args.num_crops),
                    with_local=with_local,
                    with_l2g=with_local,
                ),
            ),
        )
    )
    return model.to(args.device).train()


def make_views(args) -> list[torch.Tensor]:
    """The multi-crop batch: V global crops, then the local crops."""
    gen = torch.Generator().manual_seed(0)
    views = []
    for count, size in zip(args.num_crops, args.crops):
        for _ in range(count):
            x = torch.randn(args.batch_size, 3, size, size, generator=gen)
            views.append(x.to(args.device))
    return views


def report(kind: str, results: dict[str, float], unit_count: int) -> None:
    """Print each variant's time and rate and the ratio first / second."""
    for name, seconds in results.items():
        rate = unit_count / seconds
        print(
            f'[{kind}] {name:<24} {rate:10.2f} img/s  '
            f'({seconds * 1e3:9.2f} ms/iter)'
        )
    (ours, a), (ref, b) = list(results.items())
    print(f'[{kind}] ratio {ours} / {ref}: {a / b:.3f}x time')


def main(argv=None) -> dict[str, dict[str, float]]:
    """Run the three benchmarks; return the median seconds."""
    args = parse_args(argv)
    apply_patches()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f'device={args.device} depth={args.depth} crops={args.num_crops} x '
        f'{args.crops} batch={args.batch_size} K={args.prototypes} '
        f'iters={args.iters}'
    )
    views = make_views(args)
    out = {}

    models = {
        'gaelle': build_model(args, with_local=True),
        'swav': build_model(args, with_local=False),
    }
    optims = {
        name: OPTIMIZERS.build(
            dict(type='GAELLELARC', params=m.parameters(), lr=0.1)
        )
        for name, m in models.items()
    }

    def step(name: str) -> Callable[[], None]:
        def run() -> None:
            optims[name].zero_grad(set_to_none=True)
            models[name].loss(views)['loss'].backward()
            optims[name].step()

        return run

    out['train'] = time_interleaved(
        {n: step(n) for n in models}, args.iters, args.warmup, args.device
    )
    report('train', out['train'], args.batch_size)

    model = models['gaelle']
    with torch.no_grad():
        groups, start = [], 0
        for count in args.num_crops:
            feats = model.backbone(torch.cat(views[start : start + count]))
            groups.append(feats[-1])
            start += count
    necks = {}
    for mode in ('loop', 'flatten'):
        neck = MODELS.build(
            dict(
                type='GAELLENeck',
                in_channels=CHANNELS[args.depth],
                position_bn=mode,
                norm_cfg=dict(type='BN1d'),
            )
        )
        necks[f'neck {mode}'] = neck.to(args.device).train()

    def neck_run(name: str) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                necks[name](
                    groups,
                    batch_size=args.batch_size,
                    num_crops=list(args.num_crops),
                )

        return run

    out['neck'] = time_interleaved(
        {n: neck_run(n) for n in necks}, args.iters, args.warmup, args.device
    )
    report('neck', out['neck'], args.batch_size)

    rows = args.queue_rows + args.batch_size
    gen = torch.Generator().manual_seed(1)
    emb = torch.nn.functional.normalize(torch.randn(rows, 128, generator=gen))
    protos = torch.nn.functional.normalize(
        torch.randn(args.prototypes, 128, generator=gen)
    )
    scores = (emb @ protos.t()).to(args.device)
    ours = distributed_sinkhorn_knopp(scores, 0.05, 3)
    ref = distributed_sinkhorn(scores, 3, 1, 0.05)
    err = (ours - ref).abs().max().item()
    out['sinkhorn'] = time_interleaved(
        {
            'sinkhorn ours': lambda: distributed_sinkhorn_knopp(
                scores, 0.05, 3
            ),
            'sinkhorn mmpretrain': lambda: distributed_sinkhorn(
                scores, 3, 1, 0.05
            ),
        },
        args.iters,
        args.warmup,
        args.device,
    )
    report('sinkhorn', out['sinkhorn'], rows)
    print(f'[sinkhorn] max |ours - mmpretrain| = {err:.3g} (one process)')
    return out


if __name__ == '__main__':
    main()
