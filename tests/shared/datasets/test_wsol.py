"""WSOL adapters on synthetic data (datasets.md §4.1-4.4, §8 items 1-2).

One synthetic DIR holds the cub, imagenet-loc and openimages-mask layouts;
every adapter is checked for length, per-class counts, labels, classes,
sizes and boxes equal to the tight extent of the generator's masks, and the
adapters reading the same images through different files must agree.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import shared.datasets.wsol as wsol
from shared.datasets.base import DatasetSampleError, SampleLoadError
from shared.datasets.parsing import AnnotationError
from shared.datasets.synthetic import generate
from shared.datasets.synthetic import imagenet as inet_writer
from shared.datasets.synthetic import openimages as oi_writer
from shared.datasets.synthetic.common import SyntheticSpec
from tests.shared.datasets.logs import captured_log

C, PER, VAL = 3, 4, 2
SIZE = (48, 96)
LOAD = dict(
    type='LoadImageFromFile',
    imdecode_backend='pillow',
    color_type='color_ignore_orientation',
)


def spec_for(fmt: str, out: Path, **options) -> SyntheticSpec:
    """The spec ``generate`` builds for the module's data."""
    return SyntheticSpec(
        fmt=fmt,
        out=out,
        num_classes=C,
        per_class=PER,
        val_per_class=VAL,
        size_range=SIZE,
        seed=0,
        options=dict(ext='jpg', **options),
    )


@pytest.fixture(scope='module')
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('wsol')
    for fmt in ('cub', 'imagenet-loc', 'openimages-mask'):
        generate(
            fmt,
            out,
            C,
            PER,
            val_per_class=VAL,
            size_range=SIZE,
            seed=0,
            write_oracle_maps=True,
        )
    return out


def build(cls, *args, **kwargs):
    """An adapter without mmengine's serialisation (its gc.collect costs
    0.2 s per dataset); test_refetch_disabled... keeps the default."""
    kwargs.setdefault('serialize_data', False)
    return cls(*args, **kwargs)


def infos(ds) -> list[dict]:
    return [ds.get_data_info(i) for i in range(len(ds))]


def tight_extent(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0]


def check_basics(ds, num: int, per_class: int, classes) -> list[dict]:
    """Length, per-class counts, label range, classes, decoded sizes."""
    items = infos(ds)
    assert len(ds) == num
    assert ds.metainfo['classes'] == tuple(classes)
    counts = Counter(info['gt_label'] for info in items)
    assert counts == dict.fromkeys(range(C), per_class)
    for info in items:
        with Image.open(info['img_path']) as img:
            decoded = np.asarray(img.convert('RGB'))
            w, h = img.size
        assert decoded.shape[:2] == (h, w)  # ori_shape of the loader
        if 'ann_img_shape' in info:
            assert tuple(info['ann_img_shape']) == (h, w)
        if 'gt_bboxes' in info:
            boxes = info['gt_bboxes']
            assert boxes.dtype == np.float64 and boxes.shape[1] == 4
            assert (boxes[:, :2] >= 0).all()
            assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert len(info['ann_ref']) == len(boxes)
        assert info['box_out_of_bounds'] == 'error'
    return items


def oracle(root: Path, fmt: str, key: str) -> np.ndarray:
    return np.load(root / 'oracle_maps' / fmt / f'{key}.npy')


# -- CUBLoc -----------------------------------------------------------------
def test_cubloc_splits_labels_and_boxes(root):
    names = [f'Class_{c:03d}' for c in range(1, C + 1)]
    train = build(wsol.CUBLoc, str(root / 'CUB_200_2011'), split='train')
    check_basics(train, C * PER, PER, names)
    test = build(
        wsol.CUBLoc,
        str(root / 'CUB_200_2011'),
        split='test',
        check_images='full',
    )
    items = check_basics(test, C * VAL, VAL, names)
    ids = {i['img_id'] for i in items} | {i['img_id'] for i in infos(train)}
    assert ids == set(range(1, C * (PER + VAL) + 1))
    images = root / 'CUB_200_2011' / 'images'
    for info in items:
        rel = Path(info['img_path']).relative_to(images).as_posix()
        assert rel.startswith(f'{info["gt_label"] + 1:03d}.')
        extent = tight_extent(oracle(root, 'cub', rel))
        np.testing.assert_array_equal(info['gt_bboxes'], [extent])
        x0, y0, x1, y1 = extent
        np.testing.assert_array_equal(
            info['ori_gt_bboxes'], [[x0, y0, x1 - x0, y1 - y0]]
        )
        assert info['ori_box_format'] == 'xywh'
        assert info['ann_ref'][0].startswith(
            str(root / 'CUB_200_2011' / 'bounding_boxes.txt') + ':'
        )
        assert isinstance(info['img_id'], int)


