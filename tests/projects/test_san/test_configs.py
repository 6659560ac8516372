"""The SAN ImageNet configs (san.md §3.1, §6 items 18-19).

Every ``san*_8xb32_in1k.py`` config's effective recipe (model, loss,
optimizer, per-epoch cosine schedule against its closed form in a real
runner, pipelines on a real image, preprocessor, evaluator, checkpointing),
their models' parameter counts against the README, and a CPU forward of
SAN10 (both types) and ResNet-26 at 128², batch 2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from PIL import Image

# The model modules register their names (projects/san/__init__.py imports
# them once the plugin is complete).
import projects.san.models.san  # noqa: F401
import projects.san.models.san_resnet  # noqa: F401
import projects.san.models.smooth_ce_loss  # noqa: F401
from shared.registry import MODELS
from shared.utils.entrypoint import load_config
from tests.conftest import REPO_ROOT

CONFIG_DIR = REPO_ROOT / 'configs/san'
SAN_LAYERS = {10: (2, 1, 2, 4, 1), 15: (3, 2, 3, 5, 2), 19: (3, 3, 4, 6, 3)}
#: config stem -> (backbone, README parameters in millions).
EXPECTED = {
    **{
        f'san{d}-{t}_8xb32_in1k': (
            dict(
                type='SAN',
                sa_type=t,
                layers=layers,
                kernels=(3, 7, 7, 7, 7),
            ),
            readme,
        )
        for d, layers in SAN_LAYERS.items()
        for t, readme in zip(
            ('pairwise', 'patchwise'),
            {10: (10.5, 11.8), 15: (14.1, 16.2), 19: (17.6, 20.5)}[d],
        )
    },
    **{
        f'san-resnet{d}_8xb32_in1k': (dict(type='SANResNet', depth=d), m)
        for d, m in ((26, 13.7), (38, 19.6), (50, 25.6))
    },
}
STEMS = sorted(EXPECTED)

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
LOAD = dict(
    type='LoadImageFromFile',
    imdecode_backend='pillow',
    color_type='color_ignore_orientation',
)
TRAIN_PIPELINE = [
    LOAD,
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
TEST_PIPELINE = [
    LOAD,
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]


def load(stem):
    return load_config(str(CONFIG_DIR / f'{stem}.py'))


def plain(node):
    """ConfigDict/tuple tree -> dicts and lists, for equality checks."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def quiet_init(model):
    """``init_weights`` without mmengine's per-parameter INFO dump."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def test_the_in1k_configs_exist():
    found = {p.stem for p in CONFIG_DIR.glob('*_8xb32_in1k.py')}
    assert found == set(EXPECTED)


@pytest.mark.parametrize('stem', STEMS)
def test_recipe_values(stem):
    cfg = load(stem)
    assert cfg.default_scope == 'mmpretrain'
    assert plain(cfg.custom_imports) == dict(
        imports=['projects.san'], allow_failed_imports=False
    )

    backbone, _ = EXPECTED[stem]
    model = plain(cfg.model)
    assert model == dict(
        type='ImageClassifier',
        data_preprocessor=dict(
            num_classes=1000, mean=MEAN, std=STD, to_rgb=True
        ),
        backbone=plain(backbone),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=1000,
            in_channels=2048,
            loss=dict(type='SANSmoothCELoss', eps=0.1),
            topk=[1, 5],
            init_cfg=None,
        ),
    )
    assert plain(cfg.data_preprocessor) == model['data_preprocessor']

    assert plain(cfg.optim_wrapper) == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4),
    )
    assert plain(cfg.param_scheduler) == dict(
        type='CosineAnnealingLR',
        T_max=100,
        eta_min=0,
        by_epoch=True,
        convert_to_iter_based=False,
    )
    assert plain(cfg.train_cfg) == dict(
        by_epoch=True, max_epochs=100, val_interval=1
    )
    assert plain(cfg.auto_scale_lr) == dict(base_batch_size=256, enable=False)

    train = cfg.train_dataloader
    assert train.batch_size == 32
    assert train.sampler.shuffle is True
    assert (train.dataset.type, train.dataset.split) == ('ImageNet', 'train')
    assert plain(train.dataset.pipeline) == plain(TRAIN_PIPELINE)
    for key in ('val', 'test'):
        loader = cfg[f'{key}_dataloader']
        assert loader.batch_size == 16
        assert loader.sampler.shuffle is False
        assert (loader.dataset.type, loader.dataset.split) == (
            'ImageNet',
            'val',
        )
        assert plain(loader.dataset.pipeline) == plain(TEST_PIPELINE)
        assert plain(cfg[f'{key}_evaluator']) == dict(
            type='Accuracy', topk=[1, 5]
        )

    checkpoint = plain(cfg.default_hooks.checkpoint)
    assert checkpoint == dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=2, save_best=None
    )
    assert cfg.get('custom_hooks') in (None, [])
    assert 'batch_augments' not in model['data_preprocessor']


class _Toy(BaseModel):
    """y = w·x with a BN, enough for an optimizer and a runner."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)
        self.bn = torch.nn.BatchNorm1d(1)

    def forward(self, inputs, data_samples=None, mode='loss'):
        out = self.bn(self.lin(torch.stack(inputs)))
        return dict(loss=out.pow(2).mean())


