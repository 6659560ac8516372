"""Benchmark ``shared.evaluation.wsol`` against the literal wsolevaluation
re-statement in ``tests/reference/wsoleval.py`` (``evaluation.md`` §4).

Two synthetic sets of ``--num`` float64 224 x 224 maps (bicubic-upsampled
14 x 14 noise plus Gaussian bumps on the objects, min-max normalised):
``single`` with one GT box per image (CUB-like) and ``multi`` with one to
four boxes (ILSVRC-like). For each set and each interval d in
{0.01, 0.001} it times MaxBoxAccV2 (IoU 30/50/70, single thread and with
``--workers`` threads, for each ``--backend``: ``cv2`` contour sweep and/or
``tree`` component backend) and PxAP (masks = union of the GT boxes)
against the reference, and prints the seconds, the throughput ratio
reference / port and whether every returned value is identical.

Exits with status 1 when a result differs from the reference, and with
``--fail-below-target`` also when the best MaxBoxAccV2 ratio of the timed
backends is below the 10x target of §4 for some set and interval.

Examples::

    python tools/analysis/benchmark_wsol_eval.py --quick
    python tools/analysis/benchmark_wsol_eval.py --num 1000 --workers 2
    python tools/analysis/benchmark_wsol_eval.py --num 200 --backend tree
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from shared.evaluation.wsol import max_box_acc, normalize_cam, pxap  # noqa: E402
from tests.reference.wsoleval import (  # noqa: E402
    reference_max_box_acc,
    reference_pxap,
)

SIZE = 224
INTERVALS = (0.01, 0.001)
TARGET_RATIO = 10.0


def make_set(
    num: int, multi: bool, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Synthetic maps, GT boxes and box-union masks.

    Args:
        num (int): Number of images.
        multi (bool): One to four GT boxes per image instead of one.
        seed (int): Random seed.

    Returns:
        tuple: N float64 (224, 224) maps in [0, 1], N int64 (n_i, 4)
        inclusive boxes, bool (N, 224, 224) masks.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cams, boxes = [], []
    masks = np.zeros((num, SIZE, SIZE), dtype=bool)
    for i in range(num):
        k = int(rng.integers(1, 5)) if multi else 1
        wh = rng.integers(30, 150, (k, 2))
        xy = (rng.random((k, 2)) * (SIZE - wh)).astype(np.int64)
        gt = np.concatenate([xy, xy + wh - 1], axis=1)
        noise = cv2.resize(
            rng.random((14, 14)), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC
        )
        cam = 0.5 * noise
        for x0, y0, x1, y1 in gt:
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            sx, sy = (x1 - x0) / 3, (y1 - y0) / 3
            cam = cam + np.exp(
                -(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2) / 2
            )
            masks[i, y0 : y1 + 1, x0 : x1 + 1] = True
        cams.append(normalize_cam(cam))
        boxes.append(gt)
    return cams, boxes, masks


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def same_box_result(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    return all(
        np.array_equal(a[k], b[k]) if k == 'box_acc_curves' else a[k] == b[k]
        for k in a
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num', type=int, default=1000, help='maps per set')
    parser.add_argument(
        '--quick', action='store_true', help='50 maps per set, d = 0.001 only'
    )
    parser.add_argument(
        '--workers', type=int, default=2, help='threads of the parallel run'
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--backend',
        choices=('tree', 'cv2', 'both'),
        default='both',
        help='max_box_acc backend(s) to time',
    )
    parser.add_argument(
        '--fail-below-target',
        action='store_true',
        help=(
            f'exit 1 when the best MaxBoxAccV2 ratio is below '
            f'{TARGET_RATIO:g}x'
        ),
    )
    args = parser.parse_args(argv)
    num = min(args.num, 50) if args.quick else args.num
    intervals = (0.001,) if args.quick else INTERVALS
    backends = ('cv2', 'tree') if args.backend == 'both' else (args.backend,)
    all_identical = True
    below_target = False
    print(
        f'{num} maps of {SIZE}x{SIZE} per set, backends '
        f'{"+".join(backends)}, IoU 30/50/70'
    )
    for name, multi in (('single', False), ('multi', True)):
        cams, gts, masks = make_set(num, multi, args.seed)
        for d in intervals:
            ref, t_ref = timed(
                reference_max_box_acc, cams, gts, cam_curve_interval=d
            )
            best_ratio = 0.0
            for backend in backends:
                one, t_one = timed(
                    max_box_acc,
                    cams,
                    gts,
                    cam_curve_interval=d,
                    num_workers=1,
                    backend=backend,
                )
                par, t_par = timed(
                    max_box_acc,
                    cams,
                    gts,
                    cam_curve_interval=d,
                    num_workers=args.workers,
                    backend=backend,
                )
                same = same_box_result(one, ref) and same_box_result(par, ref)
                all_identical &= same
                ratio = t_ref / t_par
                best_ratio = max(best_ratio, ratio)
                print(
                    f'[{name:6s} d={d:<5}] MaxBoxAccV2 '
                    f'{ref["MaxBoxAccV2"]:.4f}  {backend:4s}  '
                    f'reference {t_ref:8.2f} s  port 1 thread {t_one:7.2f} s '
                    f'(x{t_ref / t_one:.1f})  {args.workers} threads '
                    f'{t_par:7.2f} s (x{ratio:.1f})  identical: {same}'
                )
            below_target |= best_ratio < TARGET_RATIO
            ref_px, t_ref_px = timed(
                reference_pxap, np.stack(cams), masks, cam_curve_interval=d
            )
            port_px, t_px = timed(
                pxap, np.stack(cams), masks, cam_curve_interval=d
            )
            same_px = port_px == ref_px
            all_identical &= same_px
            print(
                f'[{name:6s} d={d:<5}] PxAP {ref_px["PxAP"]:.4f}  '
                f'reference {t_ref_px:8.2f} s  port {t_px:7.2f} s '
                f'(x{t_ref_px / t_px:.1f})  identical: {same_px}'
            )
    print(f'all results identical: {all_identical}')
    print(
        f'MaxBoxAccV2 target (>= {TARGET_RATIO:g}x): '
        f'{"NOT met" if below_target else "met"}'
    )
    if not all_identical:
        return 1
    if args.fail_below_target and below_target:
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
