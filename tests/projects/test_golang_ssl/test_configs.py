"""The GOLANG configs (golang_ssl.md §3, §5, §7, §11 "Configs").

The recipe values of the pre-training and probe configs, each ablation's
difference from its base (only its documented keys), the cosine schedule
against its closed form, the multi-crop pipeline on a real image, and the
pinned parameter counts of the ResNet-50 GAELLE and SwAV models.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import CosineAnnealingLR
from mmengine.registry import TRANSFORMS

import projects.golang_ssl  # noqa: F401
from shared.registry import MODELS
from shared.utils.entrypoint import load_config
from tests.conftest import REPO_ROOT

CONFIG_DIR = REPO_ROOT / 'configs/golang_ssl'
STEM = 'golang_resnet50_2xb64-mcrop-coslr-400e'
BASE = CONFIG_DIR / f'{STEM}_coco.py'
SWAV = CONFIG_DIR / 'swav_resnet50_2xb64-mcrop-coslr-400e_coco.py'
PROBE_COCO = (
    CONFIG_DIR
    / 'benchmarks/linear-probe_golang-resnet50_1xb128-coslr-100e_coco.py'
)
PROBE_VOC = (
    CONFIG_DIR
    / 'benchmarks/linear-probe_golang-resnet50_1xb32-coslr-100e_voc.py'
)

#: trunk (ResNet-50 without fc) + g + h + 3 banks; SwAV: trunk + g + C_g.
TRUNK = 23_508_032
MLP = (2048 * 2048 + 2048) + 2 * 2048 + (2048 * 128 + 128)
BANK = 3000 * 128
GAELLE_PARAMS = 33_585_472
SWAV_PARAMS = 28_354_752


def flatten(node, prefix=''):
    """Dotted key -> leaf value of a nested config (lists kept whole)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f'{prefix}{key}.'))
        return out
    return {prefix[:-1]: node}


def config_diff(path, base=BASE):
    a = flatten(Config.fromfile(str(base)).to_dict())
    b = flatten(Config.fromfile(str(path)).to_dict())
    return {
        k for k in set(a) | set(b) if k not in a or k not in b or a[k] != b[k]
    }


@pytest.mark.parametrize(
    'name, keys',
    [
        (
            f'{STEM}-train2017_coco.py',
            {'train_dataloader.dataset.data_prefix'},
        ),
        (
            'swav_resnet50_2xb64-mcrop-coslr-400e_coco.py',
            {
                'model.neck.with_local',
                'model.head.loss.with_local',
                'model.head.loss.with_l2g',
            },
        ),
        (f'{STEM}-l2g-grad_coco.py', {'model.head.loss.l2g_stop_grad'}),
        (f'{STEM}-g8_coco.py', {'num_groups', 'model.neck.num_groups'}),
        (f'{STEM}-noshuffle_coco.py', {'model.head.loss.local_shuffle'}),
        (f'{STEM}-nol2g_coco.py', {'model.head.loss.with_l2g'}),
        (
            f'{STEM}-lw-ssprl_coco.py',
            {
                'model.head.loss.loss_weights',
                'model.head.loss.loss_weights.glb',
                'model.head.loss.loss_weights.alg',
                'model.head.loss.loss_weights.l2g',
            },
        ),
        (f'{STEM}-flatbn_coco.py', {'model.neck.position_bn'}),
        (f'{STEM}-localq_coco.py', {'custom_hooks'}),
    ],
)
def test_each_ablation_changes_only_its_documented_keys(name, keys):
    assert config_diff(CONFIG_DIR / name) == keys


def test_ablation_values():
    lw = Config.fromfile(str(CONFIG_DIR / f'{STEM}-lw-ssprl_coco.py'))
    assert lw.model.head.loss.loss_weights == dict(glb=1.0, alg=0.25, l2g=0.25)
    localq = Config.fromfile(str(CONFIG_DIR / f'{STEM}-localq_coco.py'))
    hook = localq.custom_hooks[0]
    base_hook = Config.fromfile(str(BASE)).custom_hooks[0]
    assert {k for k in hook if hook[k] != base_hook[k]} == {
        'local_queue_length'
    }
    # a multiple of M * B * W = 32 * 64 * 2
    assert hook.local_queue_length % (32 * 64 * 2) == 0
    g8 = Config.fromfile(str(CONFIG_DIR / f'{STEM}-g8_coco.py'))
    assert g8.model.neck.feat_dim // g8.model.neck.num_groups == 16


