"""Score saved score maps against wsolevaluation metadata (offline).

The counterpart of ``clovaai/wsolevaluation``'s ``evaluation.py``
(``evaluation.md`` §1, §2): one ``<image_id>.npy`` score map per image
under ``--scoremap-root`` (``image_id`` as written in the metadata, with
its sub-folders, ``.npy`` appended), the split's metadata read by
:class:`shared.datasets.WSOLMetaDataset`, and

- CUB / ILSVRC (boxes): each map resized to the S x S frame (S = 224) and
  normalised with :func:`~shared.evaluation.protocols.resize_cam`, the GT
  boxes of ``localization.txt`` rescaled from the image size of
  ``image_sizes.txt`` to S with the preset's rule
  (:func:`~shared.evaluation.gt_boxes.protocol_gt_boxes`; ``wsoleval``:
  int(x * S / W), no clip), then
  :func:`~shared.evaluation.wsol.max_box_acc` (MaxBoxAccV2 with
  ``--multi-contour-eval``, the largest-contour variant without);
- OpenImages (masks): the union of the instance pngs (value > 0) and the
  ignore png under ``--mask-root``, resized to S with nearest, then
  :func:`~shared.evaluation.wsol.pxap`.

Maps may be native (any size, any scale) or already resized and
normalised (wsolevaluation's own dumps): resizing a 224 map to 224 is the
identity and the normalisation is idempotent.

Examples::

    python tools/analysis/wsol_eval_offline.py \\
        --scoremap-root work_dirs/scoremaps --metadata-root metadata \\
        --dataset-name CUB --split test --out cub_test.json
    python tools/analysis/wsol_eval_offline.py --dataset-name OpenImages \\
        --scoremap-root maps --metadata-root metadata --mask-root dataset \\
        --split test --cam-curve-interval 0.001
"""

from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

__all__ = ['EvalError', 'evaluate', 'main', 'resolve_metadata_root']

DATASET_NAMES = ('CUB', 'ILSVRC', 'OpenImages')
SPLITS = ('train', 'val', 'test')
#: Images scored per :func:`max_box_acc` call (bounds memory on ILSVRC).
CHUNK = 1024


class EvalError(ValueError):
    """Missing or unusable score maps, metadata or masks."""


def resolve_metadata_root(root: str, dataset_name: str, split: str) -> str:
    """The split's metadata folder.

    ``root/<dataset_name>/<split>`` as wsolevaluation builds it; when that
    folder does not exist but ``root`` itself holds ``image_ids.txt``,
    ``root`` is taken as the split folder.

    Raises:
        EvalError: Neither folder holds ``image_ids.txt``.
    """
    joined = osp.join(root, dataset_name, split)
    if osp.isfile(osp.join(joined, 'image_ids.txt')):
        return joined
    if osp.isfile(osp.join(root, 'image_ids.txt')):
        return root
    raise EvalError(
        f'no metadata found: neither {joined}/image_ids.txt nor '
        f'{root}/image_ids.txt exists'
    )


def _load_map(scoremap_root: str, info: dict) -> np.ndarray:
    key = info['img_id']
    path = osp.join(scoremap_root, f'{key}.npy')
    if not osp.isfile(path):
        raise EvalError(
            f'missing score map {path} for image {key!r} '
            f'({info.get("img_ref")})'
        )
    try:
        cam = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise EvalError(f'cannot read score map {path}: {err}') from err
    if cam.ndim == 3 and cam.shape[0] == 1:
        cam = cam[0]
    return cam


def _frame_map(cam, path: str, size: int, preset: str) -> np.ndarray:
    from shared.evaluation.protocols import resize_cam

    try:
        return resize_cam(cam, (size, size), preset)
    except (TypeError, ValueError) as err:
        raise EvalError(f'score map {path}: {err}') from err


def _image_size(info: dict) -> tuple[int, int]:
    """(H, W) from ``image_sizes.txt``, else from the image header."""
    if info.get('ann_img_shape') is not None:
        h, w = info['ann_img_shape']
        return int(h), int(w)
    from PIL import Image

    path = info['img_path']
    if not osp.isfile(path):
        raise EvalError(
            f'image_sizes.txt is absent and the image {path} does not '
            'exist; pass --data-root so that image sizes can be read'
        )
    with Image.open(path) as img:
        w, h = img.size
    return h, w


def _read_png(path: str, size: int) -> np.ndarray:
    import cv2

    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise EvalError(f'cannot read mask png {path}')
    if mask.shape != (size, size):
        mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return mask