def test_cubloc_without_boxes(root):
    ds = build(
        wsol.CUBLoc, str(root / 'CUB_200_2011'), 'test', with_boxes=False
    )
    assert len(ds) == C * VAL
    assert 'gt_bboxes' not in ds.get_data_info(0)


def test_cubloc_joins_files_by_id_not_line(root, tmp_path):
    data = tmp_path / 'CUB_200_2011'
    shutil.copytree(root / 'CUB_200_2011', data)
    for name in ('image_class_labels.txt', 'bounding_boxes.txt'):
        path = data / name
        lines = path.read_text().splitlines()
        path.write_text('\n'.join(reversed(lines)) + '\n')
    reference = infos(build(wsol.CUBLoc, str(root / 'CUB_200_2011'), 'test'))
    shuffled = infos(build(wsol.CUBLoc, str(data), 'test'))
    for a, b in zip(reference, shuffled):
        assert a['img_id'] == b['img_id'] and a['gt_label'] == b['gt_label']
        np.testing.assert_array_equal(a['gt_bboxes'], b['gt_bboxes'])


# -- ImageNetLoc ------------------------------------------------------------
@pytest.mark.parametrize('ann_format', ['xml', 'tscam_list'])
def test_imagenetloc_boxes_equal_generator_masks(root, ann_format):
    wnids = inet_writer.wnids(C)
    ds = build(
        wsol.ImageNetLoc,
        str(root / 'ILSVRC2012'),
        ann_format=ann_format,
        check_images='full',
    )
    assert ds.val_layout == 'flat'
    items = check_basics(ds, C * VAL, VAL, wnids)
    spec = spec_for('imagenet-loc', root)
    labels = inet_writer.val_labels(spec)
    for i, info in enumerate(items):
        assert info['img_id'] == inet_writer.val_stem(i + 1)
        assert info['gt_label'] == labels[i]
        scene = inet_writer.render(spec, 'val', i, int(labels[i]))
        expected = [tight_extent(m) for m in scene.masks]
        np.testing.assert_array_equal(info['gt_bboxes'], expected)
        np.testing.assert_array_equal(info['ori_gt_bboxes'], expected)
        assert info['ori_box_format'] == 'xyxy'
        union = oracle(root, 'imagenet-loc', f'val/{info["img_id"]}.JPEG')
        boxes = info['gt_bboxes']
        assert tight_extent(union) == [
            boxes[:, 0].min(),
            boxes[:, 1].min(),
            boxes[:, 2].max(),
            boxes[:, 3].max(),
        ]
    assert max(len(i['gt_bboxes']) for i in items) > 1  # multi-instance


def test_imagenetloc_val_layout_auto_detects_class_subdirs(root, tmp_path):
    generate(
        'imagenet-loc',
        tmp_path,
        C,
        PER,
        val_per_class=VAL,
        size_range=SIZE,
        seed=0,
        val_layout='class_subdirs',
    )
    flat = infos(build(wsol.ImageNetLoc, str(root / 'ILSVRC2012')))
    ds = build(
        wsol.ImageNetLoc, str(tmp_path / 'ILSVRC2012'), check_images='header'
    )
    assert ds.val_layout == 'class_subdirs'
    for a, b in zip(flat, infos(ds)):
        wnid = ds.metainfo['classes'][b['gt_label']]
        assert Path(b['img_path']).parent.name == wnid
        assert a['img_id'] == b['img_id'] and a['gt_label'] == b['gt_label']
        np.testing.assert_array_equal(a['gt_bboxes'], b['gt_bboxes'])