class _LrRecorder(Hook):
    def __init__(self):
        self.lrs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        group = runner.optim_wrapper.optimizer.param_groups[0]
        self.lrs.append((runner.epoch, group['lr']))


def test_lr_is_closed_form_per_epoch_in_a_runner(tmp_path):
    """lr_e = 0.05 (1 + cos(πe/100)), constant over an epoch's iterations."""
    cfg = load('san10-pairwise_8xb32_in1k')
    recorder = _LrRecorder()
    runner = Runner(
        model=_Toy(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=[dict(inputs=torch.randn(2)) for _ in range(8)],
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            collate_fn=dict(type='pseudo_collate'),
        ),
        optim_wrapper=cfg.optim_wrapper.to_dict(),
        param_scheduler=cfg.param_scheduler.to_dict(),
        train_cfg=dict(by_epoch=True, max_epochs=3),
        default_hooks=dict(
            param_scheduler=dict(type='ParamSchedulerHook'),
            checkpoint=None,
            logger=None,
        ),
        custom_hooks=[recorder],
        default_scope='mmpretrain',
    )
    runner.train()
    assert len(recorder.lrs) == 3 * 4
    for epoch, lr in recorder.lrs:
        expected = 0.05 * (1 + math.cos(math.pi * epoch / 100))
        assert lr == pytest.approx(expected, rel=1e-12)
    assert [e for e, _ in recorder.lrs] == [0] * 4 + [1] * 4 + [2] * 4


def test_lr_closed_form_over_100_epochs():
    from mmengine.optim.scheduler import CosineAnnealingLR

    cfg = load('san-resnet26_8xb32_in1k')
    optim = build_optim_wrapper(_Toy(), cfg.optim_wrapper.to_dict())
    sched_cfg = cfg.param_scheduler.to_dict()
    assert sched_cfg.pop('type') == 'CosineAnnealingLR'
    assert sched_cfg.pop('convert_to_iter_based') is False
    sched = CosineAnnealingLR(optim, **sched_cfg)
    for epoch in range(100):
        lr = optim.optimizer.param_groups[0]['lr']
        expected = 0.05 * (1 + math.cos(math.pi * epoch / 100))
        assert lr == pytest.approx(expected, rel=1e-9, abs=1e-15), epoch
        optim.step()  # no gradients: a no-op, keeps torch's order
        sched.step()


def test_sgd_decays_every_parameter():
    cfg = load('san-resnet26_8xb32_in1k')
    model = MODELS.build(cfg.model.to_dict())
    optim = build_optim_wrapper(model, cfg.optim_wrapper.to_dict()).optimizer
    assert isinstance(optim, torch.optim.SGD)
    (group,) = optim.param_groups
    assert len(group['params']) == len(list(model.parameters()))
    assert (group['lr'], group['momentum'], group['weight_decay']) == (
        0.1,
        0.9,
        1e-4,
    )
    assert group['nesterov'] is False
    assert group['dampening'] == 0


def test_pipelines_on_a_real_image(tmp_path):
    path = tmp_path / 'img.jpg'
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 420, 3), np.uint8)).save(path)
    cfg = load('san10-patchwise_8xb32_in1k')
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope('mmpretrain'):
        train = Compose(cfg.train_dataloader.dataset.pipeline)
        test = Compose(cfg.test_dataloader.dataset.pipeline)
        a = train(dict(img_path=str(path), gt_label=3))
        b = test(dict(img_path=str(path), gt_label=3))
    assert a['inputs'].shape == b['inputs'].shape == (3, 224, 224)
    assert a['inputs'].dtype == torch.uint8
    # Test: short side 300 -> 256 (420 -> 358), then the central 224².
    ref = Image.open(path).convert('RGB').resize((358, 256), Image.BILINEAR)
    ref = np.asarray(ref)[16:240, 67:291]
    # PackInputs stores BGR (to_rgb in the preprocessor flips it back).
    got = b['inputs'].permute(1, 2, 0).numpy()[..., ::-1]
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize('stem', STEMS)
def test_model_builds_with_readme_parameter_count(stem):
    model = MODELS.build(load(stem).model.to_dict())
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6, 1) == EXPECTED[stem][1], count


@pytest.mark.parametrize(
    'stem',
    [
        'san10-pairwise_8xb32_in1k',
        'san10-patchwise_8xb32_in1k',
        'san-resnet26_8xb32_in1k',
    ],
)
def test_cpu_forward_128px(stem):
    torch.manual_seed(0)
    cfg = load(stem)
    model = MODELS.build(cfg.model.to_dict())
    quiet_init(model)
    model.train()
    batch = pseudo_collate(
        [
            dict(
                inputs=torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8),
                data_samples=DataSample().set_gt_label(label),
            )
            for label in (5, 999)
        ]
    )
    data = model.data_preprocessor(batch, training=True)
    assert data['inputs'].shape == (2, 3, 128, 128)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss'}
    assert torch.isfinite(losses['loss'])
    # A fresh 1000-way head starts near the smoothed-CE of a uniform
    # prediction, log(1000) (nats).
    assert losses['loss'].item() == pytest.approx(math.log(1000), rel=0.5)
    losses['loss'].backward()
    model.eval()
    with torch.no_grad():
        logits = model(data['inputs'], mode='tensor')
    assert logits.shape == (2, 1000)
