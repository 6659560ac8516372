"""Tests of shared/datasets/multilabel.py (COCOMultiLabel, VOCClassList),
of mmpretrain VOC on the synthetic VOC layout, and of the multi-label base
configs, all on synthetic data (datasets.md §8 items 1-4)."""

from __future__ import annotations

import copy
import json
import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.datasets import VOC

from shared.datasets.base import DatasetSampleError, SampleLoadError
from shared.datasets.multilabel import COCOMultiLabel, VOCClassList
from shared.datasets.parsing import AnnotationError
from shared.datasets.synthetic import coco as coco_writer
from shared.datasets.synthetic import generate
from shared.datasets.synthetic import voc as voc_writer
from shared.datasets.synthetic.common import SyntheticSpec
from shared.datasets.utils import multilabel_target
from shared.registry import DATASETS
from tests.conftest import REPO_ROOT
from tests.shared.datasets.logs import captured_log

SIZE = (48, 96)
LOAD = dict(
    type='LoadImageFromFile',
    imdecode_backend='pillow',
    color_type='color_ignore_orientation',
)
PIPELINE = [LOAD, dict(type='PackInputs')]
TRAIN_JSON = 'annotations/instances_train2014.json'


def spec_of(entry: dict, out: Path) -> SyntheticSpec:
    """The spec a generate() call used (to re-render its scenes)."""
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
        'coco', out, 4, 3, val_per_class=2, size_range=SIZE, seed=0
    )
    return out, entry


def voc_data(tmp_path_factory, num_classes, per_class, val_per_class):
    out = tmp_path_factory.mktemp(f'voc{num_classes}')
    entry = generate(
        'voc',
        out,
        num_classes,
        per_class,
        val_per_class=val_per_class,
        size_range=SIZE,
        seed=0,
    )
    return out, entry


@pytest.fixture(scope='module')
def voc20(tmp_path_factory):
    return voc_data(tmp_path_factory, 20, 1, 1)


@pytest.fixture(scope='module')
def voc5(tmp_path_factory):
    return voc_data(tmp_path_factory, 5, 4, 2)


def coco_dataset(out: Path, split='train', **kwargs) -> COCOMultiLabel:
    return COCOMultiLabel(
        str(out / 'coco'),
        f'annotations/instances_{split}2014.json',
        data_prefix=f'{split}2014',
        **kwargs,
    )


def voc_root(out: Path) -> str:
    return str(out / 'VOCdevkit' / 'VOC2007')


# -- registration ---------------------------------------------------------
def test_registered_without_shadowing():
    for cls in (COCOMultiLabel, VOCClassList):
        assert DATASETS.get(cls.__name__) is cls
    assert DATASETS.get('VOC') is VOC  # mmpretrain's VOC is untouched