def test_imagenetloc_val_layout_errors_name_both_candidates(root):
    with pytest.raises(FileNotFoundError) as err:
        build(
            wsol.ImageNetLoc, str(root / 'ILSVRC2012'), data_prefix='nowhere'
        )
    text = str(err.value)
    first = 'ILSVRC2012_val_00000001.JPEG'
    wnid = inet_writer.wnids(C)[inet_writer.val_labels(
        spec_for('imagenet-loc', root))[0]]  # fmt: skip
    assert f'nowhere/{wnid}/{first}' in text
    assert f'nowhere/{first}' in text
    # an explicit layout that does not match the disk: missing images
    with pytest.raises(DatasetSampleError, match='image not found'):
        build(
            wsol.ImageNetLoc,
            str(root / 'ILSVRC2012'),
            val_layout='class_subdirs',
            check_images='header',
        )


def test_imagenetloc_class_list_from_train_folders(root, tmp_path):
    data = tmp_path / 'ILSVRC2012'
    shutil.copytree(root / 'ILSVRC2012', data)
    (data / 'synsets.txt').unlink()
    ds = build(wsol.ImageNetLoc, str(data))
    assert ds.metainfo['classes'] == tuple(inet_writer.wnids(C))
    # an explicit synsets file defines the order (here: reversed)
    (tmp_path / 'rev.txt').write_text('\n'.join(inet_writer.wnids(C)[::-1]))
    with pytest.raises(AnnotationError, match='does not match the class'):
        build(
            wsol.ImageNetLoc,
            str(data),
            ann_format='tscam_list',
            synsets_file=str(tmp_path / 'rev.txt'),
        )
    shutil.rmtree(data / 'train')
    with pytest.raises(AnnotationError, match='synsets'):
        build(wsol.ImageNetLoc, str(data))


# -- WSOLMetaDataset --------------------------------------------------------
def test_wsolmeta_cub_splits(root):
    data = str(root / 'wsol' / 'dataset' / 'CUB')
    meta = root / 'wsol' / 'metadata' / 'CUB'
    names = [f'class_{k}' for k in range(C)]
    for split, per_class in (('train', PER), ('val', VAL), ('test', VAL)):
        ds = build(
            wsol.WSOLMetaDataset,
            data,
            str(meta / split),
            check_images='header',
        )
        items = check_basics(ds, C * per_class, per_class, names)
        for info in items:
            assert info['img_id'].startswith(f'{info["gt_label"] + 1:03d}.')
            if split != 'train':
                extent = tight_extent(oracle(root, 'cub', info['img_id']))
                np.testing.assert_array_equal(info['gt_bboxes'], [extent])
            assert info['ori_box_format'] == 'xyxy'
    train = build(
        wsol.WSOLMetaDataset, data, str(meta / 'train'), loc_type='none'
    )
    assert 'gt_bboxes' not in train.get_data_info(0)
    named = build(
        wsol.WSOLMetaDataset,
        data,
        str(meta / 'test'),
        classes=['a', 'b', 'c', 'd'],
    )
    assert named.metainfo['classes'] == ('a', 'b', 'c', 'd')


def test_wsolmeta_ilsvrc_splits_and_proxy(root):
    data = str(root / 'ILSVRC2012')
    meta = root / 'wsol' / 'metadata' / 'ILSVRC'
    spec = spec_for('imagenet-loc', root)
    val = build(
        wsol.WSOLMetaDataset, data, str(meta / 'val'), check_images='full'
    )
    for i, info in enumerate(check_basics(val, C * VAL, VAL, [
            f'class_{k}' for k in range(C)])):  # fmt: skip
        c, k = divmod(i, VAL)
        assert info['img_id'] == f'val2/{c}/{k}.jpeg'
        scene = inet_writer.render(spec, 'val2', i, c)
        np.testing.assert_array_equal(
            info['gt_bboxes'], [tight_extent(m) for m in scene.masks]
        )
    full = build(
        wsol.WSOLMetaDataset, data, str(meta / 'train'), loc_type='none'
    )
    proxy = build(
        wsol.WSOLMetaDataset,
        data,
        str(meta / 'train'),
        loc_type='none',
        proxy=True,
    )
    assert len(full) == C * PER and len(proxy) == C
    assert {i['img_id'] for i in infos(proxy)} < {
        i['img_id'] for i in infos(full)
    }
    assert proxy.get_data_info(0)['img_ref'].endswith('image_ids_proxy.txt:1')


