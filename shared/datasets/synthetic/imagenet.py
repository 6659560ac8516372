"""``--format imagenet-loc``: ILSVRC-2012 with validation boxes.

Layout under ``DIR`` (``datasets.md`` §4.2-4.4, §6.2)::

    ILSVRC2012/
      train/<wnid>/<wnid>_<k>.JPEG
      val/ILSVRC2012_val_<i:08d>.JPEG        (val_layout 'flat', default)
      val/<wnid>/ILSVRC2012_val_<i:08d>.JPEG (val_layout 'class_subdirs')
      val2/<label>/<k>.jpeg                  ImageNetV2-like held-out set
      bbox_val/ILSVRC2012_val_<i:08d>.xml    ILSVRC2012_bbox_val_v3 style
      ILSVRC2012_list/train.txt              '<wnid>/<file> <label>'
      ILSVRC2012_list/val_folder_new.txt     '<wnid>/<file> <label> <boxes>'
      meta/train.txt, meta/val.txt           mmpretrain ImageNet lists
      synsets.txt                            one wnid per line (n00000000 ...)
      list/train.txt, list/val.txt           SPA: '<relpath> <label>'
      list/val_boxes.txt                     SPA: '<stem>.xml x1 y1 x2 y2 ...'
    wsol/metadata/ILSVRC/
      train/ image_ids.txt, image_ids_proxy.txt, class_labels.txt
      val/   (val2 images) image_ids, class_labels, image_sizes, localization
      test/  (val images)  image_ids, class_labels, image_sizes, localization

The SPA list lives in ``ILSVRC2012/list/`` (SPA's own root is named
``ILSVRC``). Validation images hold 1-3 instances of their class (all
visible instances get a box); their labels are a seeded permutation, so
classes interleave as in ILSVRC. Seed streams: train 0 (index ``c *
per_class + k``), val 1 (index ``i - 1``), val2 2 (index ``c *
val_per_class + k``). Oracle maps are keyed by the path relative to
``ILSVRC2012/`` (``val/...``, ``val2/...``), the wsolevaluation id.

Corruptions act on validation image 1 and are recorded at its line of
``ILSVRC2012_list/val_folder_new.txt`` (line 1; read with
``ImageNetLoc(ann_format='tscam_list')``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .common import (
    SyntheticSpec,
    WriterResult,
    duplicate_line,
    edit_line,
    image_size,
    parallel_map,
    sample_rng,
    save_oracle_map,
    truncate_file,
    unsupported_corruption,
    write_image,
    write_lines,
    write_wsol_metadata,
)
from .draw import render_scene

STREAMS = {'train': 0, 'val': 1, 'val2': 2}
CORRUPTIONS = (
    'missing_image',
    'truncated_image',
    'box_outside',
    'empty_annotation',
    'class_mismatch',
    'duplicate_id',
)
VAL_LAYOUTS = ('flat', 'class_subdirs')


def wnids(num_classes: int) -> list[str]:
    """Fake sorted wnids ``n00000000``, ``n00000001``, ..."""
    return [f'n{c:08d}' for c in range(num_classes)]


def val_stem(i: int) -> str:
    """``ILSVRC2012_val_<i:08d>`` (``i`` 1-based)."""
    return f'ILSVRC2012_val_{i:08d}'


def val_labels(spec: SyntheticSpec) -> np.ndarray:
    """Label of each validation image (seeded permutation)."""
    labels = np.repeat(np.arange(spec.num_classes), spec.val_per_class)
    rng = np.random.default_rng([spec.seed, spec.format_id, 100])
    return rng.permutation(labels)


def render(spec: SyntheticSpec, stream: str, index: int, class_idx: int):
    """The scene of image ``index`` of ``stream`` (train/val/val2)."""
    rng = sample_rng(spec, STREAMS[stream], index)
    h, w = image_size(rng, spec)
    count = 1 if stream == 'train' else int(rng.integers(1, 4))
    return render_scene(rng, h, w, [class_idx] * count)


def _render(task):
    spec, stream, index, class_idx, dest, oracle_key = task
    scene = render(spec, stream, index, class_idx)
    write_image(dest, scene.img)
    if oracle_key is not None:
        save_oracle_map(spec, oracle_key, scene.union_mask())
    h, w = scene.img.shape[:2]
    return h, w, scene.boxes.astype(int).tolist()


def xml_text(stem: str, wnid: str, width: int, height: int, boxes) -> str:
    """An ``ILSVRC2012_bbox_val_v3``-style annotation."""
    objects = ''.join(
        '\t<object>\n'
        f'\t\t<name>{wnid}</name>\n'
        '\t\t<pose>Unspecified</pose>\n'
        '\t\t<truncated>0</truncated>\n'
        '\t\t<difficult>0</difficult>\n'
        '\t\t<bndbox>\n'
        f'\t\t\t<xmin>{x0}</xmin>\n'
        f'\t\t\t<ymin>{y0}</ymin>\n'
        f'\t\t\t<xmax>{x1}</xmax>\n'
        f'\t\t\t<ymax>{y1}</ymax>\n'
        '\t\t</bndbox>\n'
        '\t</object>\n'
        for x0, y0, x1, y1 in boxes
    )
    return (
        '<annotation>\n'
        '\t<folder>val</folder>\n'
        f'\t<filename>{stem}</filename>\n'
        '\t<source>\n\t\t<database>ILSVRC_2012</database>\n\t</source>\n'
        '\t<size>\n'
        f'\t\t<width>{width}</width>\n'
        f'\t\t<height>{height}</height>\n'
        '\t\t<depth>3</depth>\n'
        '\t</size>\n'
        '\t<segmented>0</segmented>\n'
        f'{objects}'
        '</annotation>\n'
    )


def _coords(boxes) -> str:
    return ' '.join(str(v) for box in boxes for v in box)


def write(spec: SyntheticSpec) -> WriterResult:
    """Write the ILSVRC layouts (see the module docstring)."""
    if spec.corrupt and spec.corrupt not in CORRUPTIONS:
        unsupported_corruption(spec, CORRUPTIONS)
    if spec.corrupt == 'class_mismatch' and spec.num_classes < 2:
        raise ValueError('--corrupt class_mismatch needs --num-classes >= 2')
    if spec.val_per_class < 1:
        raise ValueError('imagenet-loc needs --val-per-class >= 1')
    layout = spec.options.get('val_layout') or 'flat'
    if layout not in VAL_LAYOUTS:
        raise ValueError(f'--val-layout must be one of {VAL_LAYOUTS}')
    names = wnids(spec.num_classes)
    root = spec.out / 'ILSVRC2012'
    meta = spec.out / 'wsol' / 'metadata' / 'ILSVRC'
    oracle = spec.write_oracle_maps

    train = [
        (c, f'{w}/{w}_{k}.JPEG')
        for c, w in enumerate(names)
        for k in range(spec.per_class)
    ]
    labels = val_labels(spec)
    val = []  # (stem, label, path relative to val/)
    for i, c in enumerate(labels.tolist(), start=1):
        stem = val_stem(i)
        rel = f'{stem}.JPEG'
        val.append((stem, c, rel if layout == 'flat' else f'{names[c]}/{rel}'))
    val2 = [
        (c, f'val2/{c}/{k}.jpeg')
        for c in range(spec.num_classes)
        for k in range(spec.val_per_class)
    ]
    _remove_stale(root, layout, {s for s, _, _ in val})

    tasks = [
        (spec, 'train', i, c, root / 'train' / rel, None)
        for i, (c, rel) in enumerate(train)
    ]
    tasks += [
        (
            spec,
            'val',
            i,
            c,
            root / 'val' / rel,
            f'val/{rel}' if oracle else None,
        )
        for i, (_, c, rel) in enumerate(val)
    ]
    tasks += [
        (spec, 'val2', i, c, root / rel, rel if oracle else None)
        for i, (c, rel) in enumerate(val2)
    ]
    results = parallel_map(_render, tasks, spec.workers)
    val_res = results[len(train) : len(train) + len(val)]
    val2_res = results[len(train) + len(val) :]

    xml_dir = root / 'bbox_val'
    xml_dir.mkdir(parents=True, exist_ok=True)
    for (stem, c, _), (h, w, boxes) in zip(val, val_res):
        (xml_dir / f'{stem}.xml').write_text(
            xml_text(stem, names[c], w, h, boxes), encoding='utf-8'
        )
    train_lines = [f'{rel} {c}' for c, rel in train]
    tscam_val = [
        f'{names[c]}/{stem}.JPEG {c} {_coords(boxes)}'
        for (stem, c, _), (_, _, boxes) in zip(val, val_res)
    ]
    files = [
        write_lines(root / 'synsets.txt', names),
        write_lines(root / 'ILSVRC2012_list' / 'train.txt', train_lines),
        write_lines(
            root / 'ILSVRC2012_list' / 'val_folder_new.txt', tscam_val
        ),
        write_lines(root / 'meta' / 'train.txt', train_lines),
        write_lines(
            root / 'meta' / 'val.txt', (f'{rel} {c}' for _, c, rel in val)
        ),
        write_lines(root / 'list' / 'train.txt', train_lines),
        write_lines(
            root / 'list' / 'val.txt', (f'{rel} {c}' for _, c, rel in val)
        ),
        write_lines(
            root / 'list' / 'val_boxes.txt',
            (
                f'{stem}.xml {_coords(res[2])}'
                for (stem, _, _), res in zip(val, val_res)
            ),
        ),
    ]
    proxy = max(1, spec.per_class // 4)
    train_ids = [(f'train/{rel}', c) for c, rel in train]
    files += [
        write_lines(
            meta / 'train' / 'image_ids.txt', (i for i, _ in train_ids)
        ),
        write_lines(
            meta / 'train' / 'image_ids_proxy.txt',
            (
                i
                for n, (i, _) in enumerate(train_ids)
                if n % spec.per_class < proxy
            ),
        ),  # fmt: skip
        write_lines(
            meta / 'train' / 'class_labels.txt',
            (f'{i},{c}' for i, c in train_ids),
        ),
    ]
    files += write_wsol_metadata(
        meta / 'test',
        [(f'val/{rel}', c, *res) for (_, c, rel), res in zip(val, val_res)],
    )
    files += write_wsol_metadata(
        meta / 'val', [(rel, c, *res) for (c, rel), res in zip(val2, val2_res)]
    )
    corruption = None
    if spec.corrupt:
        corruption = _corrupt(spec, root, val[0], val_res[0], names)
    return WriterResult(
        counts={'train': len(train), 'val': len(val), 'val2': len(val2)},
        annotation_files=files,
        corruption=corruption,
        extra={'classes': names, 'val_layout': layout},
    )


def _remove_stale(root: Path, layout: str, stems: set[str]) -> None:
    """Drop a previous run's files that the readers would pick up."""
    xml_dir = root / 'bbox_val'
    if xml_dir.is_dir():
        for path in xml_dir.glob('ILSVRC2012_val_*.xml'):
            if path.stem not in stems:
                path.unlink()
    val = root / 'val'
    if not val.is_dir():
        return
    if layout == 'flat':  # class folders would win val_layout='auto'
        for path in val.glob('n[0-9]*'):
            if path.is_dir():
                shutil.rmtree(path)
    else:
        for path in val.glob('ILSVRC2012_val_*.JPEG'):
            path.unlink()


def _corrupt(spec: SyntheticSpec, root: Path, first, result, names) -> dict:
    stem, c, rel = first
    h, w, boxes = result
    ann = root / 'ILSVRC2012_list' / 'val_folder_new.txt'
    image = root / 'val' / rel
    kind = spec.corrupt
    record = {'kind': kind, 'file': str(ann), 'line': 1, 'target': str(image)}
    if kind == 'missing_image':
        image.unlink()
    elif kind == 'truncated_image':
        truncate_file(image)
    elif kind == 'duplicate_id':
        record['line'] = duplicate_line(ann, 1)
    elif kind == 'box_outside':
        wide = [list(b) for b in boxes]
        wide[0][2] = w + 5
        line = f'{names[c]}/{stem}.JPEG {c} {_coords(wide)}'
        edit_line(ann, 1, lambda _: line)
    elif kind == 'class_mismatch':
        line = f'{names[c]}/{stem}.JPEG {(c + 1) % spec.num_classes} '
        edit_line(ann, 1, lambda _: line + _coords(boxes))
    else:  # empty_annotation
        ann.write_text('')
        record.update(line=None, target=None)
    return record
