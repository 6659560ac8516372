"""The cub, imagenet-loc and openimages-mask writers (datasets.md §6, §8.9).

Layouts as in §6.2, one DIR shared by the three formats, determinism
across runs and worker counts, oracle maps, the TS-CAM val layout and
refusal of corruptions a format cannot inject. The adapters reading these
layouts are tested in ``tests/shared/datasets/test_wsol*.py``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from shared.datasets.synthetic import MANIFEST, generate
from shared.datasets.synthetic import cub as cub_writer
from shared.datasets.synthetic import imagenet as inet_writer

C, PER, VAL = 2, 3, 2
SIZE = (48, 72)


def run(fmt, out, **kw):
    kw.setdefault('seed', 0)
    return generate(fmt, out, C, PER, val_per_class=VAL, size_range=SIZE, **kw)


def files_under(root):
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob('*') if p.is_file()
    )


def test_cub_layout(tmp_path):
    entry = run('cub', tmp_path)
    root = tmp_path / 'CUB_200_2011'
    assert entry['counts'] == {
        'train': C * PER,
        'test': C * VAL,
        'val': C * VAL,
    }
    assert entry['classes'] == ['Class_001', 'Class_002']
    assert (root / 'classes.txt').read_text() == (
        '1 001.Class_001\n2 002.Class_002\n'
    )
    for line in (root / 'bounding_boxes.txt').read_text().splitlines():
        tokens = line.split()
        assert len(tokens) == 5
        assert all(t.endswith('.0') for t in tokens[1:])  # '60.0' strings
    flags = [
        line.split()[1]
        for line in (root / 'train_test_split.txt').read_text().splitlines()
    ]
    assert flags.count('1') == C * PER and flags.count('0') == C * VAL
    assert flags != sorted(flags, reverse=True)  # splits interleave
    images = files_under(root / 'images')
    assert len(images) == C * (PER + VAL)
    assert all(p.split('/')[0] in cub_writer.class_folders(C) for p in images)
    wsol_images = files_under(tmp_path / 'wsol' / 'dataset' / 'CUB')
    assert set(images) < set(wsol_images)
    assert len(wsol_images) == len(images) + C * VAL  # + CUBV2
    for split in ('train', 'val', 'test'):
        meta = tmp_path / 'wsol' / 'metadata' / 'CUB' / split
        assert {p.name for p in meta.iterdir()} == {
            'image_ids.txt',
            'class_labels.txt',
            'image_sizes.txt',
            'localization.txt',
        }
    lists = root / 'list'
    assert {p.name for p in lists.iterdir()} == {
        'train.txt',
        'test.txt',
        'test_boxes.txt',
    }
    assert set(entry['annotation_sha256']) >= {
        'CUB_200_2011/images.txt',
        'CUB_200_2011/list/test_boxes.txt',
        'wsol/metadata/CUB/val/localization.txt',
    }


@pytest.mark.parametrize('layout', ['flat', 'class_subdirs'])
def test_imagenet_layout(tmp_path, layout):
    entry = run('imagenet-loc', tmp_path, val_layout=layout)
    root = tmp_path / 'ILSVRC2012'
    wnids = inet_writer.wnids(C)
    assert wnids == ['n00000000', 'n00000001'] == sorted(wnids)
    assert (root / 'synsets.txt').read_text().split() == wnids
    assert entry['counts'] == {
        'train': C * PER,
        'val': C * VAL,
        'val2': C * VAL,
    }
    assert files_under(root / 'train') == [
        f'{w}/{w}_{k}.JPEG' for w in wnids for k in range(PER)
    ]
    val = files_under(root / 'val')
    assert len(val) == C * VAL
    if layout == 'flat':
        assert all('/' not in p for p in val)
    else:
        assert all(p.split('/')[0] in wnids for p in val)
    assert len(files_under(root / 'bbox_val')) == C * VAL
    assert files_under(root / 'val2') == [
        f'{c}/{k}.jpeg' for c in range(C) for k in range(VAL)
    ]
    meta_val = (root / 'meta' / 'val.txt').read_text().split('\n')[0]
    assert ('/' in meta_val) == (layout == 'class_subdirs')
    lists = ['train.txt', 'val_folder_new.txt']
    assert sorted(p.name for p in (root / 'ILSVRC2012_list').iterdir()) == (
        lists
    )
    meta = tmp_path / 'wsol' / 'metadata' / 'ILSVRC'
    assert {p.name for p in (meta / 'train').iterdir()} == {
        'image_ids.txt',
        'image_ids_proxy.txt',
        'class_labels.txt',
    }
    instances = [
        len(line.split()) // 4
        for line in (root / 'list' / 'val_boxes.txt').read_text().splitlines()
    ]
    assert min(instances) >= 1 and max(instances) <= 3


def test_imagenet_switching_layout_leaves_no_stale_files(tmp_path):
    run('imagenet-loc', tmp_path, val_layout='class_subdirs')
    run('imagenet-loc', tmp_path)
    assert all('/' not in p for p in files_under(tmp_path / 'ILSVRC2012/val'))
    run('imagenet-loc', tmp_path, val_layout='class_subdirs')
    assert all('/' in p for p in files_under(tmp_path / 'ILSVRC2012/val'))


def test_openimages_layout(tmp_path):
    entry = run('openimages-mask', tmp_path)
    data = tmp_path / 'wsol' / 'dataset' / 'OpenImages'
    assert entry['counts'] == {
        'train': C * PER,
        'val': C * VAL,
        'test': C * VAL,
    }
    for split in ('val', 'test'):
        files = files_under(data / split)
        jpgs = [f for f in files if f.endswith('.jpg')]
        ignores = [f for f in files if f.endswith('_ignore.png')]
        assert len(jpgs) == len(ignores) == C * VAL
        loc = tmp_path / 'wsol' / 'metadata' / 'OpenImages' / split
        lines = (loc / 'localization.txt').read_text().splitlines()
        masks = [f for f in files if '_m' in f and f.endswith('.png')]
        assert len(lines) == len(masks) >= len(jpgs)
        seen = set()
        for line in lines:
            img, png, ignore = line.split(',')
            cls = img.split('/')[1]
            stem = img.split('/')[-1][: -len('.jpg')]
            assert png.split('/')[-1].startswith(f'{stem}_m{cls}_')
            assert bool(ignore) == (img not in seen)
            seen.add(img)
            with Image.open(data / png) as m, Image.open(data / img) as i:
                assert m.size == i.size
                assert set(np.unique(np.asarray(m))) <= {0, 255}
    assert not (tmp_path / 'wsol' / 'metadata' / 'OpenImages' / 'train' / (
        'localization.txt')).exists()  # fmt: skip


def test_formats_share_one_dir_and_oracle_maps(tmp_path):
    first = run('cub', tmp_path, write_oracle_maps=True)
    run('imagenet-loc', tmp_path, write_oracle_maps=True)
    run('openimages-mask', tmp_path, write_oracle_maps=True)
    again = run('cub', tmp_path, write_oracle_maps=True)
    assert first['annotation_sha256'] == again['annotation_sha256']
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert set(manifest['formats']) == {
        'cub',
        'imagenet-loc',
        'openimages-mask',
    }
    maps = tmp_path / 'oracle_maps'
    assert len(files_under(maps / 'cub')) == 2 * C * VAL  # test + CUBV2
    assert len(files_under(maps / 'imagenet-loc')) == 2 * C * VAL
    assert len(files_under(maps / 'openimages-mask')) == 2 * C * VAL
    key = files_under(maps / 'cub')[0][: -len('.npy')]
    score = np.load(maps / 'cub' / f'{key}.npy')
    assert score.dtype == np.float32
    with Image.open(tmp_path / 'wsol' / 'dataset' / 'CUB' / key) as img:
        assert score.shape == img.size[::-1]


def test_same_seed_same_data_any_workers(tmp_path):
    one = run('cub', tmp_path / 'a', workers=1)
    two = run('cub', tmp_path / 'b', workers=2)
    assert one['annotation_sha256'] == two['annotation_sha256']
    for rel in files_under(tmp_path / 'a' / 'CUB_200_2011' / 'images')[:4]:
        a = np.asarray(Image.open(tmp_path / 'a/CUB_200_2011/images' / rel))
        b = np.asarray(Image.open(tmp_path / 'b/CUB_200_2011/images' / rel))
        np.testing.assert_array_equal(a, b)
    other = run('cub', tmp_path / 'c', seed=1)
    assert other['annotation_sha256'] != one['annotation_sha256']


def test_imagenet_and_openimages_deterministic(tmp_path):
    for fmt in ('imagenet-loc', 'openimages-mask'):
        a = run(fmt, tmp_path / 'a')
        b = run(fmt, tmp_path / 'b')
        assert a['annotation_sha256'] == b['annotation_sha256']
        assert (
            run(fmt, tmp_path / 'c', seed=3)['annotation_sha256']
            != (a['annotation_sha256'])
        )


@pytest.mark.parametrize(
    ('fmt', 'kind'),
    [
        ('cub', 'mask_missing'),
        ('cub', 'bad_flag'),
        ('imagenet-loc', 'mask_missing'),
        ('openimages-mask', 'box_outside'),
        ('openimages-mask', 'class_mismatch'),
    ],
)
def test_unsupported_corruptions_are_refused(tmp_path, fmt, kind):
    with pytest.raises(ValueError, match=f'--corrupt {kind} is not'):
        run(fmt, tmp_path, corrupt=kind)


def test_corruption_records(tmp_path):
    record = run('imagenet-loc', tmp_path, corrupt='duplicate_id')[
        'corruption'
    ]
    ann = tmp_path / 'ILSVRC2012' / 'ILSVRC2012_list' / 'val_folder_new.txt'
    assert record['file'] == str(ann) and record['line'] == 2
    lines = ann.read_text().splitlines()
    assert lines[0] == lines[1]
    with pytest.raises(ValueError, match='num-classes >= 2'):
        generate('cub', tmp_path, 1, 2, 1, SIZE, corrupt='class_mismatch')


@pytest.mark.parametrize('fmt', ['cub', 'imagenet-loc', 'openimages-mask'])
def test_generation_rate_smoke(tmp_path, fmt):
    """Default size range (160-320), one process; the target (>= 2,000
    images/min on 2 cores) is far above this loose bound."""
    start = time.perf_counter()
    entry = generate(fmt, tmp_path, 4, 10, val_per_class=2)
    images = sum(entry['counts'].values())
    per_min = 60 * images / (time.perf_counter() - start)
    assert per_min > 300, f'{per_min:.0f} images/min'
