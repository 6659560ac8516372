"""Draw the localization maps of a WSOL model (``evaluation.md`` §8).

The model comes from the config (plugins imported through
``custom_imports``) and the checkpoint (loaded with ``weights_only=True``
through :mod:`shared.utils.checkpoint`). Images pass through the config's
test pipeline; every map is resized, normalised and boxed with the
metrics' own code (:func:`~shared.evaluation.protocols.resize_cam`,
:func:`~shared.evaluation.protocols.preset_boxes`) and drawn with
:func:`~shared.visualization.overlay_cam` in the evaluated frame
(``img_shape``). One image per (sample, class) and a ``summary.csv`` are
written to ``--out-dir``. Models with the optional ``extra_maps(inputs,
data_samples, target=)`` method (TS-CAM: the class-token attention of every
block, m*, the rollout, the semantic and coupled maps) also get one
``*_layers.jpg`` tile sheet per (sample, class), drawn with
:func:`~shared.visualization.draw_layer_maps` (``--no-extra-maps`` skips
it).

Examples::

    python tools/visualization/vis_cam.py CONFIG CKPT --split val --num 8 \\
        --out-dir work_dirs/vis_cam --cam-threshold 0.2
    python tools/visualization/vis_cam.py CONFIG CKPT --img bird.jpg \\
        --out-dir vis --target pred 3 --preset tscam --cam-threshold 0.1
"""

from __future__ import annotations

import argparse
import csv
import os
import os.path as osp
import sys
from collections.abc import Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if sys.path[0] != REPO_ROOT:
    sys.path.insert(0, REPO_ROOT)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from shared.utils.compat import apply_patches  # noqa: E402
from shared.utils.entrypoint import ConfigError  # noqa: E402

PRESETS = ('wsoleval', 'tscam', 'spa')
SPLITS = ('val', 'test', 'train')
SUMMARY_FIELDS = (
    'image',
    'sample_idx',
    'gt_label',
    'gt_class',
    'pred_label',
    'pred_class',
    'pred_score',
    'cam_label',
    'cam_class',
    'threshold',
    'iou',
    'overlay',
    'layers',
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description="Draw the CAMs of a WSOL model with the metrics' "
        'resize, normalisation and box rules.'
    )
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        '--img', nargs='+', metavar='PATH', help='image files (no GT)'
    )
    source.add_argument(
        '--split',
        choices=SPLITS,
        help="samples of the config's {split}_dataloader dataset (always "
        'through the test pipeline), with their GT',
    )
    parser.add_argument(
        '--num',
        type=int,
        default=8,
        help='with --split: number of samples, evenly spaced over the '
        'dataset (default: 8)',
    )
    parser.add_argument(
        '--out-dir', required=True, help='folder for the overlays'
    )
    parser.add_argument(
        '--preset',
        choices=PRESETS,
        default='wsoleval',
        help='resize, normalisation and box rule (default: wsoleval)',
    )
    parser.add_argument(
        '--cam-threshold',
        type=float,
        default=None,
        help='box threshold tau in [0, 1] (default: no box, heat map only)',
    )
    parser.add_argument(
        '--target',
        nargs='+',
        default=['gt'],
        help="classes to draw per sample: 'gt', 'pred' (top-1) and/or "
        'class indices (default: gt; without GT, gt falls back to pred)',
    )
    parser.add_argument(
        '--device',
        default=None,
        help='torch device (default: cuda if available, else cpu)',
    )
    parser.add_argument(
        '--batch-size', type=int, default=8, help='images per forward pass'
    )
    parser.add_argument(
        '--no-extra-maps',
        action='store_true',
        help='skip the per-layer tiles of models with extra_maps() (e.g. '
        "TS-CAM's attention of every block, rollout, semantic map)",
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. model.head.num_classes=4',
    )
    args = parser.parse_args(argv)
    if args.cam_threshold is not None and not 0 <= args.cam_threshold <= 1:
        parser.error(
            f'--cam-threshold must be in [0, 1], got {args.cam_threshold}'
        )
    if args.num < 1:
        parser.error(f'--num must be >= 1, got {args.num}')
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    for target in args.target:
        if target not in ('gt', 'pred') and not target.isdigit():
            parser.error(
                f"--target: {target!r} is neither 'gt', 'pred' nor a class "
                'index'
            )
    return args


