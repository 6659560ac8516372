"""``--format voc``: PASCAL VOC-2007 read by mmpretrain ``VOC`` and
``VOCClassList``.

Layout under ``DIR`` (``datasets.md`` §4.6)::

    VOCdevkit/VOC2007/JPEGImages/<id>.jpg
    VOCdevkit/VOC2007/Annotations/<id>.xml
    VOCdevkit/VOC2007/ImageSets/Main/{trainval,test}.txt
    VOCdevkit/VOC2007/ImageSets/Main/<class>_{trainval,test}.txt

Ids are six digits, trainval odd and test even (interleaved like VOC). The
XMLs follow the VOC schema (``<size>``, ``<object>`` with ``<name>``,
``<pose>``, ``<truncated>``, ``<difficult>``, ``<bndbox>``); ``<bndbox>``
holds VOC's 1-based inclusive pixel indices, i.e. ``xmin = x0 + 1``,
``xmax = x1`` for the edge-coordinate box ``[x0, y0, x1, y1]``. Class files
hold ``<id> <flag>`` with flag 1 (a non-difficult object of the class), 0
(only difficult ones) or -1 (none), flags right-aligned as in VOC.

Class names are VOC's 20 (alphabetical) when ``--num-classes 20``, else
``class_000`` ...; mmpretrain ``VOC`` then needs
``metainfo=dict(classes=...)`` (the names are in the manifest).

Image ``i`` of a split has primary class ``i // per_class`` plus 0-3 other
distinct classes. Difficult objects: the first visible object of every
image with ``i % 3 == 1``, about 10 % of the others, and a second instance
of the primary class added to every image with ``i % 5 == 3`` (so a class
can have both a difficult and a non-difficult object: flag 1).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .coco import multilabel_classes
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
)
from .draw import Scene, render_scene
from .imagefolder import class_names as generic_class_names

SPLITS = {'trainval': 0, 'test': 1}
CORRUPTIONS = (
    'missing_image',
    'truncated_image',
    'empty_annotation',
    'duplicate_id',
    'bad_flag',
)
#: VOC-2007 classes (alphabetical, = mmpretrain ``VOC2007_CATEGORIES``).
VOC_CLASSES = (
    'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
    'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
    'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor',
)  # fmt: skip


def class_names(num_classes: int) -> list[str]:
    """VOC's 20 names for 20 classes, else ``class_000`` ... (sorted)."""
    if num_classes == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return generic_class_names(num_classes)


def image_id(split: str, index: int) -> str:
    """Six-digit id; trainval odd, test even."""
    return f'{2 * index + 1 + SPLITS[split]:06d}'


def scene(
    spec: SyntheticSpec, split: str, index: int
) -> tuple[Scene, list[bool]]:
    """Render image ``index`` of ``split`` (also used by tests).

    Returns:
        tuple[Scene, list[bool]]: The scene and the difficult flag of each
        visible instance.
    """
    rng = sample_rng(spec, SPLITS[split], index)
    h, w = image_size(rng, spec)
    per_class = spec.per_class if split == 'trainval' else spec.val_per_class
    primary = index // per_class
    classes = multilabel_classes(rng, primary, spec.num_classes)
    if index % 5 == 3:
        classes.append(primary)
    sc = render_scene(rng, h, w, classes)
    draws = rng.random(len(sc.classes))
    difficult = [
        bool(
            (k == 0 and index % 3 == 1)
            or c in sc.classes[:k]
            or draws[k] < 0.1
        )
        for k, c in enumerate(sc.classes)
    ]
    return sc, difficult


def annotation_xml(
    img_id: str,
    height: int,
    width: int,
    names: list[str],
    boxes: np.ndarray,
    difficult: list[bool],
) -> bytes:
    """A VOC annotation XML (boxes given in edge coordinates)."""
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'VOC2007'
    ET.SubElement(root, 'filename').text = f'{img_id}.jpg'
    source = ET.SubElement(root, 'source')
    ET.SubElement(source, 'database').text = 'synthetic VOC2007'
    size = ET.SubElement(root, 'size')
    for tag, value in (('width', width), ('height', height), ('depth', 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, 'segmented').text = '0'
    for name, box, diff in zip(names, boxes, difficult):
        x0, y0, x1, y1 = (int(v) for v in box)
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = name
        ET.SubElement(obj, 'pose').text = 'Unspecified'
        touches = x0 == 0 or y0 == 0 or x1 == width or y1 == height
        ET.SubElement(obj, 'truncated').text = str(int(touches))
        ET.SubElement(obj, 'difficult').text = str(int(diff))
        bndbox = ET.SubElement(obj, 'bndbox')
        for tag, value in (
            ('xmin', x0 + 1),
            ('ymin', y0 + 1),
            ('xmax', x1),
            ('ymax', y1),
        ):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root, space='\t')
    return ET.tostring(root, encoding='utf-8') + b'\n'


