"""Sub-sample a SAN fork path list (``*_init.pt``).

``sub_sample.py INIT OUT (-n N | -f F) [-c NCLS | -e EXCL] [-s SEED]``
keeps ``N`` random samples (``-n``) or ``round(F * n)`` of them (``-f``)
of every kept class. All classes are kept, or ``NCLS`` random ones
(``-c``), or those not in the path list ``EXCL`` (``-e``, matched by
name, e.g. to build a zero-shot set disjoint from a training set). Kept
classes are re-indexed 0..K'-1 in their old order. ``-n`` larger than
the smallest kept class is an error. Samples keep their input order;
``-s`` seeds the draws (default 0; the fork was unseeded without it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from shared.datasets.san_formats import (  # noqa: E402
    load_init_file,
    save_san_file,
)


def sub_sample(
    init: dict,
    n: int | None = None,
    frac: float | None = None,
    num_classes: int | None = None,
    exclude: list[str] | None = None,
    seed: int = 0,
) -> dict:
    """Sub-sampled copy of a :func:`load_init_file` dict.

    Args:
        init: The path list.
        n: Samples per kept class (exclusive with ``frac``).
        frac: Fraction of each kept class, in [0, 1].
        num_classes: Keep this many random classes.
        exclude: Drop these class names (exclusive with ``num_classes``).
        seed: Seed of the draws.

    Returns:
        dict: The new path list (classes re-indexed in old order).
    """
    if (n is None) == (frac is None):
        raise ValueError('give exactly one of -n and -f')
    if num_classes is not None and exclude is not None:
        raise ValueError('-c and -e cannot be used together')
    if frac is not None and not 0 <= frac <= 1:
        raise ValueError(f'-f must be between 0 and 1, got {frac}')
    if n is not None and n < 1:
        raise ValueError(f'-n must be >= 1, got {n}')
    rng = np.random.default_rng(seed)
    classes = init['classes']
    if num_classes is not None:
        if not 1 <= num_classes <= len(classes):
            raise ValueError(
                f'-c {num_classes}: the list has {len(classes)} classes'
            )
        kept = sorted(
            int(c) for c in rng.choice(len(classes), num_classes, False)
        )
    elif exclude is not None:
        drop = set(exclude)
        kept = [i for i, name in enumerate(classes) if name not in drop]
        if not kept:
            raise ValueError('-e excludes every class')
    else:
        kept = list(range(len(classes)))
    old_to_new = {old: new for new, old in enumerate(kept)}
    labels = np.array([label for _, label in init['samples']], np.int64)
    members = {c: np.flatnonzero(labels == c) for c in kept}
    if n is not None:
        smallest = min(kept, key=lambda c: len(members[c]))
        if n > len(members[smallest]):
            raise ValueError(
                f'-n {n} is larger than the smallest class '
                f'{classes[smallest]!r} ({len(members[smallest])} samples); '
                'lower -n or use -f'
            )
    chosen = []
    for c in kept:
        k = n if n is not None else round(frac * len(members[c]))
        chosen += rng.choice(members[c], k, replace=False).tolist()
    samples = [
        (init['samples'][j][0], old_to_new[init['samples'][j][1]])
        for j in sorted(chosen)
    ]
    new_classes = [classes[c] for c in kept]
    return dict(
        init,
        classes=new_classes,
        class_to_idx={name: i for i, name in enumerate(new_classes)},
        samples=samples,
        extensions=init.get('extensions'),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the fork's, see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Sub-sample a SAN fork path list per class.'
    )
    parser.add_argument('file_path', help='input path list (*_init.pt)')
    parser.add_argument('output_file', help='output path list')
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument(
        '-n', '--n', type=int, help='samples per class (<= smallest class)'
    )
    size.add_argument(
        '-f', '--frac', type=float, help='fraction of each class, in [0, 1]'
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        '-c', '--subclassnum', type=int, help='keep this many random classes'
    )
    which.add_argument(
        '-e',
        '--excludefile',
        help='path list whose classes are dropped (matched by name)',
    )
    parser.add_argument(
        '-s', '--seed', type=int, default=0, help='random seed (default: 0)'
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        init = load_init_file(args.file_path)
        exclude = None
        if args.excludefile:
            exclude = load_init_file(args.excludefile)['classes']
        out = sub_sample(
            init,
            n=args.n,
            frac=args.frac,
            num_classes=args.subclassnum,
            exclude=exclude,
            seed=args.seed,
        )
    except (OSError, ValueError) as err:
        print(f'sub_sample: error: {err}', file=sys.stderr)
        return 2
    save_san_file(out, args.output_file)
    print(
        f'{len(out["samples"])} samples of {len(out["classes"])} classes '
        f'-> {args.output_file}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
