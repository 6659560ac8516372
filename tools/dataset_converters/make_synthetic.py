"""Generate a deterministic synthetic dataset in a real on-disk layout.

Objects of class-specific shape, colour, inner mark and orientation on
textured backgrounds, at known boxes and masks, written exactly in the
layout the adapters of ``shared/datasets`` read (``datasets.md`` §6). The
library is :mod:`shared.datasets.synthetic`; this is its command line.

Examples::

    python tools/dataset_converters/make_synthetic.py --format cub \\
        --out data --num-classes 10 --per-class 20 --seed 0
    python tools/dataset_converters/make_synthetic.py --format imagefolder \\
        --out data/synthetic_imagefolder --num-classes 4 --per-class 32 \\
        --size 32

Layout roots under ``--out``: ``cub`` -> ``CUB_200_2011/`` and ``wsol/``;
``imagenet-loc`` -> ``ILSVRC2012/`` and ``wsol/``; ``openimages-mask`` ->
``wsol/``; ``coco`` -> ``coco/``; ``voc`` -> ``VOCdevkit/VOC2007/``;
``sketch`` -> ``Sketch/``, ``Photos/``, ``Flickr15k/``, ``ZeroShot/``;
``imagefolder`` -> ``train/``, ``val/`` directly under ``--out``. Every
run records ``synthetic_manifest.json`` (arguments, versions, counts,
annotation SHA-256, injected defect) in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from shared.datasets.synthetic import (  # noqa: E402
    ALIASES,
    CORRUPT_KINDS,
    WRITERS,
    generate,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Generate a deterministic synthetic dataset in a real '
        'on-disk layout.'
    )
    parser.add_argument(
        '--format',
        dest='fmt',
        default='imagefolder',
        choices=sorted([*WRITERS, *ALIASES]),
        help='output layout (default: imagefolder)',
    )
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument(
        '--num-classes',
        '--classes',
        dest='num_classes',
        type=int,
        default=4,
        help='number of classes (default: 4)',
    )
    parser.add_argument(
        '--per-class',
        type=int,
        default=20,
        help='training images per class (default: 20)',
    )
    parser.add_argument(
        '--val-per-class',
        type=int,
        default=None,
        help='evaluation images per class (default: max(1, per_class // 4))',
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        '--size-range',
        nargs=2,
        type=int,
        metavar=('MIN', 'MAX'),
        default=None,
        help='inclusive range of each image side (default: 160 320)',
    )
    size.add_argument(
        '--size', type=int, default=None, help='fix both image sides'
    )
    parser.add_argument(
        '--seed', type=int, default=0, help='global seed (default: 0)'
    )
    parser.add_argument(
        '--workers',
        type=int,
        default=1,
        help='rendering processes (output does not depend on it)',
    )
    parser.add_argument(
        '--corrupt',
        choices=CORRUPT_KINDS,
        default=None,
        help='inject one defect and record its file and line in the manifest',
    )
    parser.add_argument(
        '--write-oracle-maps',
        action='store_true',
        help="write each evaluation image's object mask as a float .npy map",
    )
    parser.add_argument(
        '--ext',
        default=None,
        help='image file type (imagefolder: png or jpg; default per format)',
    )
    parser.add_argument(
        '--val-layout',
        choices=('flat', 'class_subdirs'),
        default=None,
        help='imagenet-loc: flat val/ (default) or TS-CAM val/<wnid>/',
    )
    parser.add_argument(
        '--legacy-pt',
        action='store_true',
        help="sketch: write *_imgs.pt in the fork's pickled BytesIO form",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    from shared.utils.compat import apply_patches

    apply_patches()
    if args.size is not None:
        size_range = (args.size, args.size)
    else:
        size_range = tuple(args.size_range or (160, 320))
    start = time.perf_counter()
    try:
        entry = generate(
            args.fmt,
            args.out,
            num_classes=args.num_classes,
            per_class=args.per_class,
            val_per_class=args.val_per_class,
            size_range=size_range,
            seed=args.seed,
            workers=args.workers,
            corrupt=args.corrupt,
            write_oracle_maps=args.write_oracle_maps,
            ext=args.ext,
            val_layout=args.val_layout,
            legacy_pt=args.legacy_pt or None,
        )
    except ValueError as err:
        print(f'make_synthetic: error: {err}', file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    counts = ', '.join(f'{v} {k}' for k, v in entry['counts'].items())
    total = sum(v for v in entry['counts'].values() if isinstance(v, int))
    print(
        f'make_synthetic: {entry["format"]}: {counts} images, '
        f'{args.num_classes} classes, sides {size_range[0]}-{size_range[1]}'
        f'px, seed {args.seed} -> {args.out} '
        f'({seconds:.1f} s, {60 * total / max(seconds, 1e-9):.0f} images/min)'
    )
    if entry['corruption']:
        c = entry['corruption']
        print(
            f'make_synthetic: injected {c["kind"]} at {c["file"]}:{c["line"]}'
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
