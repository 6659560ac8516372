"""``--format coco``: COCO-2014 instances files read by ``COCOMultiLabel``.

Layout under ``DIR`` (``datasets.md`` §4.5)::

    coco/annotations/instances_train2014.json   instances_val2014.json
    coco/train2014/COCO_train2014_<12-digit image id>.jpg
    coco/val2014/COCO_val2014_<12-digit image id>.jpg

The json files follow the real instances schema: ``images`` (``id``,
``file_name``, ``width``, ``height``), ``annotations`` (``id``,
``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]`` float, ``area`` =
mask pixels, ``iscrowd``, ``segmentation``: polygons from the visible mask
contour, or an uncompressed RLE for crowd annotations) and ``categories``
(``id``, ``name``, ``supercategory``) with **gaps** in the ids.

Image ``i < C * per_class`` of a split has primary class ``i // per_class``
plus 0-3 other distinct classes (1-4 objects); ``max(1, n // 10)`` images
without any object follow. The first object of every image with
``i % 5 == 1`` is a crowd annotation. Boxes are the tight extent of each
object's visible mask, ``[x0, y0, x1 - x0, y1 - y0]`` in edge coordinates.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .common import (
    SyntheticSpec,
    WriterResult,
    image_size,
    parallel_map,
    sample_rng,
    save_oracle_map,
    truncate_file,
    unsupported_corruption,
    write_image,
)
from .draw import Scene, class_style, render_scene
from .imagefolder import class_names

SPLITS = {'train': 0, 'val': 1}
CORRUPTIONS = (
    'missing_image',
    'truncated_image',
    'empty_annotation',
    'duplicate_id',
    'class_mismatch',
    'box_outside',
)
#: Annotation ids of split ``s`` start at ``1 + s * ANN_ID_STRIDE``.
ANN_ID_STRIDE = 1_000_000


def category_ids(num_classes: int) -> list[int]:
    """COCO-like category ids with gaps: 1, 3, 4, 6, 7, 9, ..."""
    return [1 + c + (c + 1) // 2 for c in range(num_classes)]


def image_id(split: str, index: int) -> int:
    """Non-contiguous image id; train and val ids never collide."""
    return (9 if split == 'train' else 42) + 7 * index


def file_name(split: str, img_id: int) -> str:
    """``COCO_<split>2014_<12-digit id>.jpg``."""
    return f'COCO_{split}2014_{img_id:012d}.jpg'


def num_images(spec: SyntheticSpec, split: str) -> tuple[int, int]:
    """``(images with objects, images without)`` of a split."""
    per_class = spec.per_class if split == 'train' else spec.val_per_class
    n = spec.num_classes * per_class
    return n, (max(1, n // 10) if n else 0)


def multilabel_classes(
    rng: np.random.Generator,
    primary: int,
    num_classes: int,
    max_objects: int = 4,
) -> list[int]:
    """``primary`` plus 0..``max_objects - 1`` other distinct classes."""
    k = min(int(rng.integers(1, max_objects + 1)), num_classes)
    others = [c for c in range(num_classes) if c != primary]
    extra = rng.choice(others, size=k - 1, replace=False) if k > 1 else []
    return [primary, *(int(c) for c in extra)]


def scene(spec: SyntheticSpec, split: str, index: int) -> Scene:
    """Render image ``index`` of ``split`` (also used by tests).

    Returns:
        Scene: The image and its visible instances.
    """
    rng = sample_rng(spec, SPLITS[split], index)
    h, w = image_size(rng, spec)
    with_objects, _ = num_images(spec, split)
    per_class = spec.per_class if split == 'train' else spec.val_per_class
    classes = []
    if index < with_objects:
        classes = multilabel_classes(rng, index // per_class, spec.num_classes)
    return render_scene(rng, h, w, classes)


def polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons ``[x0, y0, x1, y1, ...]`` of a binary mask's outline."""
    contours, _ = cv2.findContours(
        mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [
        c.reshape(-1).astype(np.float64).tolist()
        for c in contours
        if len(c) >= 3
    ]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major runs, zeros first)."""
    flat = mask.flatten(order='F')
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {'counts': counts, 'size': [int(mask.shape[0]), int(mask.shape[1])]}


def _render(task) -> dict:
    spec, split, index = task
    sc = scene(spec, split, index)
    h, w = sc.img.shape[:2]
    name = file_name(split, image_id(split, index))
    write_image(spec.out / 'coco' / f'{split}2014' / name, sc.img)
    if spec.write_oracle_maps and split == 'val':
        save_oracle_map(spec, f'val2014/{name}', sc.union_mask())
    objects = []
    for k, (c, mask, box) in enumerate(zip(sc.classes, sc.masks, sc.boxes)):
        crowd = int(k == 0 and index % 5 == 1)
        seg = uncompressed_rle(mask) if crowd else polygons(mask)
        if not crowd and not seg:  # a sliver too thin for a contour
            x0, y0, x1, y1 = box.tolist()
            seg = [[x0, y0, x1, y0, x1, y1, x0, y1]]
        objects.append(
            {
                'class': c,
                'bbox': [
                    float(box[0]),
                    float(box[1]),
                    float(box[2] - box[0]),
                    float(box[3] - box[1]),
                ],
                'area': float(mask.sum()),
                'iscrowd': crowd,
                'segmentation': seg,
            }
        )
    return {'height': h, 'width': w, 'file_name': name, 'objects': objects}


def _instances(spec: SyntheticSpec, split: str, rendered: list) -> dict:
    cat_ids = category_ids(spec.num_classes)
    images, annotations = [], []
    ann_id = 1 + SPLITS[split] * ANN_ID_STRIDE
    for index, item in enumerate(rendered):
        img_id = image_id(split, index)
        images.append(
            {
                'id': img_id,
                'file_name': item['file_name'],
                'width': item['width'],
                'height': item['height'],
            }
        )
        for obj in item['objects']:
            annotations.append(
                {
                    'id': ann_id,
                    'image_id': img_id,
                    'category_id': cat_ids[obj['class']],
                    'bbox': obj['bbox'],
                    'area': obj['area'],
                    'iscrowd': obj['iscrowd'],
                    'segmentation': obj['segmentation'],
                }
            )
            ann_id += 1
    categories = [
        {'id': cid, 'name': name, 'supercategory': class_style(c).shape}
        for c, (cid, name) in enumerate(
            zip(cat_ids, class_names(spec.num_classes))
        )
    ]
    return {
        'info': {
            'description': 'synthetic COCO-style instances '
            '(shared.datasets.synthetic)',
            'version': '1.0',
            'year': 2014,
        },
        'images': images,
        'licenses': [],
        'annotations': annotations,
        'categories': categories,
    }


def write(spec: SyntheticSpec) -> WriterResult:
    """Write the COCO-2014 layout (see the module docstring)."""
    if spec.corrupt and spec.corrupt not in CORRUPTIONS:
        unsupported_corruption(spec, CORRUPTIONS)
    root = spec.out / 'coco'
    tasks = []
    for split in SPLITS:
        tasks += [
            (spec, split, i) for i in range(sum(num_images(spec, split)))
        ]
    results = parallel_map(_render, tasks, spec.workers)
    files, counts, empty, crowd, data = [], {}, {}, {}, {}
    for split in SPLITS:
        rendered = [r for t, r in zip(tasks, results) if t[1] == split]
        data[split] = _instances(spec, split, rendered)
        counts[split] = len(rendered)
        empty[split] = sum(not r['objects'] for r in rendered)
        crowd[split] = sum(
            o['iscrowd'] for r in rendered for o in r['objects']
        )
    corruption = None
    train_json = root / 'annotations' / 'instances_train2014.json'
    if spec.corrupt:
        corruption = _corrupt(spec, data['train'], train_json)
    for split in SPLITS:
        path = root / 'annotations' / f'instances_{split}2014.json'
        path.parent.mkdir(parents=True, exist_ok=True)
        if spec.corrupt == 'empty_annotation' and path == train_json:
            path.write_text('')
        else:
            path.write_text(json.dumps(data[split], separators=(',', ':')))
        files.append(path)
    return WriterResult(
        counts=counts,
        annotation_files=files,
        corruption=corruption,
        extra={
            'classes': class_names(spec.num_classes),
            'category_ids': category_ids(spec.num_classes),
            'empty_images': empty,
            'crowd_annotations': crowd,
        },
    )


def _corrupt(spec: SyntheticSpec, data: dict, ann: Path) -> dict:
    """Inject ``spec.corrupt`` into the train split (``data`` in place).

    ``line`` is the json locator the adapter's error names after the file:
    ``'image id N'`` or ``'annotation id N'``.
    """
    image = data['images'][0]
    target = spec.out / 'coco' / 'train2014' / image['file_name']
    record = {
        'kind': spec.corrupt,
        'file': str(ann),
        'line': f'image id {image["id"]}',
    }
    if spec.corrupt == 'missing_image':
        target.unlink()
        record['target'] = str(target)
    elif spec.corrupt == 'truncated_image':
        truncate_file(target)
        record['target'] = str(target)
    elif spec.corrupt == 'empty_annotation':
        record['line'] = None
    elif spec.corrupt == 'duplicate_id':
        data['images'].append(dict(image))
    else:
        ann_entry = data['annotations'][0]
        record['line'] = f'annotation id {ann_entry["id"]}'
        if spec.corrupt == 'class_mismatch':
            ann_entry['category_id'] = max(category_ids(spec.num_classes)) + 1
        else:  # box_outside: the box ends 5 px beyond the right border
            width = next(
                i['width']
                for i in data['images']
                if i['id'] == ann_entry['image_id']
            )
            ann_entry['bbox'][0] = width - ann_entry['bbox'][2] + 5.0
    return record
