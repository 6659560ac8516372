"""The WSOL and ImageNet dataset bases in configs/_base_/datasets/.

Each loads with DATA_ROOT pointing at synthetic data, builds every
dataloader's dataset (pipelines are the colleague's transforms, so they
are replaced by [] here and checked by name), and follows datasets.md §3.3
and §5.
"""

from __future__ import annotations

import copy

import pytest
from mmengine.config import Config

import shared.datasets.wsol  # noqa: F401 - registers the adapters
from shared.datasets.synthetic import generate
from shared.registry import DATASETS
from tests.conftest import REPO_ROOT

BASES = REPO_ROOT / 'configs' / '_base_' / 'datasets'
LOAD = dict(
    type='LoadImageFromFile',
    imdecode_backend='pillow',
    color_type='color_ignore_orientation',
)
LOC_TRAIN = [
    'LoadImageFromFile',
    'LoadLocAnnotations',
    'LocResize',
    'LocRandomCrop',
    'LocRandomFlip',
    'PackLocInputs',
]
LOC_TEST = ['LoadImageFromFile', 'LoadLocAnnotations', 'LocResize',
            'PackLocInputs']  # fmt: skip
#: base -> (dataset types of train/val/test, sizes of train/val/test)
EXPECTED = {
    'cub_loc': (('CUBLoc',) * 3, (8, 4, 4), 'CUB_200_2011'),
    'cub_wsolmeta': (('WSOLMetaDataset',) * 3, (8, 4, 4), 'wsol/dataset/CUB'),
    'ilsvrc_loc': (
        ('ImageNet', 'ImageNetLoc', 'ImageNetLoc'),
        (8, 4, 4),
        'ILSVRC2012',
    ),  # fmt: skip
    'openimages_mask': (
        ('WSOLMetaDataset',) * 3,
        (8, 4, 4),
        'wsol/dataset/OpenImages',
    ),  # fmt: skip
    'imagenet': (('ImageNet',) * 3, (8, 4, 4), 'ILSVRC2012'),
}
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    out = tmp_path_factory.mktemp('data')
    for fmt in ('cub', 'imagenet-loc', 'openimages-mask'):
        generate(fmt, out, 2, 4, 2, (48, 64), seed=0)
    return out


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_base_builds_on_synthetic_data(name, data_root, monkeypatch):
    monkeypatch.setenv('DATA_ROOT', str(data_root))
    cfg = Config.fromfile(str(BASES / f'{name}.py'))
    types, sizes, folder = EXPECTED[name]
    assert cfg.data_root == f'{data_root}/{folder}/'
    assert cfg.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert cfg.data_preprocessor.std == [58.395, 57.12, 57.375]
    for loader, type_, size in zip(LOADERS, types, sizes):
        dl = cfg[loader]
        assert dl.batch_size == 32 and dl.num_workers == 8
        assert dl.sampler.type == 'DefaultSampler'
        assert dl.sampler.shuffle == (loader == 'train_dataloader')
        pipeline = dl.dataset.pipeline
        assert dict(pipeline[0]) == LOAD
        names = [t.type for t in pipeline]
        if name == 'imagenet':
            assert names[-1] == 'PackInputs'
            assert all(t.get('backend', 'pillow') == 'pillow'
                       for t in pipeline)  # fmt: skip
        elif loader == 'train_dataloader':
            assert names == LOC_TRAIN
            assert pipeline[2].scale == (256, 256)
            assert pipeline[3].crop_size == 224 and pipeline[4].prob == 0.5
        else:
            assert names == LOC_TEST and pipeline[2].scale == (224, 224)
        spec = copy.deepcopy(dl.dataset)
        spec.pipeline = []
        spec.serialize_data = False  # its gc.collect costs 0.2 s
        dataset = DATASETS.build(spec)
        assert type(dataset).__name__ == type_
        assert len(dataset) == size, loader
    if 'metadata_root' in cfg:
        assert cfg.metadata_root.startswith(f'{data_root}/wsol/metadata/')