def _to_numpy(value) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def build_model(cfg, checkpoint: str, device: str):
    """Build the config's model, check the map contract, load the weights.

    Returns:
        tuple: (model in eval mode, class names or None).

    Raises:
        FileNotFoundError: The checkpoint does not exist.
        ConfigError: The model does not return ``loc_maps``.
    """
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from shared.registry import MODELS
    from shared.utils.entrypoint import explain_registry_errors

    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_type = cfg.model.get('type')
    with explain_registry_errors(cfg):
        model_cls = MODELS.get(model_type)
        if model_cls is None:
            raise KeyError(f'{model_type} is not in the model registry')
    if not getattr(model_cls, 'returns_loc_maps', False):
        raise ConfigError(
            f'model type {model_type!r} does not return loc_maps (no class '
            'attribute returns_loc_maps=True); vis_cam.py needs a WSOL model '
            'that follows evaluation.md §2.1, e.g. CAMClassifier'
        )
    model_cfg = cfg.model.copy()
    # As mmengine's Runner: the top-level data_preprocessor (mean, std,
    # to_rgb) is the model's unless the model sets its own.
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with explain_registry_errors(cfg):
        model = MODELS.build(model_cfg)
    ckpt = load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
    classes = (meta.get('dataset_meta') or {}).get('classes')
    model.to(device).eval()
    return model, (list(classes) if classes else None)


def _test_pipeline(cfg, with_annotations: bool):
    """The config's test pipeline (list, Compose); without annotations
    ``LoadLocAnnotations`` is dropped (plain image files have none)."""
    from mmengine.dataset import Compose

    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if not loader:
        raise ConfigError('the config has no test_dataloader/val_dataloader')
    pipeline = list(loader.dataset.pipeline)
    if not with_annotations:
        pipeline = [
            t for t in pipeline if t.get('type') != 'LoadLocAnnotations'
        ]
    return pipeline, Compose(pipeline)


def load_images(cfg, paths: Sequence[str]) -> list[dict]:
    """Pass image files through the test pipeline (without annotations).

    Raises:
        FileNotFoundError: A path does not exist.
        ValueError: An image cannot be decoded.
    """
    _, pipeline = _test_pipeline(cfg, with_annotations=False)
    items = []
    for idx, path in enumerate(paths):
        if not osp.isfile(path):
            raise FileNotFoundError(f'image {path} does not exist')
        try:
            items.append(pipeline(dict(img_path=path, sample_idx=idx)))
        except Exception as exc:  # decoders raise many types
            raise ValueError(f'cannot read the image {path}: {exc}') from exc
    return items


def load_split(cfg, split: str, num: int) -> tuple[list[dict], list | None]:
    """``num`` evenly spaced samples of a split, through the test pipeline.

    Returns:
        tuple: (packed samples, the dataset's class names or None).
    """
    from shared.registry import DATASETS

    key = f'{split}_dataloader'
    loader = cfg.get(key)
    if not loader:
        raise ConfigError(f'--split {split}: the config has no {key}')
    dataset_cfg = loader.dataset.to_dict()
    dataset_cfg['pipeline'], _ = _test_pipeline(cfg, with_annotations=True)
    dataset = DATASETS.build(dataset_cfg)
    if len(dataset) == 0:
        raise ConfigError(f'--split {split}: the dataset is empty')
    indices = np.unique(np.linspace(0, len(dataset) - 1, num).round())
    items = [dataset[int(i)] for i in indices]
    classes = (dataset.metainfo or {}).get('classes')
    return items, (list(classes) if classes else None)


@torch.no_grad()
def predict(model, items: list[dict], batch_size: int) -> list:
    """Run ``mode='predict'`` over packed samples in batches."""
    from mmengine.dataset import pseudo_collate

    outputs = []
    for start in range(0, len(items), batch_size):
        batch = pseudo_collate(items[start : start + batch_size])
        data = model.data_preprocessor(batch, False)
        outputs.extend(model(**data, mode='predict'))
    return outputs


@torch.no_grad()
def predict_with_labels(model, item: dict, labels: list[int]):
    """Predict one sample whose ``gt_label`` is replaced by ``labels``.

    §2.1 models append the GT classes to ``loc_labels``, so this yields the
    maps of classes outside the ranked predictions.
    """
    from mmengine.dataset import pseudo_collate

    sample = item['data_samples'].clone()
    sample.set_gt_label(torch.tensor(labels, dtype=torch.long))
    batch = pseudo_collate([dict(inputs=item['inputs'], data_samples=sample)])
    data = model.data_preprocessor(batch, False)
    return model(**data, mode='predict')[0]


