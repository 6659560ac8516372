"""Benchmark TS-CAM against a plain timm DeiT (``tscam.md`` §11).

For each device, in one process, with random weights and random inputs:

- **train**: images/s of one forward + backward + AdamW step of
  ``TSCAMClassifier`` (``mode='loss'``, cross-entropy on the conv head's
  GAP logits) and of a plain timm ``VisionTransformer`` of the same size
  with its Linear head on the class token (``num_classes=C``), both at
  drop-path 0.1;
- **predict** (``eval()``, ``no_grad``): images/s of the plain timm
  forward, of ``TSCAMClassifier`` in ``mode='tensor'`` (backbone + head,
  no attention collection), of the same forward inside
  ``backbone.collect_attention()`` (collection only) and of
  ``TSCAMClassifier.predict`` (collection, coupling and the ``loc_maps``
  data samples);
- on CUDA, the peak memory that each predict variant allocates on top of
  the weights and the input (``torch.cuda.max_memory_allocated``).

The variants are interleaved (one timed iteration of each per repeat, the
order reversed every other repeat) after ``--warmup`` untimed iterations,
and the median of ``--iters`` repeats is reported. The last lines give the
overhead of ``predict`` over the tensor forward for each device, against
the < 10% target of §11.

Examples::

    python tools/analysis/benchmark_tscam.py --arch small --batch-size 32 \\
        --iters 5 --threads 2
    python tools/analysis/benchmark_tscam.py --arch base --device cuda \\
        --batch-size 128 --iters 20
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402
from torch import nn  # noqa: E402

import projects.tscam  # noqa: E402,F401  (registers the TS-CAM models)
from shared.registry import MODELS  # noqa: E402
from shared.utils.compat import apply_patches  # noqa: E402
from shared.utils.timing import (  # noqa: E402
    synchronize,
    time_interleaved,
)

ARCHS = {
    'micro': dict(embed_dims=64, depth=2, num_heads=2),
    'tiny': dict(embed_dims=192, depth=12, num_heads=3),
    'small': dict(embed_dims=384, depth=12, num_heads=6),
    'base': dict(embed_dims=768, depth=12, num_heads=12),
}
TARGET_OVERHEAD = 10.0  # percent, predict vs the plain forward (§11)
DROP_PATH = 0.1
MIB = 1 << 20


def build_tscam(arch: str, img_size: int, num_classes: int) -> nn.Module:
    """``TSCAMClassifier`` with random weights (``micro``: the demo dict)."""
    settings = ARCHS[arch]
    return MODELS.build(
        dict(
            type='TSCAMClassifier',
            backbone=dict(
                type='TSCAMDeiT',
                arch=arch if arch != 'micro' else dict(settings),
                img_size=img_size,
                drop_path_rate=DROP_PATH,
            ),
            head=dict(
                type='TSCAMHead',
                num_classes=num_classes,
                in_channels=settings['embed_dims'],
            ),
        )
    )


def build_timm(arch: str, img_size: int, num_classes: int) -> nn.Module:
    """Plain timm DeiT of the same size with its Linear class-token head."""
    settings = ARCHS[arch]
    return VisionTransformer(
        img_size=img_size,
        patch_size=16,
        num_classes=num_classes,
        embed_dim=settings['embed_dims'],
        depth=settings['depth'],
        num_heads=settings['num_heads'],
        mlp_ratio=4.0,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        drop_path_rate=DROP_PATH,
    )


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Bytes ``fn`` allocates at its peak on top of what is already held."""
    synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = fn()
    synchronize(device)
    del out
    return torch.cuda.max_memory_allocated(device) - base


def _train_step(model, optimizer, loss_fn) -> Callable[[], None]:
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model).backward()
        optimizer.step()

    return step


def _row(
    tag: str,
    kind: str,
    text: str,
    batch: int,
    seconds: float,
    peak: int | None = None,
) -> str:
    line = (
        f'{tag} {kind:<7s} {text:<31s} {batch / seconds:9.1f} img/s  '
        f'({1e3 * seconds:.2f} ms/iter)'
    )
    if peak is not None:
        line += f'  peak {peak / MIB:8.1f} MiB'
    return line


def _pct(ratio: float) -> str:
    return f'{100.0 * (ratio - 1.0):+.1f}%'