def _render(task) -> tuple[list[int], list[bool]]:
    spec, split, index = task
    sc, difficult = scene(spec, split, index)
    h, w = sc.img.shape[:2]
    img_id = image_id(split, index)
    root = spec.out / 'VOCdevkit' / 'VOC2007'
    write_image(root / 'JPEGImages' / f'{img_id}.jpg', sc.img)
    names = class_names(spec.num_classes)
    xml = annotation_xml(
        img_id, h, w, [names[c] for c in sc.classes], sc.boxes, difficult
    )
    (root / 'Annotations').mkdir(parents=True, exist_ok=True)
    (root / 'Annotations' / f'{img_id}.xml').write_bytes(xml)
    if spec.write_oracle_maps and split == 'test':
        save_oracle_map(spec, f'JPEGImages/{img_id}', sc.union_mask())
    return sc.classes, difficult


def class_flag(
    class_idx: int, classes: list[int], difficult: list[bool]
) -> int:
    """VOC class-file flag: 1, 0 (only difficult objects) or -1 (none)."""
    flags = [d for c, d in zip(classes, difficult) if c == class_idx]
    if not flags:
        return -1
    return 0 if all(flags) else 1


def write(spec: SyntheticSpec) -> WriterResult:
    """Write the VOC-2007 layout (see the module docstring)."""
    if spec.corrupt and spec.corrupt not in CORRUPTIONS:
        unsupported_corruption(spec, CORRUPTIONS)
    root = spec.out / 'VOCdevkit' / 'VOC2007'
    main = root / 'ImageSets' / 'Main'
    names = class_names(spec.num_classes)
    tasks = []
    for split, per_class in (
        ('trainval', spec.per_class),
        ('test', spec.val_per_class),
    ):
        tasks += [
            (spec, split, i) for i in range(spec.num_classes * per_class)
        ]
    results = parallel_map(_render, tasks, spec.workers)
    files, counts, difficult_only = [], {}, {}
    for split in SPLITS:
        rows = [
            (image_id(split, t[2]), *r)
            for t, r in zip(tasks, results)
            if t[1] == split
        ]
        counts[split] = len(rows)
        files.append(write_lines(main / f'{split}.txt', [r[0] for r in rows]))
        difficult_only[split] = 0
        for c, name in enumerate(names):
            lines = []
            for img_id, classes, difficult in rows:
                flag = class_flag(c, classes, difficult)
                difficult_only[split] += flag == 0
                lines.append(f'{img_id} {flag:>2d}')
            files.append(write_lines(main / f'{name}_{split}.txt', lines))
        files += [root / 'Annotations' / f'{r[0]}.xml' for r in rows]
    corruption = _corrupt(spec, root, names) if spec.corrupt else None
    return WriterResult(
        counts=counts,
        annotation_files=files,
        corruption=corruption,
        extra={'classes': names, 'difficult_only_flags': difficult_only},
    )


def _corrupt(spec: SyntheticSpec, root: Path, names: list[str]) -> dict:
    """Inject ``spec.corrupt`` into the trainval split."""
    main = root / 'ImageSets' / 'Main'
    split_file = main / 'trainval.txt'
    class_file = main / f'{names[0]}_trainval.txt'
    first = image_id('trainval', 0)
    target = root / 'JPEGImages' / f'{first}.jpg'
    if spec.corrupt in ('missing_image', 'truncated_image'):
        if spec.corrupt == 'missing_image':
            target.unlink()
        else:
            truncate_file(target)
        return {
            'kind': spec.corrupt,
            'file': str(split_file),
            'line': 1,
            'target': str(target),
        }
    if spec.corrupt == 'empty_annotation':
        class_file.write_text('')
        return {'kind': spec.corrupt, 'file': str(class_file), 'line': None}
    if spec.corrupt == 'duplicate_id':
        line = duplicate_line(split_file, 1)
        return {'kind': spec.corrupt, 'file': str(split_file), 'line': line}
    # bad_flag
    edit_line(class_file, 1, lambda old: f'{old.split()[0]}  2')
    return {
        'kind': spec.corrupt,
        'file': str(class_file),
        'line': 1,
        'target': first,
    }