def test_wsolmeta_openimages_masks(root):
    data = root / 'wsol' / 'dataset' / 'OpenImages'
    meta = root / 'wsol' / 'metadata' / 'OpenImages'
    spec = spec_for('openimages-mask', root)
    names = [f'class_{k}' for k in range(C)]
    train = build(wsol.WSOLMetaDataset, str(data), str(meta / 'train'), 'none')
    check_basics(train, C * PER, PER, names)
    for split in ('val', 'test'):
        ds = build(
            wsol.WSOLMetaDataset,
            str(data),
            str(meta / split),
            loc_type='mask',
            mask_threshold=128,
            check_images='full',
        )
        items = check_basics(ds, C * VAL, VAL, names)
        loc_lines = (meta / split / 'localization.txt').read_text()
        loc_lines = loc_lines.splitlines()
        for i, info in enumerate(items):
            c, k = divmod(i, VAL)
            scene, ignore = oi_writer.render(spec, split, c * VAL + k, c)
            assert len(info['mask_paths']) == len(scene.masks)
            assert info['mask_threshold'] == 128
            for png, ref, mask in zip(
                info['mask_paths'], info['mask_refs'], scene.masks
            ):
                np.testing.assert_array_equal(
                    np.asarray(Image.open(png)), mask * 255
                )
                line_no = int(ref.rsplit(':', 1)[1])
                rel = Path(png).relative_to(data).as_posix()
                assert loc_lines[line_no - 1].split(',')[1] == rel
            np.testing.assert_array_equal(
                np.asarray(Image.open(info['ignore_path'])) > 0, ignore > 0
            )
            union = oracle(root, 'openimages-mask', info['img_id'])
            np.testing.assert_array_equal(union, scene.union_mask())


def test_wsolmeta_num_sample_per_class_is_seeded(root):
    data = str(root / 'wsol' / 'dataset' / 'CUB')
    meta = str(root / 'wsol' / 'metadata' / 'CUB' / 'val')
    picks = []
    for seed in range(8):
        ds = build(
            wsol.WSOLMetaDataset,
            data,
            meta,
            num_sample_per_class=1,
            sample_seed=seed,
        )
        counts = Counter(i['gt_label'] for i in infos(ds))
        assert counts == dict.fromkeys(range(C), 1)
        assert ds.sampled_ids == [i['img_id'] for i in infos(ds)]
        again = build(
            wsol.WSOLMetaDataset,
            data,
            meta,
            num_sample_per_class=1,
            sample_seed=seed,
        )
        assert again.sampled_ids == ds.sampled_ids
        picks.append(tuple(ds.sampled_ids))
    assert len(set(picks)) > 1
    with pytest.raises(ValueError, match='class 0 has only 2'):
        build(wsol.WSOLMetaDataset, data, meta, num_sample_per_class=3)


def test_wsolmeta_empty_ignore_field_warns(root, tmp_path):
    meta = tmp_path / 'meta'
    shutil.copytree(root / 'wsol' / 'metadata' / 'OpenImages' / 'test', meta)
    loc = meta / 'localization.txt'
    lines = loc.read_text().splitlines()
    lines[0] = lines[0].rsplit(',', 1)[0] + ','
    loc.write_text('\n'.join(lines) + '\n')
    with captured_log() as records:
        ds = build(
            wsol.WSOLMetaDataset,
            str(root / 'wsol' / 'dataset' / 'OpenImages'),
            str(meta),
            loc_type='mask',
        )
    assert ds.get_data_info(0)['ignore_path'] is None
    assert ds.get_data_info(1)['ignore_path'] is not None
    warnings = [r.getMessage() for r in records]
    assert len(warnings) == 1 and '1 image(s)' in warnings[0]
    assert f'{loc}:1' in warnings[0]


# -- WSOLListDataset --------------------------------------------------------
def test_wsollist_cub_and_ilsvrc(root):
    cub = build(
        wsol.WSOLListDataset,
        'images',
        'list/test.txt',
        'list/test_boxes.txt',
        box_format='cub_xywh',
        data_root=str(root / 'CUB_200_2011'),
        check_images='header',
    )
    items = check_basics(cub, C * VAL, VAL, [f'class_{k}' for k in range(C)])
    for info in items:
        extent = tight_extent(oracle(root, 'cub', info['img_id']))
        np.testing.assert_array_equal(info['gt_bboxes'], [extent])
        assert info['ori_box_format'] == 'xywh'
    ilsvrc = build(
        wsol.WSOLListDataset,
        'val',
        'list/val.txt',
        'list/val_boxes.txt',
        default_ext='.JPEG',
        data_root=str(root / 'ILSVRC2012'),
        check_images='header',
    )
    check_basics(ilsvrc, C * VAL, VAL, [f'class_{k}' for k in range(C)])
    train = build(
        wsol.WSOLListDataset,
        'images',
        'list/train.txt',
        data_root=str(root / 'CUB_200_2011'),
    )
    assert len(train) == C * PER and not train.multi_label


