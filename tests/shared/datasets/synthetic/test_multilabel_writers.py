"""Tests of the coco and voc synthetic writers (datasets.md §6, §8 item 9):
real schemas, consistency with the rendered scenes, determinism, defects."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmpretrain.datasets.categories import VOC2007_CATEGORIES

from shared.datasets.synthetic import coco as coco_writer
from shared.datasets.synthetic import generate
from shared.datasets.synthetic import voc as voc_writer
from shared.datasets.synthetic.common import SyntheticSpec, encode_image

SIZE = (48, 96)


def spec_of(entry: dict, out: Path) -> SyntheticSpec:
    args = entry['args']
    return SyntheticSpec(
        fmt=entry['format'],
        out=out,
        num_classes=args['num_classes'],
        per_class=args['per_class'],
        val_per_class=args['val_per_class'],
        size_range=tuple(args['size_range']),
        seed=args['seed'],
    )


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    out = tmp_path_factory.mktemp('coco')
    entry = generate(
        'coco', out, 5, 4, val_per_class=2, size_range=SIZE, seed=3
    )
    return out, entry


def decode_rle(rle: dict) -> np.ndarray:
    """Uncompressed COCO RLE -> uint8 (H, W) mask."""
    h, w = rle['size']
    flat = np.zeros(h * w, np.uint8)
    pos, value = 0, 0
    for run in rle['counts']:
        flat[pos : pos + run] = value
        pos += run
        value ^= 1
    assert pos == h * w
    return flat.reshape((h, w), order='F')


def test_coco_instances_schema(coco):
    out, entry = coco
    root = out / 'coco'
    ids = {}
    for split in ('train', 'val'):
        data = json.loads(
            (root / 'annotations' / f'instances_{split}2014.json').read_text()
        )
        assert list(data) == [
            'info',
            'images',
            'licenses',
            'annotations',
            'categories',
        ]
        cat_ids = [c['id'] for c in data['categories']]
        assert cat_ids == coco_writer.category_ids(5) == entry['category_ids']
        assert np.diff(cat_ids).max() > 1  # gaps, as in COCO
        assert [c['name'] for c in data['categories']] == entry['classes']
        assert all(c['supercategory'] for c in data['categories'])
        images = {i['id']: i for i in data['images']}
        assert len(images) == entry['counts'][split]
        ids[split] = set(images)
        for img in data['images']:
            assert re.fullmatch(
                rf'COCO_{split}2014_\d{{12}}\.jpg', img['file_name']
            )
            assert int(img['file_name'][-16:-4]) == img['id']
            decoded = cv2.imread(str(root / f'{split}2014' / img['file_name']))
            assert decoded.shape[:2] == (img['height'], img['width'])
        ann_ids = [a['id'] for a in data['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)
        per_image: dict = {i: [] for i in images}
        for ann in data['annotations']:
            assert set(ann) == {
                'id', 'image_id', 'category_id', 'bbox', 'area', 'iscrowd',
                'segmentation',
            }  # fmt: skip
            assert ann['category_id'] in cat_ids
            assert all(isinstance(v, float) for v in ann['bbox'])
            per_image[ann['image_id']].append(ann)
            img = images[ann['image_id']]
            if ann['iscrowd']:  # uncompressed RLE: the exact visible mask
                mask = decode_rle(ann['segmentation'])
                assert mask.shape == (img['height'], img['width'])
                ys, xs = np.nonzero(mask)
                x, y = xs.min(), ys.min()
                assert ann['bbox'] == [
                    x, y, xs.max() + 1 - x, ys.max() + 1 - y
                ]  # fmt: skip
                assert ann['area'] == mask.sum()
            else:
                polys = ann['segmentation']
                assert polys and all(
                    len(p) >= 6 and len(p) % 2 == 0 for p in polys
                )
        counts = [len(v) for v in per_image.values()]
        assert min(counts) == 0 and max(counts) <= 4
        assert counts.count(0) == entry['empty_images'][split]
        crowd = sum(a['iscrowd'] for a in data['annotations'])
        assert crowd == entry['crowd_annotations'][split] > 0
        for anns in per_image.values():  # objects of different classes
            cats = [a['category_id'] for a in anns]
            assert len(set(cats)) == len(cats)
    assert not ids['train'] & ids['val']


def test_coco_annotations_match_the_scenes(coco):
    out, entry = coco
    spec = spec_of(entry, out)
    data = json.loads(
        (out / 'coco' / 'annotations' / 'instances_val2014.json').read_text()
    )
    cat_ids = entry['category_ids']
    for index, img in enumerate(data['images']):
        scene = coco_writer.scene(spec, 'val', index)
        anns = [a for a in data['annotations'] if a['image_id'] == img['id']]
        assert [cat_ids.index(a['category_id']) for a in anns] == (
            scene.classes
        )
        boxes = np.array([a['bbox'] for a in anns]).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        np.testing.assert_array_equal(boxes, scene.boxes)
        assert [a['area'] for a in anns] == [m.sum() for m in scene.masks]
        decoded = cv2.imread(str(out / 'coco' / 'val2014' / img['file_name']))
        # The file holds the rendered scene (same encoder, same pixels).
        expected = cv2.imdecode(
            np.frombuffer(encode_image(scene.img, 'jpg'), np.uint8),
            cv2.IMREAD_COLOR,
        )
        np.testing.assert_array_equal(decoded, expected)


def test_voc_layout_and_flags(tmp_path):
    entry = generate(
        'voc', tmp_path, 3, 4, val_per_class=2, size_range=SIZE, seed=0
    )
    spec = spec_of(entry, tmp_path)
    root = tmp_path / 'VOCdevkit' / 'VOC2007'
    main = root / 'ImageSets' / 'Main'
    names = entry['classes']
    assert names == ['class_000', 'class_001', 'class_002']
    assert entry['counts'] == {'trainval': 12, 'test': 6}
    ids = {}
    for split in ('trainval', 'test'):
        ids[split] = main.joinpath(f'{split}.txt').read_text().split()
        assert ids[split] == [
            voc_writer.image_id(split, i) for i in range(len(ids[split]))
        ]
        assert all(re.fullmatch(r'\d{6}', i) for i in ids[split])
        flags = {
            name: dict(
                line.rsplit(maxsplit=1)
                for line in (main / f'{name}_{split}.txt')
                .read_text()
                .splitlines()
            )
            for name in names
        }
        for index, img_id in enumerate(ids[split]):
            assert (root / 'JPEGImages' / f'{img_id}.jpg').is_file()
            xml = ET.parse(root / 'Annotations' / f'{img_id}.xml').getroot()
            assert xml.find('filename').text == f'{img_id}.jpg'
            scene, difficult = voc_writer.scene(spec, split, index)
            objs = [
                (o.find('name').text, int(o.find('difficult').text))
                for o in xml.findall('object')
            ]
            assert objs == [
                (names[c], int(d)) for c, d in zip(scene.classes, difficult)
            ]
            for name in names:  # flag 1 / 0 (only difficult) / -1
                diffs = [d for n, d in objs if n == name]
                want = -1 if not diffs else (0 if all(diffs) else 1)
                assert int(flags[name][img_id]) == want
    assert not set(ids['trainval']) & set(ids['test'])
    # VOC's flag column is right-aligned: '000001 -1' and '000003  1'.
    lines = (main / f'{names[0]}_trainval.txt').read_text().splitlines()
    assert all(re.fullmatch(r'\d{6} ( 1| 0|-1)', line) for line in lines)


def test_voc_uses_the_voc_names_for_20_classes(tmp_path):
    entry = generate('voc', tmp_path, 20, 1, size_range=SIZE, seed=0)
    assert tuple(entry['classes']) == VOC2007_CATEGORIES
    main = tmp_path / 'VOCdevkit' / 'VOC2007' / 'ImageSets' / 'Main'
    for name in VOC2007_CATEGORIES:
        assert (main / f'{name}_test.txt').is_file()


def decoded_images(root: Path) -> dict:
    return {
        str(p.relative_to(root)): cv2.imread(str(p))
        for p in sorted(root.rglob('*.jpg'))
    }


@pytest.mark.parametrize('fmt', ['coco', 'voc'])
def test_deterministic_across_runs_and_workers(tmp_path, fmt):
    kwargs = dict(val_per_class=2, size_range=SIZE)
    a = generate(fmt, tmp_path / 'a', 4, 3, seed=5, workers=1, **kwargs)
    b = generate(fmt, tmp_path / 'b', 4, 3, seed=5, workers=2, **kwargs)
    c = generate(fmt, tmp_path / 'c', 4, 3, seed=6, workers=1, **kwargs)
    assert a['annotation_sha256'] == b['annotation_sha256']
    assert a['annotation_sha256'] != c['annotation_sha256']
    pix_a = decoded_images(tmp_path / 'a')
    pix_b = decoded_images(tmp_path / 'b')
    assert pix_a.keys() == pix_b.keys() and len(pix_a) >= 12
    for key in pix_a:
        np.testing.assert_array_equal(pix_a[key], pix_b[key])
    pix_c = decoded_images(tmp_path / 'c')
    assert any(
        pix_a[k].shape != pix_c[k].shape or (pix_a[k] != pix_c[k]).any()
        for k in pix_a
    )


@pytest.mark.parametrize(
    'fmt, kind',
    [('coco', 'bad_flag'), ('coco', 'mask_missing'), ('voc', 'class_mismatch'),
     ('voc', 'box_outside')],
)  # fmt: skip
def test_unsupported_corruptions_are_refused(tmp_path, fmt, kind):
    with pytest.raises(ValueError, match=f'--corrupt {kind} is not'):
        generate(fmt, tmp_path, 2, 1, size_range=SIZE, corrupt=kind)


@pytest.mark.parametrize(
    'fmt, kind',
    [(f, k) for f in ('coco',) for k in coco_writer.CORRUPTIONS]
    + [(f, k) for f in ('voc',) for k in voc_writer.CORRUPTIONS],
)
def test_corruption_records(tmp_path, fmt, kind):
    entry = generate(fmt, tmp_path, 2, 2, size_range=SIZE, corrupt=kind)
    record = entry['corruption']
    assert record['kind'] == kind
    path = Path(record['file'])
    assert path.is_file()
    manifest = json.loads((tmp_path / 'synthetic_manifest.json').read_text())
    assert manifest['formats'][fmt]['corruption'] == record
    if kind == 'missing_image':
        assert not Path(record['target']).exists()
    elif kind == 'truncated_image':
        data = Path(record['target']).read_bytes()
        assert data[:2] == b'\xff\xd8' and not data.endswith(b'\xff\xd9')
    elif kind == 'empty_annotation':
        assert record['line'] is None and path.read_text() == ''
    elif fmt == 'coco':
        data = json.loads(path.read_text())
        number = int(record['line'].rsplit(' ', 1)[1])
        if kind == 'duplicate_id':
            assert record['line'].startswith('image id ')
            assert [i['id'] for i in data['images']].count(number) == 2
        else:
            assert record['line'].startswith('annotation id ')
            ann = next(a for a in data['annotations'] if a['id'] == number)
            if kind == 'class_mismatch':
                cats = {c['id'] for c in data['categories']}
                assert ann['category_id'] not in cats
            else:  # box_outside
                img = next(
                    i for i in data['images'] if i['id'] == ann['image_id']
                )
                assert ann['bbox'][0] + ann['bbox'][2] > img['width']
    else:
        lines = path.read_text().splitlines()
        bad = lines[record['line'] - 1]
        if kind == 'duplicate_id':
            assert bad == lines[record['line'] - 2]
        else:  # bad_flag
            assert bad.split()[1] == '2'