def _masks(info: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Foreground (instance union) and ignore masks resized to S x S."""
    threshold = info.get('mask_threshold', 0)
    foreground = np.zeros((size, size), dtype=bool)
    for png in info['mask_paths']:
        foreground |= _read_png(png, size) > threshold
    ignore = np.zeros((size, size), dtype=bool)
    if info.get('ignore_path'):
        ignore = _read_png(info['ignore_path'], size) > 0
    return foreground, ignore


def _combine_box_results(parts: list[tuple[int, dict]], deltas, taus):
    """Merge per-chunk :func:`max_box_acc` results exactly.

    Each chunk's curve is 100 * count / n; the counts are recovered as
    integers and the merged curve is computed with the same expression
    (count * 100.0 / N) as a single call would.
    """
    from shared.evaluation.wsol import _box_acc_summary

    if len(parts) == 1:
        return parts[0][1]
    total = sum(n for n, _ in parts)
    counts = sum(
        np.rint(r['box_acc_curves'] * n / 100.0).astype(np.int64)
        for n, r in parts
    )
    return _box_acc_summary(counts, total, deltas, taus)


def evaluate(
    scoremap_root: str,
    metadata_root: str,
    dataset_name: str = 'CUB',
    split: str = 'test',
    mask_root: str | None = None,
    data_root: str = '',
    cam_curve_interval: float = 0.01,
    iou_threshold_list=(30, 50, 70),
    multi_contour_eval: bool = True,
    preset: str = 'wsoleval',
    eval_size: int = 224,
    num_workers: int | None = None,
) -> dict:
    """Score a folder of ``.npy`` maps against one metadata split.

    Args:
        scoremap_root (str): Folder of ``<image_id>.npy`` (h, w) maps.
        metadata_root (str): wsolevaluation ``metadata`` folder (or the
            split folder itself, see :func:`resolve_metadata_root`).
        dataset_name (str): ``'CUB'``, ``'ILSVRC'`` (boxes) or
            ``'OpenImages'`` (masks).
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        mask_root (str | None): Root of the OpenImages pngs (the paths of
            ``localization.txt`` are relative to it).
        data_root (str): Image root; only read when ``image_sizes.txt`` is
            absent.
        cam_curve_interval (float): Threshold step (0.01 as wsolevaluation's
            CLI; its training scripts use 0.001).
        iou_threshold_list (Sequence[float]): IoU levels in percent.
        multi_contour_eval (bool): Every contour (V2) or the largest (V1).
        preset (str): Resize and GT-box rule (``'wsoleval'`` for parity).
        eval_size (int): The square frame S in pixels.
        num_workers (int | None): Threads of :func:`max_box_acc`.

    Returns:
        dict: ``MaxBoxAccV2`` (mean over the IoU levels; named
        ``MaxBoxAccV1`` when ``multi_contour_eval`` is False, V1 proper
        with ``iou_threshold_list=(50,)``), ``MaxBoxAcc@{d}``,
        ``best_threshold@{d}`` and ``box_acc_curves`` (list of lists) for
        boxes; ``PxAP``, ``pIoU``, ``best_threshold`` for masks; plus
        ``num_images``.

    Raises:
        EvalError: A missing or unreadable map, png or metadata folder.
    """
    from shared.datasets import WSOLMetaDataset
    from shared.evaluation.gt_boxes import protocol_gt_boxes
    from shared.evaluation.wsol import (
        _check_interval,
        _pr_summary,
        _sorted_hist,
        max_box_acc,
    )

    if dataset_name not in DATASET_NAMES:
        raise EvalError(
            f'dataset_name must be one of {DATASET_NAMES}, got '
            f'{dataset_name!r}'
        )
    if not osp.isdir(scoremap_root):
        raise EvalError(f'--scoremap-root {scoremap_root} is not a folder')
    masks = dataset_name == 'OpenImages'
    if masks and not mask_root:
        raise EvalError('OpenImages needs --mask-root (the png folder)')
    split_root = resolve_metadata_root(metadata_root, dataset_name, split)
    dataset = WSOLMetaDataset(
        data_root=data_root,
        metadata_root=split_root,
        loc_type='mask' if masks else 'box',
        mask_root=mask_root,
        pipeline=[],
        test_mode=True,
    )
    num = len(dataset)
    if num == 0:
        raise EvalError(f'{split_root} lists no image')
    size = int(eval_size)

    if masks:
        # Per-image histograms, pooled as pxap() pools them: memory stays
        # O(bins) on the 29.8k-image OpenImages train split.
        interval = _check_interval(cam_curve_interval)
        edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
        pos = np.zeros(len(edges) - 1, dtype=np.int64)
        neg = np.zeros(len(edges) - 1, dtype=np.int64)
        for i in range(num):
            info = dataset.get_data_info(i)
            cam = _load_map(scoremap_root, info)
            path = osp.join(scoremap_root, f'{info["img_id"]}.npy')
            frame = _frame_map(cam, path, size, preset)
            fg, ignore = _masks(info, size)
            pos += _sorted_hist(frame[fg], edges)
            neg += _sorted_hist(frame[~fg & ~ignore], edges)
        if pos.sum() == 0:
            raise EvalError(
                f'no positive ground-truth pixel in the {num} masks of '
                f'{split_root}'
            )
        result = _pr_summary(
            pos.astype(np.float64), neg.astype(np.float64), edges
        )
        result = {k: float(v) for k, v in result.items()}
    else:
        # 30.0 -> 30: key names as the CLI and the metric write them.
        deltas = [
            int(d) if float(d).is_integer() else float(d)
            for d in iou_threshold_list
        ]
        parts = []
        for start in range(0, num, CHUNK):
            cams, gts = [], []
            for i in range(start, min(start + CHUNK, num)):
                info = dataset.get_data_info(i)
                cam = _load_map(scoremap_root, info)
                path = osp.join(scoremap_root, f'{info["img_id"]}.npy')
                cams.append(_frame_map(cam, path, size, preset))
                gts.append(
                    protocol_gt_boxes(
                        info['ori_gt_bboxes'],
                        info['ori_box_format'],
                        _image_size(info),
                        (size, size),
                        preset,
                    )
                )
            part = max_box_acc(
                cams,
                gts,
                iou_thresholds=deltas,
                cam_curve_interval=cam_curve_interval,
                multi_contour=multi_contour_eval,
                num_workers=num_workers,
            )
            parts.append((len(cams), part))
        taus = np.arange(0, 1, cam_curve_interval)
        result = _combine_box_results(parts, deltas, taus)
        result['box_acc_curves'] = np.asarray(
            result['box_acc_curves']
        ).tolist()
        if not multi_contour_eval:
            result['MaxBoxAccV1'] = result.pop('MaxBoxAccV2')
    result['num_images'] = num
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (wsolevaluation's, with dashes)."""
    from shared.evaluation.protocols import PRESETS

    parser = argparse.ArgumentParser(
        description='Score saved .npy score maps against wsolevaluation '
        'metadata (MaxBoxAccV2 for CUB/ILSVRC, PxAP for OpenImages).'
    )
    parser.add_argument(
        '--scoremap-root',
        required=True,
        help='folder of <image_id>.npy score maps',
    )
    parser.add_argument(
        '--metadata-root',
        required=True,
        help='wsolevaluation metadata folder (holding '
        '<dataset-name>/<split>/), or the split folder itself',
    )
    parser.add_argument(
        '--mask-root', default=None, help='OpenImages png root (PxAP)'
    )
    parser.add_argument(
        '--data-root',
        default='',
        help='image root; only read when image_sizes.txt is absent',
    )
    parser.add_argument('--dataset-name', default='CUB', choices=DATASET_NAMES)
    parser.add_argument('--split', default='test', choices=SPLITS)
    parser.add_argument(
        '--cam-curve-interval',
        type=float,
        default=0.01,
        help="threshold step (default 0.01, as wsolevaluation's CLI)",
    )
    parser.add_argument(
        '--iou-threshold-list',
        type=float,
        nargs='+',
        default=[30, 50, 70],
        help='IoU levels in percent (default 30 50 70)',
    )
    parser.add_argument(
        '--multi-contour-eval',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='every contour gives a box (MaxBoxAccV2; default) or only the '
        'largest (--no-multi-contour-eval)',
    )
    parser.add_argument(
        '--preset',
        default='wsoleval',
        choices=sorted(PRESETS),
        help='map resize and GT-box rule (default wsoleval)',
    )
    parser.add_argument(
        '--eval-size', type=int, default=224, help='square frame (224)'
    )
    parser.add_argument(
        '--num-workers', type=int, default=None, help='scoring threads'
    )
    parser.add_argument('--out', default=None, help='write the metrics JSON')
    args = parser.parse_args(argv)
    # 30.0 -> 30 so that keys read MaxBoxAcc@30 as in the metrics.
    args.iou_threshold_list = [
        int(d) if float(d).is_integer() else d for d in args.iou_threshold_list
    ]
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    from shared.utils.compat import apply_patches

    apply_patches()
    from shared.datasets import AnnotationError

    try:
        result = evaluate(
            scoremap_root=args.scoremap_root,
            metadata_root=args.metadata_root,
            dataset_name=args.dataset_name,
            split=args.split,
            mask_root=args.mask_root,
            data_root=args.data_root,
            cam_curve_interval=args.cam_curve_interval,
            iou_threshold_list=args.iou_threshold_list,
            multi_contour_eval=args.multi_contour_eval,
            preset=args.preset,
            eval_size=args.eval_size,
            num_workers=args.num_workers,
        )
    except (EvalError, AnnotationError) as err:
        print(f'wsol_eval_offline: error: {err}', file=sys.stderr)
        return 2
    settings = dict(
        dataset_name=args.dataset_name,
        split=args.split,
        cam_curve_interval=args.cam_curve_interval,
        iou_threshold_list=args.iou_threshold_list,
        multi_contour_eval=args.multi_contour_eval,
        preset=args.preset,
        eval_size=args.eval_size,
    )
    print(
        f'wsol_eval_offline: {args.dataset_name} {args.split}, '
        f'{result["num_images"]} images, cam_curve_interval='
        f'{args.cam_curve_interval}'
    )
    main_keys = ('MaxBoxAccV2', 'MaxBoxAccV1', 'PxAP')
    ordered = sorted(result, key=lambda k: k not in main_keys)
    for key in ordered:
        value = result[key]
        if key not in ('box_acc_curves', 'num_images'):
            print(f'{key}: {value:.4f}' if 'threshold' in key else
                  f'{key}: {value:.2f}')  # fmt: skip
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(settings=settings, metrics=result), f, indent=2)
        print(f'wsol_eval_offline: metrics written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