def test_wsollist_extensions_and_multilabel(root, tmp_path):
    img_dir = root / 'CUB_200_2011' / 'images'
    rels = [
        line.split()[0]
        for line in (root / 'CUB_200_2011' / 'list' / 'test.txt')
        .read_text()
        .splitlines()
    ]
    lst = tmp_path / 'list.txt'
    lst.write_text(
        f'{rels[0][:-4]} 0 2\n{rels[1]};1\n{rels[2]} 2\n',
    )
    ds = build(
        wsol.WSOLListDataset, str(img_dir), str(lst), check_images='header'
    )
    assert ds.multi_label
    assert [i['gt_label'] for i in infos(ds)] == [[0, 2], [1], [2]]
    assert infos(ds)[0]['img_id'] == rels[0]  # .jpg added
    assert ds.get_cat_ids(0) == [0, 2]
    assert ds.metainfo['classes'] == ('class_0', 'class_1', 'class_2')


# -- cross-format identity (§8 item 2) ---------------------------------------
def test_ilsvrc_xml_list_and_metadata_agree(root):
    data = root / 'ILSVRC2012'
    by_xml = infos(build(wsol.ImageNetLoc, str(data), ann_format='xml'))
    by_list = infos(
        build(wsol.ImageNetLoc, str(data), ann_format='tscam_list')
    )
    by_meta = infos(
        build(
            wsol.WSOLMetaDataset,
            str(data),
            str(root / 'wsol' / 'metadata' / 'ILSVRC' / 'test'),
        )
    )
    by_spa = infos(
        build(
            wsol.WSOLListDataset,
            'val',
            'list/val.txt',
            'list/val_boxes.txt',
            default_ext='.JPEG',
            data_root=str(data),
        )
    )
    assert len(by_xml) == len(by_list) == len(by_meta) == len(by_spa)
    for a, b, m, s in zip(by_xml, by_list, by_meta, by_spa):
        assert a['img_path'] == b['img_path'] == s['img_path']
        assert m['img_id'] == f'val/{a["img_id"]}.JPEG'
        assert a['gt_label'] == b['gt_label'] == m['gt_label'] == s['gt_label']
        for other in (b, m, s):
            np.testing.assert_array_equal(
                a['ori_gt_bboxes'], other['ori_gt_bboxes']
            )
            assert other['ori_box_format'] == 'xyxy'


def test_cub_original_metadata_and_lists_agree(root):
    cub_root = root / 'CUB_200_2011'
    meta = root / 'wsol' / 'metadata' / 'CUB'
    data = str(root / 'wsol' / 'dataset' / 'CUB')
    for split in ('train', 'test'):
        orig = infos(build(wsol.CUBLoc, str(cub_root), split))
        by_meta = infos(build(wsol.WSOLMetaDataset, data, str(meta / split)))
        kwargs = {}
        if split == 'test':
            kwargs = dict(
                box_file='list/test_boxes.txt', box_format='cub_xywh'
            )
        by_list = infos(
            build(
                wsol.WSOLListDataset,
                'images',
                f'list/{split}.txt',
                data_root=str(cub_root),
                **kwargs,
            )
        )
        assert len(orig) == len(by_meta) == len(by_list)
        for o, m, s in zip(orig, by_meta, by_list):
            rel = Path(o['img_path']).relative_to(cub_root / 'images')
            assert m['img_id'] == s['img_id'] == rel.as_posix()
            assert o['gt_label'] == m['gt_label'] == s['gt_label']
            # documented conventions: CUB files x, y, w, h; metadata x0..y1
            np.testing.assert_array_equal(o['gt_bboxes'], m['gt_bboxes'])
            np.testing.assert_array_equal(o['gt_bboxes'], m['ori_gt_bboxes'])
            if split == 'test':
                np.testing.assert_array_equal(o['gt_bboxes'], s['gt_bboxes'])
                np.testing.assert_array_equal(
                    o['ori_gt_bboxes'], s['ori_gt_bboxes']
                )