def bench_device(args: argparse.Namespace, device: torch.device) -> float:
    """Run and print every measurement on ``device``.

    Returns:
        float: The predict overhead of attention collection in percent
        (``predict`` vs the tensor forward).
    """
    torch.manual_seed(0)
    batch, size, classes = args.batch_size, args.img_size, args.num_classes
    tag = f'[{device.type}]'
    inputs = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(classes, (batch,), device=device)
    samples = [DataSample().set_gt_label(int(y)) for y in labels.tolist()]
    tscam = build_tscam(args.arch, size, classes).to(device)
    plain = build_timm(args.arch, size, classes).to(device)

    # ---- training: forward + backward + AdamW step -----------------------
    tscam.train()
    plain.train()
    opt_tscam = torch.optim.AdamW(tscam.parameters(), lr=5e-5)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=5e-5)

    def tscam_loss(model) -> torch.Tensor:
        losses = model(inputs, samples, mode='loss')
        return sum(losses.values())

    def plain_loss(model) -> torch.Tensor:
        return F.cross_entropy(model(inputs), labels)

    train = time_interleaved(
        {
            'timm': _train_step(plain, opt_plain, plain_loss),
            'tscam': _train_step(tscam, opt_tscam, tscam_loss),
        },
        args.iters,
        args.warmup,
        device,
    )
    del opt_tscam, opt_plain
    train_ratio = train['timm'] / train['tscam']
    print(_row(tag, 'train', 'timm DeiT + Linear head', batch, train['timm']))
    print(_row(tag, 'train', 'TSCAMClassifier (loss)', batch, train['tscam']))
    print(
        f'{tag} train   throughput TS-CAM / timm: {train_ratio:.3f} '
        f'(time overhead {_pct(1.0 / train_ratio)})'
    )

    # ---- predict ------------------------------------------------------------
    tscam.eval()
    plain.eval()
    for param in (*tscam.parameters(), *plain.parameters()):
        param.grad = None

    def collect_forward() -> torch.Tensor:
        with tscam.backbone.collect_attention():
            return tscam(inputs, mode='tensor')

    predict_fns = {
        'timm': lambda: plain(inputs),
        'tensor': lambda: tscam(inputs, mode='tensor'),
        'collect': collect_forward,
        'predict': lambda: tscam.predict(inputs, samples),
    }
    with torch.no_grad():
        pred = time_interleaved(predict_fns, args.iters, args.warmup, device)
        memory = (
            {name: peak_memory(fn, device) for name, fn in predict_fns.items()}
            if device.type == 'cuda'
            else {}
        )
    labels_text = {
        'timm': 'timm DeiT forward',
        'tensor': 'TS-CAM forward, no collection',
        'collect': 'TS-CAM forward + collection',
        'predict': 'TSCAMClassifier.predict',
    }
    for name, text in labels_text.items():
        print(_row(tag, 'predict', text, batch, pred[name], memory.get(name)))
    print(
        f'{tag} predict collection only vs no collection: '
        f'{_pct(pred["collect"] / pred["tensor"])}'
    )
    print(
        f'{tag} predict TS-CAM forward vs timm forward: '
        f'{_pct(pred["tensor"] / pred["timm"])}; predict vs timm forward: '
        f'{_pct(pred["predict"] / pred["timm"])}'
    )
    if memory:
        settings = ARCHS[args.arch]
        tokens = (size // 16) ** 2 + 1
        stack = (
            settings['depth'] * batch * settings['num_heads'] * tokens**2 * 4
        )
        print(
            f'{tag} predict peak memory over the timm forward: '
            f'{(memory["predict"] - memory["timm"]) / MIB:+.1f} MiB '
            f'(upstream full attention stack depth x B x H x N^2: '
            f'{stack / MIB:.1f} MiB)'
        )
    return 100.0 * (pred['predict'] / pred['tensor'] - 1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', choices=list(ARCHS), default='small')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument(
        '--iters', type=int, default=10, help='timed repeats (median)'
    )
    parser.add_argument(
        '--warmup', type=int, default=2, help='untimed iterations first'
    )
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--num-classes', type=int, default=200)
    parser.add_argument(
        '--device',
        nargs='+',
        choices=('cpu', 'cuda'),
        default=None,
        help='devices to measure (default: cpu, and cuda when available)',
    )
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch CPU threads (default: torch default)',
    )
    parser.add_argument(
        '--fail-above-target',
        action='store_true',
        help=f'exit 1 when a predict overhead is >= {TARGET_OVERHEAD:g}%%',
    )
    args = parser.parse_args(argv)
    for name in ('batch_size', 'iters', 'img_size', 'num_classes'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    if args.img_size % 16:
        parser.error('--img-size must be a multiple of the patch size 16')
    if args.device is None:
        args.device = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    elif 'cuda' in args.device and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    apply_patches()
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        settings = ARCHS[args.arch]
        print(
            f'TS-CAM benchmark: arch {args.arch} (D={settings["embed_dims"]}, '
            f'depth={settings["depth"]}, heads={settings["num_heads"]}), '
            f'img {args.img_size}, batch {args.batch_size}, '
            f'{args.num_classes} classes, median of {args.iters} interleaved '
            f'repeats after {args.warmup} warm-up, {torch.get_num_threads()} '
            f'CPU threads, torch {torch.__version__}'
        )
        overheads = {}
        for name in dict.fromkeys(args.device):
            device = torch.device(name)
            if device.type == 'cuda':
                print(f'[cuda] device: {torch.cuda.get_device_name(device)}')
            overheads[name] = bench_device(args, device)
    finally:
        torch.set_num_threads(threads)
    above = False
    for name, pct in overheads.items():
        met = math.isfinite(pct) and pct < TARGET_OVERHEAD
        above |= not met
        print(
            f'predict overhead of attention collection: {pct:+.1f}% '
            f'(target < {TARGET_OVERHEAD:g}%: {"met" if met else "NOT met"}) '
            f'[{name}]'
        )
    return 1 if args.fail_above_target and above else 0


if __name__ == '__main__':
    sys.exit(main())