def test_pretraining_recipe():
    cfg = Config.fromfile(str(BASE))
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports.imports == ['projects.golang_ssl']
    loader = cfg.train_dataloader
    assert (loader.batch_size, loader.num_workers, loader.drop_last) == (
        64,
        10,
        True,
    )
    assert loader.sampler == dict(type='DefaultSampler', shuffle=True)
    assert loader.dataset.type == 'CustomDataset'
    assert loader.dataset.with_label is False
    assert loader.dataset.data_prefix == 'train2014'
    pre = cfg.model.data_preprocessor
    assert pre.std == [58.14, 57.12, 57.375]
    assert np.allclose(np.array(pre.std) / 255, (0.228, 0.224, 0.225))
    bb = cfg.model.backbone
    assert (bb.depth, bb.out_indices, bb.zero_init_residual) == (
        50,
        (3,),
        False,
    )
    assert bb.norm_cfg.type == 'SyncBN'
    loss = cfg.model.head.loss
    assert (loss.num_prototypes, loss.num_local_prototypes) == (3000, 3000)
    assert (loss.temperature, loss.epsilon, loss.sinkhorn_iterations) == (
        0.1,
        0.05,
        3,
    )
    assert loss.num_crops == [2, 6] and loss.crops_for_assign == [0, 1]
    assert loss.l2g_stop_grad is True and loss.loss_weights is None
    assert cfg.model.neck.num_groups == 4
    assert cfg.model.neck.position_bn == 'loop'
    optim = cfg.optim_wrapper
    assert optim.type == 'AmpOptimWrapper'
    assert (optim.dtype, optim.loss_scale) == ('float16', 'dynamic')
    assert optim.optimizer == dict(
        type='GAELLELARC',
        lr=0.6,
        momentum=0.9,
        weight_decay=1e-6,
        trust_coefficient=1e-3,
        eps=1e-8,
        clip=False,
    )
    assert cfg.train_cfg.max_epochs == 400
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=128)
    hook = cfg.custom_hooks[0]
    assert hook.type == 'GAELLEHook'
    assert (
        hook.epoch_queue_starts,
        hook.queue_length,
        hook.local_queue_length,
        hook.frozen_layers_cfg,
    ) == (7, 3840, 0, dict(prototypes=5005))
    assert cfg.model_wrapper_cfg.find_unused_parameters is True
    assert cfg.randomness.seed == 31
    assert cfg.randomness.diff_rank_seed is False
    assert cfg.env_cfg.cudnn_benchmark is True
    assert cfg.default_hooks.checkpoint.interval == 1
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 3
    assert cfg.default_hooks.logger.interval == 50


def test_multicrop_pipeline_order_and_shapes():
    cfg = Config.fromfile(str(BASE))
    multiview = cfg.train_dataloader.dataset.pipeline[1]
    assert multiview.type == 'MultiView'
    assert multiview.num_views == [2, 6]
    for view, size, ratio in zip(
        multiview.transforms, (224, 96), ((0.14, 1.0), (0.05, 0.14))
    ):
        assert [t['type'] for t in view] == [
            'RandomResizedCrop',
            'RandomFlip',
            'RandomApply',
            'RandomGrayscale',
            'GaussianBlur',
        ]
        crop = view[0]
        assert (crop['scale'], crop['crop_ratio_range']) == (size, ratio)
        assert (crop['backend'], crop['interpolation']) == (
            'pillow',
            'bilinear',
        )
        assert view[2]['prob'] == 0.8
        assert view[2]['transforms'][0] == dict(
            type='ColorJitter',
            brightness=0.8,
            contrast=0.8,
            saturation=0.8,
            hue=0.2,
        )
        assert view[3]['channel_weights'] == (0.114, 0.587, 0.2989)
        assert view[4]['magnitude_range'] == (0.1, 2.0)
        assert view[4]['magnitude_std'] == 'inf'
    transform = TRANSFORMS.build(multiview)
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8)
    out = transform(dict(img=img))
    shapes = [v.shape for v in out['img']]
    assert shapes == [(224, 224, 3)] * 2 + [(96, 96, 3)] * 6


def test_cosine_lr_matches_closed_form():
    """Per-iteration lr_t = 6e-4 + (0.6 - 6e-4)(1 + cos(pi t / T)) / 2."""
    cfg = Config.fromfile(str(BASE))
    iters_per_epoch = 646  # 82,783 // 128 with drop_last (COCO-2014)
    optim = build_optim_wrapper(
        torch.nn.Linear(1, 1),
        dict(optimizer=dict(type='SGD', lr=0.6, momentum=0.9)),
    )
    sched_cfg = dict(cfg.param_scheduler[0])
    assert sched_cfg.pop('type') == 'CosineAnnealingLR'
    assert sched_cfg.pop('convert_to_iter_based') is True
    sched = CosineAnnealingLR.build_iter_from_epoch(
        optim, **sched_cfg, epoch_length=iters_per_epoch
    )
    total = 400 * iters_per_epoch
    checked = 0
    for t in range(total):
        if t % 997 == 0 or t in (1, total - 1):
            lr = optim.optimizer.param_groups[0]['lr']
            expected = 6e-4 + 0.5 * (0.6 - 6e-4) * (
                1 + math.cos(math.pi * t / total)
            )
            assert lr == pytest.approx(expected, rel=1e-6, abs=1e-9), t
            checked += 1
        sched.step()
    assert checked > 250


