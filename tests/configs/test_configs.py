"""Every config outside _base_: loads, builds, runs a loss-mode forward."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from shared.registry import DATASETS, MODELS
from shared.utils.entrypoint import load_config
from tests.conftest import REPO_ROOT

CONFIGS = sorted(
    p for p in (REPO_ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts
)
#: {algorithm}_{backbone}_{N}xb{B}[-{schedule}]_{dataset}
NAME = re.compile(
    r'^(?:(?P<algo>[a-z0-9.+]+(?:-[a-z0-9.+]+)*)_)?'
    r'(?P<backbone>[a-z0-9.]+(?:-[a-z0-9.]+)*)_'
    r'(?P<n>\d+)xb(?P<b>\d+)(?:-[a-z0-9.]+)*_'
    r'(?P<data>[a-z0-9.]+(?:-[a-z0-9.]+)*)$'
)
#: Configs whose data the synthetic generator writes (datasets build).
SYNTHETIC = ('synthetic',)


def ids(paths):
    return [str(p.relative_to(REPO_ROOT / 'configs')) for p in paths]


def null_pretrained(node):
    """Drop pretrained paths so the model builds without weight files."""
    if isinstance(node, dict):
        for key in list(node):
            named = key in ('pretrained', 'checkpoint') or key.endswith(
                '_checkpoint'
            )
            if named and isinstance(node[key], str):
                node[key] = None
            elif (
                key == 'init_cfg'
                and isinstance(node[key], dict)
                and node[key].get('type') == 'Pretrained'
            ):
                node[key] = None
            else:
                null_pretrained(node[key])
    elif isinstance(node, list):
        for item in node:
            null_pretrained(item)


@pytest.fixture(autouse=True)
def data_root(synthetic_root, monkeypatch):
    monkeypatch.setenv('DATA_ROOT', str(synthetic_root))


def test_there_are_configs():
    assert CONFIGS, 'no config outside configs/_base_'


@pytest.mark.parametrize('path', CONFIGS, ids=ids(CONFIGS))
def test_config_loads_and_is_well_formed(path: Path, tmp_path):
    cfg = load_config(str(path))
    assert cfg.default_scope == 'mmpretrain'
    custom = cfg.custom_imports
    assert custom.allow_failed_imports is False
    project = path.relative_to(REPO_ROOT / 'configs').parts[0]
    if project != 'demo':
        assert list(custom.imports) == [f'projects.{project}']
    match = NAME.match(path.stem)
    assert match, f'{path.name} does not follow the naming pattern'
    n, b = int(match['n']), int(match['b'])
    if 'train_dataloader' in cfg:
        assert cfg.train_dataloader.batch_size == b
        assert cfg.auto_scale_lr.base_batch_size == n * b
    dumped = tmp_path / path.name
    cfg.dump(str(dumped))
    again = Config.fromfile(str(dumped))
    assert again.model == cfg.model


@pytest.mark.parametrize('path', CONFIGS, ids=ids(CONFIGS))
def test_model_builds_and_forwards(path: Path):
    cfg = load_config(str(path))
    model_cfg = cfg.model.to_dict()
    null_pretrained(model_cfg)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.train()
    if not any(s in path.stem for s in SYNTHETIC):
        return
    pipeline_dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = pseudo_collate([pipeline_dataset[0], pipeline_dataset[1]])
    data = model.data_preprocessor(batch, training=True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()


@pytest.mark.parametrize(
    'path',
    [p for p in CONFIGS if any(s in p.stem for s in SYNTHETIC)],
    ids=ids([p for p in CONFIGS if any(s in p.stem for s in SYNTHETIC)]),
)
def test_datasets_build_on_synthetic_data(path: Path):
    cfg = load_config(str(path))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = DATASETS.build(cfg[key].dataset)
        assert len(dataset) > 0
        sample = dataset[0]
        assert sample['inputs'].ndim == 3
        assert sample['data_samples'].gt_label is not None
