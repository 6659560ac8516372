"""SBIR pairs / triplets and PackPairInputs (datasets.md §4.9, §8 item 8)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from torch.utils.data import DataLoader

from shared.datasets.sbir import SANSBIRDataset
from shared.datasets.synthetic import generate
from shared.datasets.transforms.pack_pair_inputs import PackPairInputs
from shared.registry import DATASETS
from tests.conftest import REPO_ROOT

NUM_CLASSES, PER_CLASS = 3, 4
VIEW = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(type='Resize', scale=(24, 16), backend='pillow'),
]


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('sbir')
    generate(
        'sketch',
        out,
        NUM_CLASSES,
        PER_CLASS,
        val_per_class=1,
        size_range=(48, 64),
        seed=0,
    )
    return out


def _sbir(sketch_root, photo_root, **kw) -> SANSBIRDataset:
    return SANSBIRDataset(
        sketch_dataset=dict(
            type='SANTxtListDataset',
            data_root=str(sketch_root),
            ann_file='train.txt',
            check_path_class=True,
        ),
        photo_dataset=dict(
            type='SANTxtListDataset',
            data_root=str(photo_root),
            ann_file='train.txt',
        ),
        sketch_pipeline=VIEW,
        photo_pipeline=VIEW,
        pipeline=[dict(type='PackPairInputs')],
        **{'seed': 0, **kw},
    )


def _photo_class(sample) -> str:
    return Path(sample.photo_path).parent.name


def test_pair_parity_rule(data):
    ds = _sbir(data / 'Sketch', data / 'Photos')
    names = ds.metainfo['classes']
    assert len(ds) == NUM_CLASSES * PER_CLASS
    others = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for idx in range(len(ds)):
            out = ds[idx]
            sample = out['data_samples']
            label = int(sample.gt_label)
            assert len(out['inputs']) == 2
            assert sample.sample_idx == idx and sample.mode == 'pair'
            assert Path(sample.img_path).parent.name == names[label]
            assert _photo_class(sample) == names[sample.photo_label]
            if idx % 2 == 0:
                assert sample.photo_label == label
            else:
                assert sample.photo_label != label
                others.add((label, sample.photo_label))
    # Odd indices reach every other class (uniform draw, 3 classes).
    assert len(others) == NUM_CLASSES * (NUM_CLASSES - 1)


def test_triplet_labels(data):
    ds = _sbir(data / 'Sketch', data / 'Photos', mode='triplet')
    names = ds.metainfo['classes']
    for idx in range(len(ds)):
        out = ds[idx]
        sample = out['data_samples']
        label = int(sample.gt_label)
        assert len(out['inputs']) == 3
        assert sample.photo_label == label != sample.neg_label
        assert _photo_class(sample) == names[label]
        assert Path(sample.neg_path).parent.name == names[sample.neg_label]
    ds.set_mode('pair')
    assert len(ds[1]['inputs']) == 2
    with pytest.raises(ValueError, match='mode must be one of'):
        ds.set_mode('quadruplet')


def _copy_photos(data: Path, tmp_path: Path) -> Path:
    photos = tmp_path / 'Photos'
    photos.mkdir()
    for name in ('mapping.txt', 'train.txt'):
        shutil.copy(data / 'Photos' / name, photos / name)
    (photos / 'data').symlink_to(data / 'Photos' / 'data')
    return photos


def test_class_name_and_index_mismatch_raise(data, tmp_path):
    photos = _copy_photos(data, tmp_path)
    mapping = photos / 'mapping.txt'
    mapping.write_text('class_000\t0\nclass_one\t1\nclass_002\t2\n')
    with pytest.raises(ValueError, match='class names differ') as err:
        _sbir(data / 'Sketch', photos)
    assert "only sketches: ['class_001']" in str(err.value)
    assert "only photos: ['class_one']" in str(err.value)
    mapping.write_text('class_000\t0\nclass_002\t1\nclass_001\t2\n')
    with pytest.raises(ValueError, match="'class_001' has index 1 for"):
        _sbir(data / 'Sketch', photos)


def test_class_without_photos_raises(data, tmp_path):
    photos = _copy_photos(data, tmp_path)
    lines = (photos / 'train.txt').read_text().splitlines()
    (photos / 'train.txt').write_text(
        ''.join(f'{line}\n' for line in lines if not line.endswith('\t1'))
    )
    with pytest.raises(ValueError, match="no photo in .*'class_001'"):
        _sbir(data / 'Sketch', photos)


def _pairs(ds, workers: int) -> list[tuple]:
    loader = DataLoader(
        ds, batch_size=5, num_workers=workers, collate_fn=pseudo_collate
    )
    out = []
    for batch in loader:
        for sample in batch['data_samples']:
            out.append((sample.sample_idx, sample.photo_path, sample.neg_path))
    return out


def test_pairs_reproducible_across_workers_and_epochs(data):
    ds = _sbir(data / 'Sketch', data / 'Photos', mode='triplet', epoch=3)
    serial = _pairs(ds, 0)
    assert [p[0] for p in serial] == list(range(len(ds)))
    assert _pairs(ds, 2) == serial
    again = _sbir(data / 'Sketch', data / 'Photos', mode='triplet', epoch=3)
    assert [again.draw(i) for i in range(len(ds))] == [
        ds.draw(i) for i in range(len(ds))
    ]
    ds.set_epoch(4)
    assert _pairs(ds, 0) != serial
    other_seed = _sbir(data / 'Sketch', data / 'Photos', seed=1, epoch=3)
    assert [other_seed.draw(i) for i in range(len(ds))] != [
        again.draw(i) for i in range(len(ds))
    ]


def test_seed_defaults_to_mmengine_synced_seed(data):
    np.random.seed(123)
    a = _sbir(data / 'Sketch', data / 'Photos', seed=None)
    np.random.seed(123)
    b = _sbir(data / 'Sketch', data / 'Photos', seed=None)
    assert a.seed == b.seed
    assert [a.draw(i) for i in range(len(a))] == [
        b.draw(i) for i in range(len(b))
    ]


def test_view_pipeline_given_twice_raises(data):
    with pytest.raises(ValueError, match='either in sketch_dataset or'):
        SANSBIRDataset(
            sketch_dataset=dict(
                type='SANTxtListDataset',
                data_root=str(data / 'Sketch'),
                ann_file='train.txt',
                pipeline=VIEW,
            ),
            photo_dataset=dict(
                type='SANTxtListDataset',
                data_root=str(data / 'Photos'),
                ann_file='train.txt',
            ),
            sketch_pipeline=VIEW,
            seed=0,
        )


def test_inmemory_views(data):
    ds = SANSBIRDataset(
        sketch_dataset=dict(
            type='SANInMemoryDataset',
            data_root=str(data / 'Sketch'),
            ann_file='train_imgs.pt',
        ),
        photo_dataset=dict(
            type='SANInMemoryDataset',
            data_root=str(data / 'Photos'),
            ann_file='train_imgs.pt',
        ),
        sketch_pipeline=[dict(type='CenterCrop', crop_size=32)],
        photo_pipeline=[dict(type='CenterCrop', crop_size=32)],
        pipeline=[dict(type='PackPairInputs')],
        seed=0,
    )
    out = ds[2]
    assert [t.shape for t in out['inputs']] == [(3, 32, 32)] * 2
    sample = out['data_samples']
    photo = re.fullmatch(r'(.*)\[(\d+)\]', sample.photo_path)
    assert photo[1] == str(data / 'Photos' / 'train_imgs.pt')
    drawn = ds.draw(2)
    assert int(photo[2]) == drawn['photo_index']
    assert (
        ds.photo_dataset.get_data_info(drawn['photo_index'])['gt_label']
        == sample.photo_label
        == int(sample.gt_label)
    )


def test_pack_pair_inputs_fields_and_errors():
    rng = np.random.default_rng(0)

    def view(h, w):
        return dict(img=rng.integers(0, 255, (h, w, 3), dtype=np.uint8))

    results = dict(
        sketch=view(8, 6),
        photo=view(8, 6),
        negative=view(8, 6),
        gt_label=2,
        photo_label=2,
        neg_label=0,
        sample_idx=7,
        img_path='s.png',
    )
    out = PackPairInputs()(dict(results))
    sketch, photo, negative = out['inputs']
    assert sketch.dtype == torch.uint8 and sketch.shape == (3, 8, 6)
    assert torch.equal(
        photo, torch.from_numpy(results['photo']['img']).permute(2, 0, 1)
    )
    sample = out['data_samples']
    assert sample.gt_label.tolist() == [2]
    assert (sample.photo_label, sample.neg_label) == (2, 0)
    assert sample.sample_idx == 7 and sample.img_path == 's.png'
    del results['negative']
    assert len(PackPairInputs()(dict(results))['inputs']) == 2
    with pytest.raises(KeyError, match="view 'photo' is missing"):
        PackPairInputs()({k: v for k, v in results.items() if k != 'photo'})
    with pytest.raises(KeyError, match="view 'photo' has no 'img'"):
        PackPairInputs()({**results, 'photo': {'img_path': 'p.jpg'}})
    with pytest.raises(ValueError, match='at least two view keys'):
        PackPairInputs(view_keys=('sketch',))


def test_sbir_config_builds_on_synthetic_data(data, tmp_path, monkeypatch):
    for real, synthetic in (
        ('Sketch_EITZ', 'Sketch'),
        ('flickr25k_photos', 'Photos'),
        ('Flickr15k', 'Flickr15k'),
    ):
        (tmp_path / real).symlink_to(data / synthetic)
    monkeypatch.setenv('DATA_ROOT', str(tmp_path))
    cfg = Config.fromfile(
        str(REPO_ROOT / 'configs/_base_/datasets/sbir_flickr.py')
    )
    assert cfg.train_dataloader['persistent_workers'] is False
    train = DATASETS.build(cfg.train_dataloader['dataset'])
    out = train[1]
    assert [t.shape for t in out['inputs']] == [(3, 224, 224)] * 2
    assert out['data_samples'].photo_label != int(out['data_samples'].gt_label)
    for key in (
        'val_dataloader',
        'val_gallery_dataloader',
        'test_dataloader',
        'test_gallery_dataloader',
    ):
        ds = DATASETS.build(cfg[key]['dataset'])
        assert ds[0]['inputs'].shape == (3, 224, 224)
