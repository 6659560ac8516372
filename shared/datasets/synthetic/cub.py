"""``--format cub``: CUB-200-2011, its wsolevaluation and SPA/WGOL forms.

Layout under ``DIR`` (``datasets.md`` §4.1, §4.3, §4.4, §6.2)::

    CUB_200_2011/
      images/<NNN.Class_NNN>/Class_NNN_<kkkk>_<img_id>.jpg
      images.txt  image_class_labels.txt  train_test_split.txt
      bounding_boxes.txt  (x y w h as float strings, e.g. '60.0')
      classes.txt
      list/train.txt  list/test.txt      '<relpath> <label>'
      list/test_boxes.txt                '<img_id> <relpath> <x> <y> <w> <h>'
    wsol/dataset/CUB/<NNN.Class_NNN>/    the same images plus the CUBV2-like
                                         val images Class_NNN_v2_<kkkk>.jpg
    wsol/metadata/CUB/{train,val,test}/  image_ids.txt, class_labels.txt,
                                         image_sizes.txt, localization.txt

Each class has ``per_class`` train and ``val_per_class`` test images
(which of its images are train is a seeded permutation, so the splits
interleave as in CUB) and ``val_per_class`` CUBV2 images. CUB image
``img_id`` is image ``img_id - 1`` of seed stream 0, CUBV2 image ``i`` is
image ``i`` of stream 1. ``--write-oracle-maps`` writes the test and val
maps under the image's wsolevaluation id (``NNN.Class_NNN/<file>``, its
path relative to ``wsol/dataset/CUB`` and to ``CUB_200_2011/images``).

Corruptions act on the first test image and are recorded where
``CUBLoc`` reports them: ``missing_image``, ``truncated_image`` and
``duplicate_id`` at its ``images.txt`` line, ``box_outside`` at its
``bounding_boxes.txt`` line, ``class_mismatch`` at its
``image_class_labels.txt`` line, ``empty_annotation`` on
``bounding_boxes.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import (
    SyntheticSpec,
    WriterResult,
    duplicate_line,
    edit_line,
    encode_image,
    image_size,
    parallel_map,
    sample_rng,
    save_oracle_map,
    truncate_file,
    unsupported_corruption,
    write_lines,
    write_wsol_metadata,
)
from .draw import render_scene

STREAMS = {'cub': 0, 'cubv2': 1}
CORRUPTIONS = (
    'missing_image',
    'truncated_image',
    'box_outside',
    'empty_annotation',
    'class_mismatch',
    'duplicate_id',
)


def class_folders(num_classes: int) -> list[str]:
    """``001.Class_001``, ... : the class folders, in class-id order."""
    width = max(3, len(str(num_classes)))
    return [
        f'{c:0{width}d}.Class_{c:0{width}d}' for c in range(1, num_classes + 1)
    ]


def render(spec: SyntheticSpec, stream: str, index: int, class_idx: int):
    """The scene of image ``index`` of ``stream`` (``'cub'``/``'cubv2'``)."""
    rng = sample_rng(spec, STREAMS[stream], index)
    h, w = image_size(rng, spec)
    return render_scene(rng, h, w, [class_idx])


def _render(task) -> tuple[int, int, list[float]]:
    spec, stream, index, class_idx, dests, oracle_key = task
    scene = render(spec, stream, index, class_idx)
    data = encode_image(scene.img, 'jpg')
    for dest in dests:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    if oracle_key is not None:
        save_oracle_map(spec, oracle_key, scene.union_mask())
    h, w = scene.img.shape[:2]
    return h, w, scene.boxes[0].tolist()


def _xywh(box) -> list[str]:
    x0, y0, x1, y1 = box
    return [f'{v:.1f}' for v in (x0, y0, x1 - x0, y1 - y0)]


def write(spec: SyntheticSpec) -> WriterResult:
    """Write the CUB layouts (see the module docstring)."""
    if spec.corrupt and spec.corrupt not in CORRUPTIONS:
        unsupported_corruption(spec, CORRUPTIONS)
    if spec.corrupt == 'class_mismatch' and spec.num_classes < 2:
        raise ValueError('--corrupt class_mismatch needs --num-classes >= 2')
    if spec.corrupt and spec.val_per_class < 1:
        raise ValueError('--corrupt needs --val-per-class >= 1 (test images)')
    folders = class_folders(spec.num_classes)
    root = spec.out / 'CUB_200_2011'
    wsol_data = spec.out / 'wsol' / 'dataset' / 'CUB'
    wsol_meta = spec.out / 'wsol' / 'metadata' / 'CUB'
    oracle = spec.write_oracle_maps

    # (img_id, class, relpath, is_train), CUB order: by class, then file.
    records = []
    cubv2 = []
    for c, folder in enumerate(folders):
        name = folder.split('.', 1)[1]
        total = spec.per_class + spec.val_per_class
        perm = np.random.default_rng(
            [spec.seed, spec.format_id, 100, c]
        ).permutation(total)
        train = set(perm[: spec.per_class].tolist())
        for k in range(total):
            img_id = len(records) + 1
            rel = f'{folder}/{name}_{k + 1:04d}_{img_id}.jpg'
            records.append((img_id, c, rel, k in train))
        for k in range(spec.val_per_class):
            cubv2.append((c, f'{folder}/{name}_v2_{k + 1:04d}.jpg'))
    tasks = [
        (
            spec,
            'cub',
            img_id - 1,
            c,
            [root / 'images' / rel, wsol_data / rel],
            rel if oracle and not is_train else None,
        )
        for img_id, c, rel, is_train in records
    ]
    tasks += [
        (spec, 'cubv2', i, c, [wsol_data / rel], rel if oracle else None)
        for i, (c, rel) in enumerate(cubv2)
    ]
    results = parallel_map(_render, tasks, spec.workers)
    cub_res, v2_res = results[: len(records)], results[len(records) :]

    files = [
        write_lines(
            root / 'classes.txt',
            (f'{c + 1} {f}' for c, f in enumerate(folders)),
        ),
        write_lines(
            root / 'images.txt', (f'{i} {rel}' for i, _, rel, _ in records)
        ),
        write_lines(
            root / 'image_class_labels.txt',
            (f'{i} {c + 1}' for i, c, _, _ in records),
        ),
        write_lines(
            root / 'train_test_split.txt',
            (f'{i} {int(t)}' for i, _, _, t in records),
        ),
        write_lines(
            root / 'bounding_boxes.txt',
            (
                f'{r[0]} ' + ' '.join(_xywh(box))
                for r, (_, _, box) in zip(records, cub_res)
            ),
        ),
    ]
    for split, is_train in (('train', True), ('test', False)):
        rows = [
            (r, res) for r, res in zip(records, cub_res) if r[3] == is_train
        ]
        files.append(
            write_lines(
                root / 'list' / f'{split}.txt',
                (f'{r[2]} {r[1]}' for r, _ in rows),
            )
        )
        if split == 'test':
            files.append(
                write_lines(
                    root / 'list' / 'test_boxes.txt',
                    (
                        f'{r[0]} {r[2]} ' + ' '.join(_xywh(res[2]))
                        for r, res in rows
                    ),
                )
            )
        files += write_wsol_metadata(
            wsol_meta / split,
            [(r[2], r[1], h, w, [box]) for r, (h, w, box) in rows],
        )
    files += write_wsol_metadata(
        wsol_meta / 'val',
        [
            (rel, c, h, w, [box])
            for (c, rel), (h, w, box) in zip(cubv2, v2_res)
        ],
    )
    counts = {
        'train': sum(r[3] for r in records),
        'test': sum(not r[3] for r in records),
        'val': len(cubv2),
    }
    corruption = None
    if spec.corrupt:
        corruption = _corrupt(spec, root, records, cub_res)
    return WriterResult(
        counts=counts,
        annotation_files=files,
        corruption=corruption,
        extra={'classes': [f.split('.', 1)[1] for f in folders]},
    )


def _corrupt(spec: SyntheticSpec, root: Path, records, results) -> dict:
    pos = next(i for i, r in enumerate(records) if not r[3])
    img_id, c, rel, _ = records[pos]
    line = pos + 1  # every CUB file lists the images in id order
    h, w, box = results[pos]
    image = root / 'images' / rel
    kind = spec.corrupt
    record = {'kind': kind, 'target': str(image)}
    if kind in ('missing_image', 'truncated_image'):
        if kind == 'missing_image':
            image.unlink()
        else:
            truncate_file(image)
        record.update(file=str(root / 'images.txt'), line=line)
    elif kind == 'duplicate_id':
        line = duplicate_line(root / 'images.txt', line)
        record.update(file=str(root / 'images.txt'), line=line)
    elif kind == 'box_outside':
        ann = root / 'bounding_boxes.txt'
        x0, y0, _, y1 = box
        wide = [x0, y0, w + 5.0, y1]  # x + w = W + 5 + x0 > W
        edit_line(ann, line, lambda _: f'{img_id} ' + ' '.join(_xywh(wide)))
        record.update(file=str(ann), line=line)
    elif kind == 'class_mismatch':
        ann = root / 'image_class_labels.txt'
        other = (c + 1) % spec.num_classes + 1
        edit_line(ann, line, lambda _: f'{img_id} {other}')
        record.update(file=str(ann), line=line)
    else:  # empty_annotation
        ann = root / 'bounding_boxes.txt'
        ann.write_text('')
        record.update(file=str(ann), line=None, target=None)
    return record
