"""GOLANG end to end on synthetic COCO (golang_ssl.md §11 "Algorithm",
"DDP smoke"; issue: pre-train, export, probe).

A tiny version of the recipe config (ResNet-50 at 64/32 px, small heads,
queue and prototype freezing active, fp32) pre-trains with
``tools/train.py`` on the synthetic COCO train2014 folder, its backbone is
exported with ``tools/model_converters/golang_to_backbone.py``, and the
COCO probe config (shrunk the same way) trains a linear multi-label head on
the frozen trunk and reaches an mAP above chance on synthetic val2014. Two
gloo processes run the same pre-training through ``tools/dist_train.sh``.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.utils.checkpoint import safe_load
from tests.conftest import REPO_ROOT, run_tool

pytestmark = pytest.mark.slow

PRETRAIN = REPO_ROOT / (
    'configs/golang_ssl/golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'
)
PROBE = REPO_ROOT / (
    'configs/golang_ssl/benchmarks/'
    'linear-probe_golang-resnet50_1xb128-coslr-100e_coco.py'
)
NUM_CLASSES = 6

TINY_PRETRAIN = """
_base_ = ['{base}']
num_crops = [2, 6]
view_tail = [
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(pipeline=[
        dict(type='LoadImageFromFile', imdecode_backend='pillow',
             color_type='color_ignore_orientation'),
        dict(type='MultiView', num_views=num_crops, transforms=[
            [dict(type='RandomResizedCrop', scale=64,
                  crop_ratio_range=(0.14, 1.0))] + view_tail,
            [dict(type='RandomResizedCrop', scale=32,
                  crop_ratio_range=(0.05, 0.14))] + view_tail,
        ]),
        dict(type='PackInputs'),
    ]),
)
model = dict(
    backbone=dict(norm_cfg=dict(type='BN')),
    neck=dict(hid_channels=64, feat_dim=16, local_feat_dim=16,
              norm_cfg=dict(type='BN1d')),
    head=dict(loss=dict(feat_dim=16, local_feat_dim=16, num_prototypes=20,
                        num_local_prototypes=20)),
)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='GAELLELARC', lr=0.1))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=2, eta_min=6e-4,
                        by_epoch=True, begin=0, end=2,
                        convert_to_iter_based=True)]
train_cfg = dict(max_epochs=2)
custom_hooks = [dict(type='GAELLEHook', epoch_queue_starts={queue_epoch},
                     queue_length={queue_length},
                     frozen_layers_cfg=dict(prototypes=3), feat_dim=16,
                     crops_for_assign=[0, 1])]
default_hooks = dict(logger=dict(interval=1))
env_cfg = dict(cudnn_benchmark=False)
"""

TINY_PROBE = """
_base_ = ['{base}']
model = dict(
    backbone=dict(init_cfg=dict(checkpoint='{backbone}')),
    head=dict(num_classes={num_classes}),
)
data_preprocessor = dict(num_classes={num_classes})
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow',
         color_type='color_ignore_orientation'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.5, 1.0),
         backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow',
         color_type='color_ignore_orientation'),
    dict(type='ResizeEdge', scale=72, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=8, num_workers=0,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=16, num_workers=0,
                      dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=0.5))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=8, eta_min=0.0,
                        by_epoch=True, begin=0, end=8)]
