"""Check the datasets of a config once, before training on new real data.

Builds each dataloader's dataset with every image header opened
(``check_images='header'``, or ``'full'`` to decode every image) and
``bad_sample_policy='skip'`` so that all problems are collected instead of
stopping at the first, then prints the sample count, the class histogram,
box statistics and every problem found. Annotation defects (bad lines,
duplicate ids, labels out of range, inverted boxes) always stop the check
with the adapter's ``file:line`` message. Datasets without these options
have every image opened here, in-memory ones (``SANInMemoryDataset``)
from their encoded bytes; a ``SANSBIRDataset`` is checked through its
sketch and photo datasets, their problems labelled ``sketch:`` /
``photo:``.

Examples::

    python tools/dataset_converters/check_dataset.py \\
        configs/_base_/datasets/cub_loc.py --split val
    DATA_ROOT=/data python tools/dataset_converters/check_dataset.py \\
        CONFIG --full

Exit status: 0 if nothing was found, 1 if some samples are bad, 2 if a
dataset could not be built.
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from PIL import Image  # noqa: E402

from shared.utils.compat import apply_patches  # noqa: E402

SPLITS = {
    'train': 'train_dataloader',
    'val': 'val_dataloader',
    'test': 'test_dataloader',
}
#: The inner datasets of a ``SANSBIRDataset`` (``<view>_dataset``).
VIEWS = ('sketch', 'photo')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Build the datasets of a config with image checks and '
        'report counts, classes, boxes and problems.'
    )
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--split',
        choices=sorted(SPLITS),
        action='append',
        help='split(s) to check (default: every dataloader in the config)',
    )
    parser.add_argument(
        '--full', action='store_true', help='decode every image'
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. train_dataloader.dataset.data_root=X',
    )
    return parser.parse_args(argv)


def _accepts_checks(dataset_cls) -> bool:
    from shared.datasets.base import CheckedDatasetMixin

    return isinstance(dataset_cls, type) and issubclass(
        dataset_cls, CheckedDatasetMixin
    )


def _prepare_cfg(ds_cfg: dict, full: bool) -> bool:
    """Ask a dataset config (in place) for image checks and no pipeline.

    The sketch and photo dataset configs of a ``SANSBIRDataset`` are
    prepared the same way (their view pipelines dropped).

    Args:
        ds_cfg (dict): A dataset config; changed in place.
        full (bool): Decode every image instead of opening headers.

    Returns:
        bool: Whether the dataset class takes the policy mixin's checks.
    """
    from shared.registry import DATASETS

    ds_cfg['pipeline'] = []
    ds_cfg.pop('lazy_init', None)
    checked = _accepts_checks(DATASETS.get(ds_cfg['type']))
    if checked:
        ds_cfg.update(
            bad_sample_policy='skip',
            check_images='full' if full else 'header',
        )
        ds_cfg.pop('skip_invalid', None)
    for view in VIEWS:
        if isinstance(ds_cfg.get(f'{view}_dataset'), dict):
            _prepare_cfg(ds_cfg[f'{view}_dataset'], full)
            ds_cfg[f'{view}_pipeline'] = None
    return checked


def _dataset_problems(dataset, full: bool) -> dict[str, list[str]]:
    """Problems of a dataset built from a :func:`_prepare_cfg` config.

    Args:
        dataset: The built dataset.
        full (bool): Decode every image instead of opening headers.

    Returns:
        dict[str, list[str]]: Problem kind -> the samples it names. For a
        ``SANSBIRDataset`` the kinds of its sketch and photo datasets,
        labelled ``'sketch: <kind>'`` / ``'photo: <kind>'``.
    """
    from shared.datasets.base import CheckedDatasetMixin
    from shared.datasets.sbir import SANSBIRDataset

    if isinstance(dataset, SANSBIRDataset):
        problems: dict[str, list[str]] = {}
        for view in VIEWS:
            inner = getattr(dataset, f'{view}_dataset')
            for kind, refs in _dataset_problems(inner, full).items():
                problems[f'{view}: {kind}'] = list(refs)
        return problems
    if isinstance(dataset, CheckedDatasetMixin):
        return dict(dataset.skipped)
    return _header_problems(dataset, full)


def _header_problems(dataset, full: bool) -> dict[str, list[str]]:
    """Open every image of a dataset without the policy mixin.

    Images of datasets that hold them encoded in memory (a
    ``get_image_bytes(i)`` method, e.g. ``SANInMemoryDataset``, whose
    ``img_path`` is a pseudo path such as ``'val_imgs.pt[0]'``) are opened
    from their bytes; the others from ``img_path`` on disk.

    Args:
        dataset: A dataset with ``get_data_info(i)``.
        full (bool): Decode every image instead of opening headers.

    Returns:
        dict[str, list[str]]: ``missing_image`` (paths) and
        ``undecodable_image`` (``'<path>: <error>'``) problems.
    """
    problems: dict[str, list[str]] = {}
    get_bytes = getattr(dataset, 'get_image_bytes', None)
    for i in range(len(dataset)):
        path = dataset.get_data_info(i).get('img_path')
        if get_bytes is None and path is None:
            continue
        if path is None:
            path = f'{type(dataset).__name__}[{i}]'
        try:
            source = path if get_bytes is None else io.BytesIO(get_bytes(i))
            with Image.open(source) as img:
                if full:
                    img.load()
        except FileNotFoundError:
            problems.setdefault('missing_image', []).append(path)
        except Exception as err:  # noqa: BLE001 - any decoder error
            problems.setdefault('undecodable_image', []).append(
                f'{path}: {err}'
            )
    return problems


def _labels(info: dict) -> list[int]:
    label = info.get('gt_label')
    if label is None:
        return []
    return [int(v) for v in np.asarray(label).reshape(-1)]


def check_split(cfg, split: str, full: bool) -> int:
    """Build and report one split; return the number of bad samples."""
    from shared.registry import DATASETS

    ds_cfg = copy.deepcopy(cfg[SPLITS[split]]['dataset'])
    _prepare_cfg(ds_cfg, full)
    dataset = DATASETS.build(ds_cfg)
    problems = _dataset_problems(dataset, full)
    classes = dataset.metainfo.get('classes') or ()
    n_classes = len(classes) if classes else 'unnamed'
    print(
        f'== {split}: {type(dataset).__name__}, {len(dataset)} samples, '
        f'{n_classes} classes'
    )
    hist: Counter = Counter()
    boxes_per_image, box_fracs = [], []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        hist.update(_labels(info))
        boxes = info.get('gt_bboxes')
        if boxes is None:
            continue
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        boxes_per_image.append(len(boxes))
        shape = info.get('ann_img_shape')
        if shape is not None and len(boxes):
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            box_fracs.extend(area / (shape[0] * shape[1]))
    if hist:
        counts = np.array(
            [hist.get(c, 0) for c in range(len(classes) or (max(hist) + 1))]
        )
        print(
            f'   images per class: min {counts.min()}, median '
            f'{int(np.median(counts))}, max {counts.max()}; classes '
            f'without images: {int((counts == 0).sum())}'
        )
    if boxes_per_image:
        n = np.array(boxes_per_image)
        print(
            f'   boxes: {n.sum()} in {len(n)} images, {n.min()}-{n.max()} '
            f'per image, {(n == 0).sum()} images without boxes'
        )
    if box_fracs:
        f = np.array(box_fracs)
        print(
            f'   box area / image area: min {f.min():.3f}, median '
            f'{np.median(f):.3f}, max {f.max():.3f}'
        )
    bad = 0
    for kind, refs in problems.items():
        bad += len(refs)
        print(f'   PROBLEM {kind}: {len(refs)}')
        for ref in refs:
            print(f'     {ref}')
    if not problems:
        print('   no problems found')
    return bad


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    apply_patches()
    from shared.utils.entrypoint import load_config

    try:
        cfg = load_config(args.config, args.cfg_options)
    except (FileNotFoundError, ImportError) as err:
        print(f'check_dataset: error: {err}', file=sys.stderr)
        return 2
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    import shared  # noqa: F401 - registers the adapters

    splits = args.split or [s for s, key in SPLITS.items() if key in cfg]
    seen: list = []
    bad = 0
    for split in splits:
        if SPLITS[split] not in cfg:
            print(
                f'check_dataset: error: the config has no {SPLITS[split]}',
                file=sys.stderr,
            )
            return 2
        dataset_cfg = cfg[SPLITS[split]]['dataset']
        if dataset_cfg in seen:  # test_dataloader = val_dataloader
            print(f'== {split}: same dataset as an earlier split')
            continue
        seen.append(dataset_cfg)
        try:
            bad += check_split(cfg, split, args.full)
        except (ValueError, FileNotFoundError, KeyError) as err:
            print(f'check_dataset: {split}: error: {err}', file=sys.stderr)
            return 2
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