@torch.no_grad()
def extra_maps_of(model, item: dict, label: int) -> dict[str, np.ndarray]:
    """The model's ``extra_maps`` of one sample for class ``label``.

    Returns:
        dict[str, np.ndarray]: name -> float32 (h, w) raw map.
    """
    from mmengine.dataset import pseudo_collate

    batch = pseudo_collate([item])
    data = model.data_preprocessor(batch, False)
    maps = model.extra_maps(
        data['inputs'], data['data_samples'], target=[int(label)]
    )
    return {name: _to_numpy(value)[0] for name, value in maps.items()}


def draw_extra_maps(
    model, item: dict, label: int, image: np.ndarray, preset: str
) -> np.ndarray:
    """Tiles of every map of ``model.extra_maps`` over ``image`` (BGR)."""
    from shared.visualization import draw_layer_maps

    maps = extra_maps_of(model, item, label)
    return draw_layer_maps(
        image,
        [m.astype(np.float32, copy=False) for m in maps.values()],
        list(maps),
        preset=preset,
    )


def _require(sample, key: str, model_type: str):
    """A field of a model output, or an error naming the model type."""
    value = sample.get(key, None)
    if value is None:
        raise ValueError(
            f'the output of {model_type} has no {key!r} (evaluation.md '
            f'§2.1); img_path={sample.get("img_path")!r}'
        )
    return value


def _gt_boxes(
    sample, frame: tuple[int, int], preset: str
) -> np.ndarray | None:
    """GT boxes in the evaluated frame: the metrics' protocol rule when the
    raw annotation is there and the image was neither flipped nor cropped,
    else the floored pipeline boxes."""
    from shared.evaluation.gt_boxes import protocol_gt_boxes

    raw = sample.get('ori_gt_bboxes', None)
    if (
        raw is not None
        and sample.get('ori_box_format', None) is not None
        and not sample.get('flip', False)
        and sample.get('crop_bbox', None) is None
    ):
        ori = sample.get('ori_shape')
        boxes = protocol_gt_boxes(
            _to_numpy(raw),
            sample.get('ori_box_format'),
            (int(ori[0]), int(ori[1])),
            frame,
            preset,
        )
    elif sample.get('gt_bboxes', None) is not None:
        boxes = np.floor(_to_numpy(sample.get('gt_bboxes')).astype(np.float64))
    else:
        return None
    boxes = boxes.reshape(-1, 4)
    return boxes if len(boxes) else None


def _class_name(classes, label) -> str:
    """Class name of an index (the index itself without names)."""
    if label is None or label == '':
        return ''
    if classes and 0 <= int(label) < len(classes):
        return str(classes[int(label)])
    return str(label)


def resolve_targets(
    targets: Sequence[str], gt: int | None, pred: int, num_classes: int
) -> tuple[list[int], bool]:
    """Classes to draw for one sample, in order, without duplicates.

    Returns:
        tuple: (class indices, whether 'gt' fell back to 'pred').
    """
    classes: list[int] = []
    fell_back = False
    for target in targets:
        if target == 'gt':
            if gt is None:
                fell_back = True
                label = pred
            else:
                label = gt
        elif target == 'pred':
            label = pred
        else:
            label = int(target)
            if label >= num_classes:
                raise ConfigError(
                    f'--target {label}: the model has {num_classes} classes'
                )
        if label not in classes:
            classes.append(label)
    return classes, fell_back