# -- COCOMultiLabel ---------------------------------------------------------
@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_matches_the_generator(coco, split):
    out, entry = coco
    spec = spec_of(entry, out)
    ds = coco_dataset(
        out, split, with_boxes=True, check_images='full', pipeline=PIPELINE
    )
    assert len(ds) == entry['counts'][split]
    assert ds.metainfo['classes'] == tuple(entry['classes'])
    expected_counts: Counter = Counter()
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        scene = coco_writer.scene(spec, split, i)
        assert info['img_id'] == coco_writer.image_id(split, i)
        assert info['gt_label'] == sorted(set(scene.classes))
        assert info['gt_label_difficult'] == []
        assert ds.get_cat_ids(i) == info['gt_label']
        # Boxes: the tight extent of the generator's masks, edge coords.
        np.testing.assert_array_equal(info['gt_bboxes'], scene.boxes)
        assert info['gt_bboxes'].dtype == np.float64
        xywh = scene.boxes.copy()
        xywh[:, 2:] -= xywh[:, :2]
        np.testing.assert_array_equal(info['ori_gt_bboxes'], xywh)
        assert info['ori_box_format'] == 'xywh'
        assert info['gt_bboxes_labels'].tolist() == scene.classes
        h, w = scene.img.shape[:2]
        assert info['ann_img_shape'] == (h, w)
        boxes = info['gt_bboxes']
        assert (boxes[:, :2] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        expected_counts.update(set(scene.classes))
        sample = ds[i]
        assert sample['data_samples'].ori_shape == (h, w)
        label = sample['data_samples'].gt_label
        assert label.dtype == torch.long
        assert label.tolist() == info['gt_label']
    counts = Counter(c for i in range(len(ds)) for c in ds.get_cat_ids(i))
    assert counts == expected_counts
    assert all(0 <= c < len(entry['classes']) for c in counts)


def test_coco_crowd_counted_and_empty_images_kept(coco):
    out, entry = coco
    data = json.loads((out / 'coco' / TRAIN_JSON).read_text())
    crowd = [a for a in data['annotations'] if a['iscrowd']]
    assert len(crowd) == entry['crowd_annotations']['train'] > 0
    with captured_log(logging.INFO) as records:
        ds = coco_dataset(out)
    log = '\n'.join(r.getMessage() for r in records)
    n_empty = entry['empty_images']['train']
    assert n_empty >= 1 and ds.num_empty == n_empty
    assert f'{n_empty} image(s) without positives kept' in log
    assert f'{len(crowd)} crowd annotation(s) counted' in log
    assert ds.num_crowd == len(crowd)
    labels = {
        ds.get_data_info(i)['img_id']: ds.get_data_info(i)['gt_label']
        for i in range(len(ds))
    }
    cat_to_label = {c['id']: i for i, c in enumerate(data['categories'])}
    for ann in crowd:  # every crowd annotation makes its class positive
        assert cat_to_label[ann['category_id']] in labels[ann['image_id']]
    assert sum(not v for v in labels.values()) == n_empty
    # Without crowd: exactly the labels of the non-crowd annotations.
    no_crowd = coco_dataset(out, include_crowd=False)
    expected: dict = {i['id']: set() for i in data['images']}
    for ann in data['annotations']:
        if not ann['iscrowd']:
            expected[ann['image_id']].add(cat_to_label[ann['category_id']])
    got = {
        no_crowd.get_data_info(i)['img_id']: no_crowd.get_data_info(i)[
            'gt_label'
        ]
        for i in range(len(no_crowd))
    }
    assert got == {k: sorted(v) for k, v in expected.items()}
    assert got != labels  # crowd annotations changed something
    dropped = coco_dataset(out, drop_empty=True)
    assert len(dropped) == len(ds) - n_empty
    assert all(
        dropped.get_data_info(i)['gt_label'] for i in range(len(dropped))
    )


def minimal_coco() -> dict:
    """Categories in non-sorted id order with gaps; one empty image."""
    return {
        'images': [
            {'id': 5, 'file_name': 'a.jpg', 'width': 8, 'height': 6},
            {'id': 2, 'file_name': 'b.jpg', 'width': 8, 'height': 6},
            {'id': 11, 'file_name': 'c.jpg', 'width': 8, 'height': 6},
        ],
        'annotations': [
            {
                'id': 7,
                'image_id': 5,
                'category_id': 90,
                'bbox': [0, 0, 2, 2],
                'iscrowd': 0,
            },
            {
                'id': 8,
                'image_id': 5,
                'category_id': 3,
                'bbox': [1, 1, 2, 2],
                'iscrowd': 1,
            },
            {
                'id': 9,
                'image_id': 2,
                'category_id': 17,
                'bbox': [0, 0, 8, 6],
                'iscrowd': 0,
            },
        ],  # fmt: skip
        'categories': [
            {'id': 90, 'name': 'zebra'},
            {'id': 3, 'name': 'car'},
            {'id': 17, 'name': 'cat'},
        ],
    }


def write_json(tmp_path: Path, data) -> Path:
    path = tmp_path / 'ann.json'
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_coco_category_gaps_map_in_file_order(tmp_path):
    path = write_json(tmp_path, minimal_coco())
    ds = COCOMultiLabel(str(tmp_path), 'ann.json', with_boxes=True)
    assert ds.metainfo['classes'] == ('zebra', 'car', 'cat')
    assert [ds.get_data_info(i)['img_id'] for i in range(3)] == [5, 2, 11]
    assert [ds.get_data_info(i)['gt_label'] for i in range(3)] == [
        [0, 1],
        [2],
        [],
    ]
    info = ds.get_data_info(0)
    assert info['img_path'] == str(tmp_path / 'a.jpg')
    np.testing.assert_array_equal(
        info['gt_bboxes'], [[0, 0, 2, 2], [1, 1, 3, 3]]
    )
    assert info['ann_ref'] == [
        f'{path}:annotation id 7',
        f'{path}:annotation id 8',
    ]
    assert ds.num_empty == 1
    # A config naming other classes is refused, the same ones accepted.
    with pytest.raises(ValueError, match='differ from the 3 classes'):
        COCOMultiLabel(
            str(tmp_path), 'ann.json', metainfo=dict(classes=['car'])
        )
    same = COCOMultiLabel(
        str(tmp_path), 'ann.json', classes=['zebra', 'car', 'cat']
    )
    assert len(same) == 3


def _set(path, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


@pytest.mark.parametrize(
    'edit, where, message',
    [
        (_set(('annotations', 0, 'image_id'), 99), 'annotation id 7',
         'unknown image_id 99'),
        (_set(('annotations', 1, 'category_id'), 4), 'annotation id 8',
         'unknown category_id 4'),
        (_set(('images', 1, 'id'), 5), 'image id 5', 'duplicate image id'),
        (_set(('categories', 2, 'id'), 3), 'category id 3',
         'duplicate category id'),
        (_set(('annotations', 2, 'id'), 7), 'annotation id 7',
         'duplicate annotation id'),
        (_set(('annotations', 0, 'bbox'), [0, 0, -1, 2]), 'annotation id 7',
         'negative bbox'),
        (_set(('annotations', 0, 'bbox'), [0, 'x', 1, 2]), 'annotation id 7',
         'bbox must be 4 finite numbers'),
        (_set(('images', 0, 'width'), 0), 'image id 5', 'bad size'),
        (lambda d: d.pop('annotations'), None, "no 'annotations' list"),
    ],
)  # fmt: skip
def test_coco_annotation_errors_name_file_and_id(
    tmp_path, edit, where, message
):
    data = copy.deepcopy(minimal_coco())
    edit(data)
    path = write_json(tmp_path, data)
    with pytest.raises(AnnotationError) as info:
        COCOMultiLabel(str(tmp_path), 'ann.json', with_boxes=True)
    text = str(info.value)
    assert text.startswith(f'{path}:{where}: ' if where else f'{path}: ')
    assert message in text


def test_coco_unreadable_json_names_file_and_line(tmp_path):
    path = write_json(tmp_path, '{\n"images": [],\n"annotations": [,]}')
    with pytest.raises(AnnotationError, match=rf'{path}:3: invalid JSON'):
        COCOMultiLabel(str(tmp_path), 'ann.json')
    write_json(tmp_path, '  \n')
    with pytest.raises(AnnotationError, match='annotation file is empty'):
        COCOMultiLabel(str(tmp_path), 'ann.json')
    with pytest.raises(FileNotFoundError, match='nope.json'):
        COCOMultiLabel(str(tmp_path), 'nope.json')
    write_json(tmp_path, minimal_coco())
    with pytest.raises(ValueError, match='max_refetch must be 0'):
        COCOMultiLabel(str(tmp_path), 'ann.json', max_refetch=3)


def corrupted(tmp_path, fmt, kind, num_classes=2):
    entry = generate(
        fmt,
        tmp_path,
        num_classes,
        2,
        val_per_class=1,
        size_range=SIZE,
        seed=1,
        corrupt=kind,
    )
    record = entry['corruption']
    assert record['kind'] == kind and Path(record['file']).is_file()
    return entry, record


def assert_skipped_once(records, kind, count, target):
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert f'skipped {count} sample(s) with {kind}' in text
    assert target in text


@pytest.mark.parametrize(
    'kind, check', [('missing_image', 'header'), ('truncated_image', 'header')]
)
def test_coco_bad_images_error_or_skip(tmp_path, kind, check):
    entry, record = corrupted(tmp_path, 'coco', kind)
    where = f'{record["file"]}:{record["line"]}'
    # Lazy default: the dataset builds, loading the image fails naming it.
    lazy = coco_dataset(tmp_path, pipeline=PIPELINE)
    with pytest.raises(SampleLoadError, match=record['target']):
        lazy[0]
    with pytest.raises(DatasetSampleError) as info:
        coco_dataset(tmp_path, check_images=check)
    assert where in str(info.value) and record['target'] in str(info.value)
    with captured_log(logging.INFO) as records:
        ds = coco_dataset(
            tmp_path, bad_sample_policy='skip', check_images=check
        )
    n = entry['counts']['train']
    assert len(ds) == n - 1
    img_ids = [ds.get_data_info(i)['img_id'] for i in range(len(ds))]
    assert record['line'] not in [f'image id {i}' for i in img_ids]
    problem = 'missing_image' if kind == 'missing_image' else (
        'undecodable_image'
    )  # fmt: skip
    assert list(ds.skipped) == [problem]
    assert len(ds.skipped[problem]) == 1 and where in ds.skipped[problem][0]
    assert_skipped_once(records, problem, 1, where)


@pytest.mark.parametrize(
    'kind', ['empty_annotation', 'duplicate_id', 'class_mismatch']
)
def test_coco_bad_annotations_raise_at_build(tmp_path, kind):
    _, record = corrupted(tmp_path, 'coco', kind)
    with pytest.raises(AnnotationError) as info:
        coco_dataset(tmp_path, bad_sample_policy='skip')
    text = str(info.value)
    if record['line'] is None:
        assert text.startswith(f'{record["file"]}: annotation file is empty')
    else:
        assert text.startswith(f'{record["file"]}:{record["line"]}: ')


def test_coco_box_outside_error_clip_or_skip(tmp_path):
    entry, record = corrupted(tmp_path, 'coco', 'box_outside')
    where = f'{record["file"]}:{record["line"]}'
    coco_dataset(tmp_path)  # boxes are not read by default
    with pytest.raises(DatasetSampleError, match=where):
        coco_dataset(tmp_path, with_boxes=True)
    clipped = coco_dataset(tmp_path, with_boxes=True, box_out_of_bounds='clip')
    assert clipped.clipped_boxes == 1
    info = clipped.get_data_info(0)
    assert info['gt_bboxes'][0, 2] == info['ann_img_shape'][1]
    with captured_log(logging.INFO) as records:
        ds = coco_dataset(tmp_path, with_boxes=True, bad_sample_policy='skip')
    assert len(ds) == entry['counts']['train'] - 1
    assert list(ds.skipped) == ['box_outside']
    assert_skipped_once(records, 'box_outside', 1, where)


# -- VOC: mmpretrain VOC and VOCClassList -----------------------------------
def voc_truth(spec: SyntheticSpec, split: str, index: int):
    """(positives, difficult-only) class sets of a synthetic VOC image."""
    scene, difficult = voc_writer.scene(spec, split, index)
    pos = {c for c, d in zip(scene.classes, difficult) if not d}
    hard = {c for c, d in zip(scene.classes, difficult) if d} - pos
    return scene, pos, hard


@pytest.mark.parametrize('split', ['trainval', 'test'])
@pytest.mark.parametrize('data', ['voc20', 'voc5'])
def test_voc_class_list_matches_generator(request, data, split):
    out, entry = request.getfixturevalue(data)
    spec = spec_of(entry, out)
    names = entry['classes']
    metainfo = None if len(names) == 20 else dict(classes=names)
    ds = VOCClassList(
        voc_root(out),
        split=split,
        metainfo=metainfo,
        check_images='full',
        pipeline=PIPELINE,
    )
    assert len(ds) == entry['counts'][split]
    assert ds.metainfo['classes'] == tuple(names)
    if len(names) == 20:
        assert ds.metainfo['classes'] == VOC.METAINFO['classes']
    expected_counts: Counter = Counter()
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        scene, pos, hard = voc_truth(spec, split, i)
        assert info['img_id'] == voc_writer.image_id(split, i)
        assert info['gt_label'] == sorted(pos)
        assert info['gt_label_difficult'] == sorted(hard)
        expected_counts.update(pos)
        sample = ds[i]
        assert sample['data_samples'].ori_shape == scene.img.shape[:2]
    counts = Counter(c for i in range(len(ds)) for c in ds.get_cat_ids(i))
    assert counts == expected_counts
    assert all(0 <= c < len(names) for c in counts)


@pytest.mark.parametrize('data', ['voc20', 'voc5'])
def test_voc_xml_and_class_files_give_identical_targets(request, data):
    out, entry = request.getfixturevalue(data)
    names = entry['classes']
    metainfo = None if len(names) == 20 else dict(classes=names)
    seen = Counter()
    for split in ('trainval', 'test'):
        xml = VOC(voc_root(out), split=split, metainfo=metainfo)
        lst = VOCClassList(voc_root(out), split=split, metainfo=metainfo)
        assert len(xml) == len(lst) == entry['counts'][split]
        assert tuple(xml.metainfo['classes']) == lst.metainfo['classes']
        for i in range(len(xml)):
            a, b = xml.get_data_info(i), lst.get_data_info(i)
            assert a['img_path'] == b['img_path']
            ta = multilabel_target(
                a['gt_label'], a['gt_label_difficult'], len(names)
            )
            tb = multilabel_target(
                b['gt_label'], b['gt_label_difficult'], len(names)
            )
            torch.testing.assert_close(ta, tb, rtol=0, atol=0)
            seen.update(ta.tolist())
            # The class-in-both-lists case of the XML reader is exercised.
            seen['both'] += bool(
                set(a['gt_label']) & set(a['gt_label_difficult'])
            )
    assert seen[1.0] and seen[0.0] and seen[-1.0] and seen['both']


def test_voc_xml_boxes_are_one_based_inclusive(voc5):
    out, entry = voc5
    spec = spec_of(entry, out)
    for i in range(entry['counts']['test']):
        scene, difficult = voc_writer.scene(spec, 'test', i)
        img_id = voc_writer.image_id('test', i)
        root = ET.parse(
            Path(voc_root(out)) / 'Annotations' / f'{img_id}.xml'
        ).getroot()
        size = root.find('size')
        assert (
            int(size.find('height').text),
            int(size.find('width').text),
        ) == scene.img.shape[:2]
        objects = root.findall('object')
        boxes = [
            [int(o.find('bndbox').find(t).text) for t in
             ('xmin', 'ymin', 'xmax', 'ymax')]
            for o in objects
        ]  # fmt: skip
        # VOC pixel indices are 1-based inclusive: edge x0 = xmin - 1.
        edge = np.array(boxes, np.float64) - [1, 1, 0, 0]
        np.testing.assert_array_equal(edge, scene.boxes)
        assert [o.find('name').text for o in objects] == [
            entry['classes'][c] for c in scene.classes
        ]
        assert [int(o.find('difficult').text) for o in objects] == difficult


def copy_voc(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src / 'VOCdevkit', dst / 'VOCdevkit')
    return dst / 'VOCdevkit' / 'VOC2007' / 'ImageSets' / 'Main'


def test_voc_missing_test_tarball_says_what_to_extract(voc20, tmp_path):
    out, _ = voc20
    main = copy_voc(out, tmp_path)
    for f in sorted(main.glob('*_test.txt'))[:3]:
        f.unlink()
    hint = 'VOCtest_06-Nov-2007.tar must be extracted'
    with pytest.raises(AnnotationError, match='found 17') as info:
        VOCClassList(voc_root(tmp_path), split='test')
    assert hint in str(info.value)
    for f in main.glob('*_test.txt'):
        f.unlink()
    (main / 'test.txt').unlink()
    with pytest.raises(AnnotationError, match=hint):
        VOCClassList(voc_root(tmp_path), split='test')
    with pytest.raises(AnnotationError, match=hint):  # named classes too
        VOCClassList(
            voc_root(tmp_path),
            split='test',
            metainfo=dict(classes=VOC.METAINFO['classes']),
        )
    # trainval is untouched and builds; no hint outside the test split.
    assert len(VOCClassList(voc_root(tmp_path), split='trainval')) == 20


def test_voc_class_count_must_be_20_without_metainfo(voc5):
    out, _ = voc5
    with pytest.raises(AnnotationError, match='exactly 20 class files') as e:
        VOCClassList(voc_root(out))
    assert 'VOCtest' not in str(e.value)


def test_voc_image_missing_from_a_class_file(voc5, tmp_path):
    out, entry = voc5
    main = copy_voc(out, tmp_path)
    names = entry['classes']
    cls_file = main / f'{names[2]}_trainval.txt'
    lines = cls_file.read_text().splitlines()
    missing_id = lines[3].split()[0]
    cls_file.write_text('\n'.join(lines[:3] + lines[4:]) + '\n')
    with pytest.raises(AnnotationError) as info:
        VOCClassList(voc_root(tmp_path), metainfo=dict(classes=names))
    text = str(info.value)
    assert text.startswith(f'{main / "trainval.txt"}:4: ')
    assert f'{missing_id!r} is missing from {cls_file}' in text
    with captured_log(logging.INFO) as records:
        ds = VOCClassList(
            voc_root(tmp_path),
            metainfo=dict(classes=names),
            missing_as_ignore=True,
        )
    assert ds.num_missing == 1
    assert any('1 (image, class) pair' in r.getMessage() for r in records)
    info = ds.get_data_info(3)
    assert info['img_id'] == missing_id
    assert 2 in info['gt_label_difficult'] and 2 not in info['gt_label']


@pytest.mark.parametrize(
    'line, message',
    [
        ('999999  1', "'999999' is not in"),
        ('000001', 'expected 2 tokens'),
        ('000001 x', "flag 'x' is not an integer"),
    ],
)
def test_voc_class_file_line_errors(voc5, tmp_path, line, message):
    out, entry = voc5
    main = copy_voc(out, tmp_path)
    cls_file = main / f'{entry["classes"][0]}_trainval.txt'
    lines = cls_file.read_text().splitlines()
    if line.startswith('000001'):  # replace the line of image 000001
        lines[0] = line
        line_no = 1
    else:
        lines.append(line)
        line_no = len(lines)
    cls_file.write_text('\n'.join(lines) + '\n')
    with pytest.raises(AnnotationError) as info:
        VOCClassList(
            voc_root(tmp_path), metainfo=dict(classes=entry['classes'])
        )
    assert str(info.value).startswith(f'{cls_file}:{line_no}: ')
    assert message in str(info.value)


@pytest.mark.parametrize(
    'kind', ['bad_flag', 'duplicate_id', 'empty_annotation']
)
def test_voc_bad_annotations_raise_at_build(tmp_path, kind):
    entry, record = corrupted(tmp_path, 'voc', kind)
    with pytest.raises(AnnotationError) as info:
        VOCClassList(
            voc_root(tmp_path),
            metainfo=dict(classes=entry['classes']),
            bad_sample_policy='skip',
        )
    text = str(info.value)
    if record['line'] is None:
        assert text.startswith(f'{record["file"]}: class file is empty')
    else:
        assert text.startswith(f'{record["file"]}:{record["line"]}: ')
    if kind == 'bad_flag':
        assert 'flag 2 is not 1' in text


@pytest.mark.parametrize(
    'kind, check', [('missing_image', 'header'), ('truncated_image', 'header')]
)
def test_voc_bad_images_error_or_skip(tmp_path, kind, check):
    entry, record = corrupted(tmp_path, 'voc', kind)
    where = f'{record["file"]}:{record["line"]}'
    meta = dict(classes=entry['classes'])
    lazy = VOCClassList(voc_root(tmp_path), metainfo=meta, pipeline=PIPELINE)
    with pytest.raises(SampleLoadError, match=record['target']):
        lazy[0]
    with pytest.raises(DatasetSampleError) as info:
        VOCClassList(voc_root(tmp_path), metainfo=meta, check_images=check)
    assert str(info.value).startswith(f'{where}: ')
    with captured_log(logging.INFO) as records:
        ds = VOCClassList(
            voc_root(tmp_path),
            metainfo=meta,
            skip_invalid=True,
            check_images=check,
        )
    assert len(ds) == entry['counts']['trainval'] - 1
    assert ds.get_data_info(0)['img_id'] == voc_writer.image_id('trainval', 1)
    problem = 'missing_image' if kind == 'missing_image' else (
        'undecodable_image'
    )  # fmt: skip
    assert list(ds.skipped) == [problem]
    assert ds.skipped[problem][0].startswith(f'{where}: ')
    assert_skipped_once(records, problem, 1, where)


# -- base configs -----------------------------------------------------------
def load_base(name: str, data_root: Path, monkeypatch) -> Config:
    monkeypatch.setenv('DATA_ROOT', str(data_root))
    return Config.fromfile(
        str(REPO_ROOT / 'configs' / '_base_' / 'datasets' / f'{name}.py')
    )


def check_sample(sample, num_classes, size=224):
    assert sample['inputs'].shape == (3, size, size)
    label = sample['data_samples'].gt_label
    assert label.dtype == torch.long and label.ndim == 1
    assert all(0 <= c < num_classes for c in label.tolist())


def test_coco_multilabel_config_builds(coco, monkeypatch):
    out, entry = coco
    cfg = load_base('coco_multilabel', out, monkeypatch)
    assert cfg.train_dataloader.dataset.data_root == f'{out}/coco/'
    for key, split in (
        ('train_dataloader', 'train'),
        ('val_dataloader', 'val'),
    ):
        ds = DATASETS.build(cfg[key].dataset)
        assert isinstance(ds, COCOMultiLabel)
        assert len(ds) == entry['counts'][split]
        check_sample(ds[0], len(entry['classes']))
    assert cfg.data_preprocessor.to_onehot is True
    # The configured evaluator scores perfect predictions on real samples.
    value, expected = _perfect_score(cfg, ds)
    assert value == pytest.approx(expected)


def _perfect_score(cfg, ds) -> tuple[float, float]:
    """mAP of perfect predictions, and its closed form: 100 times the
    fraction of classes with a positive (the others score 0)."""
    from mmengine.evaluator import Evaluator

    from shared.datasets import multilabel_target

    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = ds.metainfo
    num_classes = len(ds.metainfo['classes'])
    samples, targets = [], []
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        target = multilabel_target(
            sample.gt_label, sample.get('gt_label_difficult'), num_classes
        )
        sample.set_field(target.clamp(min=0), 'pred_score')
        targets.append(target)
        samples.append(sample.to_dict())
    evaluator.process(samples)
    (value,) = evaluator.evaluate(len(samples)).values()
    has_positive = (torch.stack(targets) == 1).any(0)
    return value, 100.0 * has_positive.float().mean().item()


def test_voc07_multilabel_config_builds(voc20, monkeypatch):
    out, entry = voc20
    cfg = load_base('voc07_multilabel', out, monkeypatch)
    for key, split in (
        ('train_dataloader', 'trainval'),
        ('val_dataloader', 'test'),
    ):
        ds = DATASETS.build(cfg[key].dataset)
        assert len(ds) == entry['counts'][split]
        hard = [
            i
            for i in range(len(ds))
            if ds.get_data_info(i)['gt_label_difficult']
        ]
        assert hard
        sample = ds[hard[0]]
        check_sample(sample, 20)
        assert (
            sample['data_samples'].gt_label_difficult
            == (ds.get_data_info(hard[0])['gt_label_difficult'])
        )
    value, expected = _perfect_score(cfg, ds)
    assert value == pytest.approx(expected)
    # The class-file reader is a drop-in replacement.
    alt = dict(cfg.val_dataloader.dataset, type='VOCClassList')
    check_sample(DATASETS.build(alt)[0], 20)


def test_coco_unlabeled_config_builds(coco, monkeypatch):
    out, entry = coco
    cfg = load_base('coco_unlabeled', out, monkeypatch)
    assert cfg.train_dataloader.drop_last is True
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(ds) == entry['counts']['train']
    sample = ds[0]
    assert sample['inputs'].ndim == 3
    assert os.path.basename(sample['data_samples'].img_path).startswith(
        'COCO_train2014_'
    )