# -- policy plumbing ----------------------------------------------------------
def test_refetch_disabled_and_load_errors_name_the_sample(root, tmp_path):
    data = tmp_path / 'CUB_200_2011'
    shutil.copytree(root / 'CUB_200_2011', data)
    ds = wsol.CUBLoc(str(data), 'test', pipeline=[LOAD])
    assert ds.max_refetch == 0
    assert ds[0]['img'].shape[:2] == tuple(
        reversed(Image.open(ds.get_data_info(0)['img_path']).size)
    )
    missing = Path(ds.get_data_info(1)['img_path'])
    missing.unlink()
    with pytest.raises(SampleLoadError) as err:
        ds[1]
    assert str(missing) in str(err.value) and 'CUBLoc[1]' in str(err.value)


def test_box_out_of_bounds_clip(root, tmp_path):
    data = tmp_path / 'CUB_200_2011'
    shutil.copytree(root / 'CUB_200_2011', data)
    first = infos(build(wsol.CUBLoc, str(data), 'test'))[0]
    line_no = int(first['ann_ref'][0].rsplit(':', 1)[1])
    boxes = data / 'bounding_boxes.txt'
    lines = boxes.read_text().splitlines()
    lines[line_no - 1] = f'{first["img_id"]} -3.0 0.0 500.0 10.0'
    boxes.write_text('\n'.join(lines) + '\n')
    with captured_log() as records:
        ds = build(
            wsol.CUBLoc,
            str(data),
            'test',
            box_out_of_bounds='clip',
            check_images='header',
        )
    w = Image.open(first['img_path']).size[0]
    np.testing.assert_array_equal(ds.get_data_info(0)['gt_bboxes'], [
        [0.0, 0.0, w, 10.0]])  # fmt: skip
    assert ds.clipped_boxes == 1
    assert any('clipped 1 box' in r.getMessage() for r in records)


# -- real data, when present (§4.1, §4.2 facts) -------------------------------
REAL = Path(os.environ.get('DATA_ROOT', 'data'))
#: make_synthetic.py may have written its layouts under the same root.
SYNTHETIC = (REAL / 'synthetic_manifest.json').is_file()


def _require_real(path: Path) -> None:
    assert not SYNTHETIC, f'{REAL} holds synthetic data, not the real sets'
    assert path.exists(), f'real data not found: {path} (set DATA_ROOT)'


@pytest.mark.real_data
def test_real_ilsvrc_val_facts():
    _require_real(REAL / 'ILSVRC2012' / 'bbox_val')
    root = REAL / 'ILSVRC2012'
    by_xml = infos(build(wsol.ImageNetLoc, str(root)))
    assert len(by_xml) == 50000
    counts = [len(i['gt_bboxes']) for i in by_xml]
    assert sum(counts) == 80477 and min(counts) == 1 and max(counts) == 20
    others = []
    if (root / 'ILSVRC2012_list' / 'val_folder_new.txt').is_file():
        others.append(build(wsol.ImageNetLoc, str(root), 'tscam_list'))
    meta = REAL / 'wsol' / 'metadata' / 'ILSVRC' / 'test'
    if meta.is_dir():
        others.append(build(wsol.WSOLMetaDataset, str(root), str(meta)))
    for other in others:
        for a, b in zip(by_xml, infos(other)):
            assert a['gt_label'] == b['gt_label']
            np.testing.assert_array_equal(
                a['ori_gt_bboxes'], b['ori_gt_bboxes']
            )


@pytest.mark.real_data
def test_real_cub_facts():
    _require_real(REAL / 'CUB_200_2011' / 'bounding_boxes.txt')
    root = str(REAL / 'CUB_200_2011')
    train = build(wsol.CUBLoc, root, 'train')
    test = build(wsol.CUBLoc, root, 'test')
    assert (len(train), len(test)) == (5994, 5794)
    assert len(test.metainfo['classes']) == 200


def test_unsorted_synsets_file_is_warned_about(tmp_path):
    (tmp_path / 'synsets.txt').write_text('n02\nn01\n')
    with captured_log() as records:
        wnids, source = wsol.load_wnids(str(tmp_path))
    assert wnids == ['n02', 'n01'] and source.endswith('synsets.txt')
    assert any('not sorted' in r.getMessage() for r in records)