def visualize(
    model,
    items: list[dict],
    outputs: list,
    args: argparse.Namespace,
    classes: list | None,
) -> list[dict]:
    """Draw every (sample, class) overlay; return the summary rows."""
    from shared.evaluation.protocols import preset_boxes, resize_cam
    from shared.evaluation.wsol import box_iou
    from shared.visualization import overlay_cam, read_frame_image

    model_type = type(model).__name__
    with_layers = hasattr(model, 'extra_maps') and not getattr(
        args, 'no_extra_maps', False
    )
    os.makedirs(args.out_dir, exist_ok=True)
    rows = []
    noted = False
    for item, sample in zip(items, outputs):
        maps = _to_numpy(_require(sample, 'loc_maps', model_type))
        labels = _to_numpy(_require(sample, 'loc_labels', model_type))
        labels = labels.reshape(-1).astype(np.int64)
        scores = _to_numpy(_require(sample, 'pred_score', model_type))
        if maps.ndim != 3 or maps.shape[0] != len(labels):
            raise ValueError(
                f'{model_type}: loc_maps must be (K, h, w) with K = '
                f'len(loc_labels) = {len(labels)}, got {maps.shape}'
            )
        pred = int(labels[0])
        gt_label = sample.get('gt_label', None)
        gt = (
            int(_to_numpy(gt_label).reshape(-1)[0])
            if gt_label is not None
            else None
        )
        targets, fell_back = resolve_targets(
            args.target, gt, pred, len(scores)
        )
        if fell_back and not noted:
            print(
                'note: --target gt on images without ground truth draws '
                'the top-1 prediction instead'
            )
            noted = True
        missing = [k for k in targets if k not in labels]
        if missing:
            extra = predict_with_labels(model, item, missing)
            extra_labels = _to_numpy(extra.loc_labels).reshape(-1)
            extra_maps = _to_numpy(extra.loc_maps)
        img_path = str(sample.get('img_path'))
        shape = sample.get('img_shape')
        height, width = int(shape[0]), int(shape[1])
        image = read_frame_image(sample)
        gt_boxes = _gt_boxes(sample, (height, width), args.preset)
        stem = osp.splitext(osp.basename(img_path))[0]
        idx = int(sample.get('sample_idx', len(rows)))
        for label in targets:
            hits = np.flatnonzero(labels == label)
            if len(hits):
                native = maps[hits[0]]
            else:
                native = extra_maps[np.flatnonzero(extra_labels == label)[0]]
            cam = resize_cam(
                native.astype(np.float32, copy=False),
                (height, width),
                args.preset,
            )
            boxes = None
            iou = ''
            text = _class_name(classes, label)
            if args.cam_threshold is not None:
                boxes = preset_boxes(cam, args.cam_threshold, args.preset)
                if gt_boxes is not None:
                    iou_value = float(box_iou(boxes, gt_boxes).max())
                    iou = f'{100 * iou_value:.2f}'
                    text = f'IoU {100 * iou_value:.1f}'
            canvas = overlay_cam(
                image,
                cam,
                boxes,
                gt_boxes,
                text=text,
                preset=args.preset,
            )
            name = f'{idx:05d}_{stem}_class{label}.jpg'
            path = osp.join(args.out_dir, name)
            if not cv2.imwrite(path, canvas):
                raise OSError(f'cannot write {path}')
            layers = ''
            if with_layers:
                layers = f'{idx:05d}_{stem}_class{label}_layers.jpg'
                tiles = draw_extra_maps(model, item, label, image, args.preset)
                layers_path = osp.join(args.out_dir, layers)
                if not cv2.imwrite(layers_path, tiles):
                    raise OSError(f'cannot write {layers_path}')
            rows.append(
                dict(
                    image=img_path,
                    sample_idx=idx,
                    gt_label='' if gt is None else gt,
                    gt_class=_class_name(classes, gt),
                    pred_label=pred,
                    pred_class=_class_name(classes, pred),
                    pred_score=f'{float(scores[pred]):.4f}',
                    cam_label=label,
                    cam_class=_class_name(classes, label),
                    threshold=''
                    if args.cam_threshold is None
                    else args.cam_threshold,
                    iou=iou,
                    overlay=name,
                    layers=layers,
                )
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    apply_patches()
    from shared.utils.entrypoint import load_config

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    cfg = load_config(args.config, args.cfg_options)
    model, classes = build_model(cfg, args.checkpoint, device)
    if args.img:
        items = load_images(cfg, args.img)
    else:
        items, split_classes = load_split(cfg, args.split, args.num)
        classes = classes or split_classes
    outputs = predict(model, items, args.batch_size)
    rows = visualize(model, items, outputs, args, classes)
    summary = osp.join(args.out_dir, 'summary.csv')
    with open(summary, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    ious = [float(r['iou']) for r in rows if r['iou'] != '']
    mean_iou = f', mean IoU {np.mean(ious):.1f}' if ious else ''
    print(
        f'{len(rows)} overlay(s) of {len(items)} image(s) written to '
        f'{args.out_dir} (summary.csv{mean_iou})'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