def test_probe_configs():
    coco = load_config(str(PROBE_COCO))
    voc = load_config(str(PROBE_VOC))
    for cfg, classes, lr, batch in ((coco, 80, 0.1, 128), (voc, 20, 0.03, 32)):
        bb = cfg.model.backbone
        assert (bb.depth, bb.frozen_stages, bb.norm_cfg.type) == (
            50,
            4,
            'BN',
        )
        assert bb.init_cfg == dict(
            type='Pretrained', checkpoint=cfg.pretrained_backbone
        )
        assert cfg.model.head == dict(
            type='GAELLEMultiLabelLinearHead',
            num_classes=classes,
            in_channels=2048,
        )
        assert cfg.data_preprocessor.num_classes == classes
        assert cfg.optim_wrapper.optimizer == dict(
            type='SGD', lr=lr, momentum=0.9, weight_decay=1e-6, nesterov=False
        )
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=10)
        sched = cfg.param_scheduler[0]
        assert (sched.type, sched.T_max, sched.eta_min, sched.by_epoch) == (
            'CosineAnnealingLR',
            100,
            0.0,
            True,
        )
        assert 'convert_to_iter_based' not in sched  # stepped per epoch
        assert cfg.train_cfg.max_epochs == 100
        assert cfg.train_cfg.val_interval == 1
        assert cfg.randomness.seed == 777
        assert cfg.train_dataloader.batch_size == batch
        assert cfg.val_evaluator == dict(type='MultiLabelMAP')
        assert cfg.custom_hooks[0].type == 'GAELLEProbeHook'
    assert coco.val_dataloader.dataset.data_prefix == 'val2014'
    assert voc.train_dataloader.dataset.type == 'VOC'
    assert voc.train_dataloader.dataset.split == 'trainval'
    assert voc.val_dataloader.dataset.split == 'test'
    assert voc.train_dataloader.dataset.pipeline == (
        coco.train_dataloader.dataset.pipeline
    )


@pytest.fixture(scope='module')
def resnet50_models():
    def build(path):
        cfg = Config.fromfile(str(path))
        model = cfg.model.to_dict()
        model['backbone']['norm_cfg'] = dict(type='BN')
        model['neck']['norm_cfg'] = dict(type='BN1d')
        return MODELS.build(model)

    return build(BASE), build(SWAV)


def test_parameter_counts_are_pinned(resnet50_models):
    gaelle, swav = resnet50_models

    def count(module):
        return sum(p.numel() for p in module.parameters())

    assert count(gaelle.backbone) == TRUNK
    assert count(gaelle.neck.global_proj) == MLP
    assert count(gaelle) == GAELLE_PARAMS == TRUNK + 2 * MLP + 3 * BANK
    assert count(swav) == SWAV_PARAMS == TRUNK + MLP + BANK
    loss = gaelle.head.loss_module
    extra = (
        count(gaelle.neck.local_proj)
        + loss.local_prototypes.weight.numel()
        + loss.l2g_prototypes.weight.numel()
    )
    assert count(gaelle) - count(swav) == extra
    keys = set(gaelle.state_dict())
    assert {
        'head.loss_module.prototypes.weight',
        'head.loss_module.local_prototypes.weight',
        'head.loss_module.l2g_prototypes.weight',
        'neck.global_proj.0.weight',
        'neck.local_proj.3.bias',
    } <= keys


def test_metafile_parameters_equal_the_built_models():
    import yaml

    meta = yaml.safe_load(
        (REPO_ROOT / 'projects/golang_ssl/metafile.yml').read_text()
    )
    configs = {
        p.stem for p in CONFIG_DIR.rglob('*.py') if '_base_' not in p.parts
    }
    assert {m['Name'] for m in meta['Models']} == configs
    for entry in meta['Models']:
        cfg = Config.fromfile(str(REPO_ROOT / entry['Config']))
        model = cfg.model.to_dict()
        model['backbone']['norm_cfg'] = dict(type='BN')
        model['backbone'].pop('init_cfg', None)
        if model['type'] == 'GAELLE':
            model['neck']['norm_cfg'] = dict(type='BN1d')
        built = MODELS.build(model)
        count = sum(p.numel() for p in built.parameters())
        assert entry['Metadata']['Parameters'] == count, entry['Name']