train_cfg = dict(max_epochs=8, val_interval=4)
default_hooks = dict(logger=dict(interval=5))
"""


def free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('golang_data')
    run_tool(
        [
            'tools/dataset_converters/make_synthetic.py',
            '--format',
            'coco',
            '--out',
            str(root),
            '--num-classes',
            str(NUM_CLASSES),
            '--per-class',
            '6',
            '--size-range',
            '64',
            '96',
            '--seed',
            '0',
        ]
    )
    return root


def env(root: Path) -> dict:
    return {
        'DATA_ROOT': str(root),
        'CUDA_VISIBLE_DEVICES': '',
        'OMP_NUM_THREADS': '1',
        'PORT': free_port(),
    }


def write_config(path: Path, template: str, **values) -> str:
    path.write_text(template.format(**values))
    return str(path)


def logged(log: str, key: str) -> list[float]:
    return [float(v) for v in re.findall(rf'\b{key}: ([-0-9.e+]+)', log)]


@pytest.fixture(scope='module')
def pretrained(coco_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('golang_pretrain')
    config = write_config(
        work / 'tiny_pretrain.py',
        TINY_PRETRAIN,
        base=PRETRAIN,
        queue_epoch=1,
        queue_length=8,
    )
    proc = run_tool(
        ['tools/train.py', config, '--work-dir', str(work / 'run')],
        env=env(coco_root),
    )
    return work / 'run', proc.output


def test_pretraining_logs_finite_terms_and_uses_the_queue(
    pretrained, coco_root
):
    work, log = pretrained
    assert (work / 'epoch_2.pth').is_file()
    for key in ('loss', 'glb', 'alg', 'l2g'):
        values = logged(log, key)
        assert values, f'{key} not logged'
        assert np.isfinite(values).all()
    # The queue (8 rows = 2 batches of 4) is created at epoch 1 and first
    # used 2 fills later; drop_last gives images // 4 iterations an epoch.
    per_epoch = len(list((coco_root / 'coco/train2014').iterdir())) // 4
    q_used = logged(log, 'q_used')
    assert q_used == [0.0] * (per_epoch + 2) + [1.0] * (per_epoch - 2)
    assert (work / 'queue0.pth').is_file()
    state = safe_load(str(work / 'queue0.pth'))
    assert state['epoch'] == 2
    assert tuple(state['queue'].shape) == (2, 8, 16)


def test_export_and_probe_above_chance(pretrained, coco_root, tmp_path):
    work, _ = pretrained
    backbone = tmp_path / 'backbone.pth'
    run_tool(
        [
            'tools/model_converters/golang_to_backbone.py',
            str(work / 'epoch_2.pth'),
            str(backbone),
        ]
    )
    state = safe_load(str(backbone))
    ckpt = safe_load(str(work / 'epoch_2.pth'))['state_dict']
    assert set(state) == {
        k[len('backbone.') :] for k in ckpt if k.startswith('backbone.')
    }
    for key, value in state.items():
        assert torch.equal(value, ckpt[f'backbone.{key}'].float()), key

    config = write_config(
        tmp_path / 'tiny_probe.py',
        TINY_PROBE,
        base=PROBE,
        backbone=backbone,
        num_classes=NUM_CLASSES,
    )
    probe_dir = tmp_path / 'probe'
    run_tool(
        ['tools/train.py', config, '--work-dir', str(probe_dir)],
        env=env(coco_root),
    )
    summary = json.loads((probe_dir / 'probe_summary.json').read_text())
    last = summary['last_mAP']
    assert summary['last_epoch'] == 8
    assert summary['best_label'] == 'selected on test'
    # Chance: the AP of uninformative scores is the positive rate per class.
    val = json.loads(
        (coco_root / 'coco/annotations/instances_val2014.json').read_text()
    )
    cats = [c['id'] for c in val['categories']]
    positives = {c: set() for c in cats}
    for ann in val['annotations']:
        positives[ann['category_id']].add(ann['image_id'])
    chance = 100 * np.mean(
        [len(positives[c]) / len(val['images']) for c in cats]
    )
    assert last > chance + 10, (last, chance)


def test_two_process_gloo_pretraining(coco_root, tmp_path):
    config = write_config(
        tmp_path / 'tiny_ddp.py',
        TINY_PRETRAIN,
        base=PRETRAIN,
        queue_epoch=0,
        queue_length=8,
    )
    work = tmp_path / 'ddp'
    proc = run_tool(
        [
            'tools/dist_train.sh',
            config,
            '2',
            '--work-dir',
            str(work),
            '--cfg-options',
            'train_cfg.max_epochs=1',
            'param_scheduler.0.T_max=1',
            'param_scheduler.0.end=1',
        ],
        env=env(coco_root),
    )
    assert (work / 'epoch_1.pth').is_file()
    for rank in (0, 1):
        state = safe_load(str(work / f'queue{rank}.pth'))
        assert state['world_size'] == 2
        assert tuple(state['queue'].shape) == (2, 4, 16)  # L / W rows
    assert np.isfinite(logged(proc.output, 'loss')).all()
