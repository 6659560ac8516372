"""``--format openimages-mask``: the wsolevaluation OpenImages mask layout.

Layout under ``DIR`` (``datasets.md`` §4.3, §6.2)::

    wsol/dataset/OpenImages/
      train/<cls>/<id>.jpg
      {val,test}/<cls>/<id>.jpg
      {val,test}/<cls>/<id>_m<cls>_<hash>.png   one 0/255 png per instance
      {val,test}/<cls>/<id>_ignore.png          0/255 ignore rectangle
    wsol/metadata/OpenImages/
      train/ image_ids.txt, class_labels.txt
      {val,test}/ image_ids.txt, class_labels.txt, localization.txt
                  ('<img>,<mask png>,<ignore png>' on an image's first
                   line, '<img>,<mask png>,' on its later lines)

Class folders are ``c0000``, ``c0001``, ...; ids are 16 hex digits derived
from (seed, split, index). Evaluation images hold 1-2 instances of their
class and an ignore rectangle placed on background when possible (the
loader ignores it where it overlaps an object anyway). Seed streams: train
0, val 1, test 2, index ``c * n + k``. Oracle maps are keyed by the image
id (``<split>/<cls>/<id>.jpg``).

Corruptions act on the first test image: ``mask_missing`` deletes its first
instance png (recorded at that ``localization.txt`` line),
``missing_image``/``truncated_image``/``duplicate_id`` act on its
``image_ids.txt`` line, ``empty_annotation`` empties the test
``localization.txt``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .common import (
    SyntheticSpec,
    WriterResult,
    duplicate_line,
    image_size,
    parallel_map,
    sample_rng,
    save_oracle_map,
    truncate_file,
    unsupported_corruption,
    write_image,
    write_lines,
)
from .draw import render_scene

STREAMS = {'train': 0, 'val': 1, 'test': 2}
CORRUPTIONS = (
    'mask_missing',
    'missing_image',
    'truncated_image',
    'empty_annotation',
    'duplicate_id',
)


def class_names(num_classes: int) -> list[str]:
    """Class folder names ``c0000``, ``c0001``, ... (label order)."""
    return [f'c{c:04d}' for c in range(num_classes)]


def image_id(spec: SyntheticSpec, split: str, index: int) -> str:
    """16 hex digits, deterministic in (seed, split, index)."""
    key = f'{spec.seed}:{split}:{index}'.encode()
    return hashlib.sha1(key).hexdigest()[:16]


def mask_name(img_id: str, cls: str, instance: int) -> str:
    """``<id>_m<cls>_<hash>.png`` of one instance."""
    digest = hashlib.sha1(f'{img_id}:{instance}'.encode()).hexdigest()[:8]
    return f'{img_id}_m{cls}_{digest}.png'


def render(spec: SyntheticSpec, split: str, index: int, class_idx: int):
    """``(scene, ignore)``: the scene and its uint8 0/1 ignore rectangle
    (``None`` for train images)."""
    rng = sample_rng(spec, STREAMS[split], index)
    h, w = image_size(rng, spec)
    count = 1 if split == 'train' else int(rng.integers(1, 3))
    scene = render_scene(rng, h, w, [class_idx] * count)
    if split == 'train':
        return scene, None
    fg = scene.union_mask()
    for _ in range(20):
        rh = int(rng.integers(max(2, h // 8), max(3, h // 4) + 1))
        rw = int(rng.integers(max(2, w // 8), max(3, w // 4) + 1))
        y0 = int(rng.integers(0, h - rh + 1))
        x0 = int(rng.integers(0, w - rw + 1))
        if not fg[y0 : y0 + rh, x0 : x0 + rw].any():
            break
    ignore = np.zeros((h, w), np.uint8)
    ignore[y0 : y0 + rh, x0 : x0 + rw] = 1
    return scene, ignore


def _render(task) -> list[str]:
    spec, split, index, class_idx, folder, img_id, cls = task
    scene, ignore = render(spec, split, index, class_idx)
    base = spec.out / 'wsol' / 'dataset' / 'OpenImages'
    write_image(base / folder / f'{img_id}.jpg', scene.img)
    if ignore is None:
        return []
    masks = []
    for j, mask in enumerate(scene.masks):
        name = mask_name(img_id, cls, j)
        write_image(base / folder / name, mask * 255)
        masks.append(f'{folder}/{name}')
    write_image(base / folder / f'{img_id}_ignore.png', ignore * 255)
    if spec.write_oracle_maps:
        save_oracle_map(spec, f'{folder}/{img_id}.jpg', scene.union_mask())
    return masks


def write(spec: SyntheticSpec) -> WriterResult:
    """Write the OpenImages mask layout (see the module docstring)."""
    if spec.corrupt and spec.corrupt not in CORRUPTIONS:
        unsupported_corruption(spec, CORRUPTIONS)
    if spec.val_per_class < 1:
        raise ValueError('openimages-mask needs --val-per-class >= 1')
    names = class_names(spec.num_classes)
    meta = spec.out / 'wsol' / 'metadata' / 'OpenImages'
    plan = {}
    tasks = []
    for split, per_class in (
        ('train', spec.per_class),
        ('val', spec.val_per_class),
        ('test', spec.val_per_class),
    ):
        rows = []
        for c, cls in enumerate(names):
            for k in range(per_class):
                index = c * per_class + k
                img_id = image_id(spec, split, index)
                folder = f'{split}/{cls}'
                rows.append((f'{folder}/{img_id}.jpg', c))
                tasks.append((spec, split, index, c, folder, img_id, cls))
        plan[split] = rows
    results = iter(parallel_map(_render, tasks, spec.workers))
    files = []
    for split, rows in plan.items():
        masks = [next(results) for _ in rows]
        folder = meta / split
        files += [
            write_lines(folder / 'image_ids.txt', (r[0] for r in rows)),
            write_lines(
                folder / 'class_labels.txt', (f'{i},{c}' for i, c in rows)
            ),
        ]
        if split == 'train':
            continue
        loc = []
        for (img, _), pngs in zip(rows, masks):
            ignore = img[: -len('.jpg')] + '_ignore.png'
            loc.append(f'{img},{pngs[0]},{ignore}')
            loc += [f'{img},{png},' for png in pngs[1:]]
        files.append(write_lines(folder / 'localization.txt', loc))
    corruption = None
    if spec.corrupt:
        corruption = _corrupt(spec, meta / 'test', plan['test'][0][0])
    return WriterResult(
        counts={split: len(rows) for split, rows in plan.items()},
        annotation_files=files,
        corruption=corruption,
        extra={'classes': names},
    )


def _corrupt(spec: SyntheticSpec, meta: Path, first: str) -> dict:
    base = spec.out / 'wsol' / 'dataset' / 'OpenImages'
    image = base / first
    ids = meta / 'image_ids.txt'
    loc = meta / 'localization.txt'
    kind = spec.corrupt
    record = {'kind': kind, 'file': str(ids), 'line': 1, 'target': str(image)}
    if kind == 'mask_missing':
        png = loc.read_text().split('\n')[0].split(',')[1]
        (base / png).unlink()
        record.update(file=str(loc), target=str(base / png))
    elif kind == 'missing_image':
        image.unlink()
    elif kind == 'truncated_image':
        truncate_file(image)
    elif kind == 'duplicate_id':
        record['line'] = duplicate_line(ids, 1)
    else:  # empty_annotation
        loc.write_text('')
        record.update(file=str(loc), line=None, target=None)
    return record
