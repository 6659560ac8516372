"""``--format imagefolder``: class folders for mmpretrain ``CustomDataset``.

Layout under ``DIR``::

    classes.txt                        one class name per line, label order
    train/class_000/class_000_0000.png one folder per class
    val/class_000/class_000_0000.png
    meta/train.txt, meta/val.txt       '<path relative to split/> <label>'

Image ``k`` of class ``c`` in a split is image ``c * per_split + k`` of
that split's seed stream; ``--write-oracle-maps`` writes the val maps.
"""

from __future__ import annotations

from pathlib import Path

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
    write_lines,
)
from .draw import render_scene

SPLITS = {'train': 0, 'val': 1}
CORRUPTIONS = ('missing_image', 'truncated_image', 'empty_annotation')


def class_names(num_classes: int) -> list[str]:
    """``class_000``, ``class_001``, ... (sortable, label order)."""
    width = max(3, len(str(num_classes - 1)))
    return [f'class_{c:0{width}d}' for c in range(num_classes)]


def _render(task) -> None:
    spec, split, index, class_idx, rel = task
    rng = sample_rng(spec, SPLITS[split], index)
    h, w = image_size(rng, spec)
    scene = render_scene(rng, h, w, [class_idx])
    write_image(spec.out / split / rel, scene.img)
    if spec.write_oracle_maps and split == 'val':
        save_oracle_map(spec, f'{split}/{rel}', scene.union_mask())


def write(spec: SyntheticSpec) -> WriterResult:
    """Write the ImageFolder layout (see the module docstring)."""
    if spec.corrupt and spec.corrupt not in CORRUPTIONS:
        unsupported_corruption(spec, CORRUPTIONS)
    names = class_names(spec.num_classes)
    ext = spec.options.get('ext', 'png')
    files = [write_lines(spec.out / 'classes.txt', names)]
    counts = {}
    tasks = []
    for split, per_class in (
        ('train', spec.per_class),
        ('val', spec.val_per_class),
    ):
        lines = []
        for c, name in enumerate(names):
            for k in range(per_class):
                rel = f'{name}/{name}_{k:04d}.{ext}'
                tasks.append((spec, split, c * per_class + k, c, rel))
                lines.append(f'{rel} {c}')
        path = spec.out / 'meta' / f'{split}.txt'
        files.append(write_lines(path, lines))
        counts[split] = len(lines)
    parallel_map(_render, tasks, spec.workers)
    corruption = None
    if spec.corrupt:
        corruption = _corrupt(spec, spec.out / 'meta' / 'train.txt')
    return WriterResult(
        counts=counts,
        annotation_files=files,
        corruption=corruption,
        extra={'classes': names},
    )


def _corrupt(spec: SyntheticSpec, ann: Path) -> dict:
    line_no = 1
    rel = ann.read_text().split('\n')[0].split()[0]
    target = spec.out / 'train' / rel
    if spec.corrupt == 'missing_image':
        target.unlink()
    elif spec.corrupt == 'truncated_image':
        truncate_file(target)
    else:  # empty_annotation
        ann.write_text('')
        return {'kind': spec.corrupt, 'file': str(ann), 'line': None}
    return {
        'kind': spec.corrupt,
        'file': str(ann),
        'line': line_no,
        'target': str(target),
    }
