"""Split a SAN fork path list (``*_init.pt``) per class.

``split_dataset.py INIT OUT -r R [R ...] [--seed S] [--of-total]`` writes
``OUT/split_0.pt`` ... ``OUT/split_<len(R)>.pt``, each with the input's
keys and a subset of its samples. Every class is split on its own
(stratified): split ``i`` takes ``round(R_i * n)`` of the class's
samples, where ``n`` is what the previous splits left (the fork's
compounding rule: ``-r 0.5 0.5`` gives 50 / 25 / 25 %), or the class total
with ``--of-total`` (``-r 0.5 0.25`` gives 50 / 25 / 25 %). The last split
takes the rest. Each ratio must be in (0, 1); with ``--of-total`` their
sum must also be below 1 (``-r 0.5 0.5`` is valid without it). ``round``
is Python's (half to even), as pandas' ``sample(frac=...)`` in the fork.
Samples keep their input order inside each split; the draw is seeded
(the fork's was not). Example (the fork's README)::

    python tools/dataset_converters/split_dataset.py \\
        dataset/Sketch_EITZ/data_init.pt dataset/Sketch_EITZ -r 0.8
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from shared.datasets.san_formats import (  # noqa: E402
    load_init_file,
    save_san_file,
)


def split_samples(
    samples: Sequence[tuple[str, int]],
    ratios: Sequence[float],
    seed: int = 0,
    of_total: bool = False,
) -> list[list[tuple[str, int]]]:
    """Stratified split of ``(path, label)`` samples.

    Args:
        samples: The samples.
        ratios: One ratio per split but the last, each in (0, 1); with
            ``of_total`` their sum must also be below 1.
        seed: Seed of the per-class permutations.
        of_total: Ratios of the class total instead of the remainder.

    Returns:
        list[list[tuple[str, int]]]: ``len(ratios) + 1`` splits.

    Raises:
        ValueError: For no ratio, a ratio outside (0, 1), or, with
            ``of_total``, ratios summing to 1 or more.
    """
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise ValueError(
            f'each ratio must be between 0 and 1 (exclusive), got '
            f'{list(ratios)}'
        )
    if of_total and sum(ratios) >= 1:
        raise ValueError(
            f'with --of-total the ratios must have a sum below 1, got '
            f'{list(ratios)} (sum {sum(ratios):g})'
        )
    rng = np.random.default_rng(seed)
    labels = np.array([label for _, label in samples], dtype=np.int64)
    assign = np.full(len(samples), len(ratios), dtype=np.int64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        total, start = len(members), 0
        for i, r in enumerate(ratios):
            base = total if of_total else total - start
            n = min(round(r * base), total - start)
            assign[members[start : start + n]] = i
            start += n
    return [
        [samples[j] for j in np.flatnonzero(assign == i)]
        for i in range(len(ratios) + 1)
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the fork's, see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Split a SAN fork path list per class into '
        'OUT/split_<i>.pt files.'
    )
    parser.add_argument('custom_path', help='input path list (*_init.pt)')
    parser.add_argument('output_path', help='output folder')
    parser.add_argument(
        '-r',
        '--ratios',
        type=float,
        nargs='+',
        required=True,
        help='ratio of each split but the last, each in (0, 1) and of '
        'what the previous splits left (sum < 1 with --of-total); the last '
        'split takes the rest',
    )
    parser.add_argument(
        '--of-total',
        action='store_true',
        help='ratios of each class total instead of the remainder left by '
        'the previous splits',
    )
    parser.add_argument(
        '--seed', type=int, default=0, help='random seed (default: 0)'
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        init = load_init_file(args.custom_path)
        splits = split_samples(
            init['samples'], args.ratios, args.seed, args.of_total
        )
    except (OSError, ValueError) as err:
        print(f'split_dataset: error: {err}', file=sys.stderr)
        return 2
    for i, samples in enumerate(splits):
        out = dict(init, samples=samples)
        path = osp.join(args.output_path, f'split_{i}.pt')
        save_san_file(out, path)
        print(f'split {i}: {len(samples)} samples -> {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
