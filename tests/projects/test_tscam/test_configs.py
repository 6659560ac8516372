"""The TS-CAM configs: recipe as upstream executed it (tscam.md §4, §6, §10).

Optimizer groups, the per-epoch lr tables written out from upstream's
modulo rule, the pipelines on synthetic CUB, and the metafile's parameter
counts against the built models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mmengine.hooks import CheckpointHook
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, TRANSFORMS

import projects.tscam  # noqa: F401
from shared.evaluation.gt_boxes import protocol_gt_boxes
from shared.registry import DATASETS, MODELS
from shared.utils.entrypoint import load_config
from tests.conftest import REPO_ROOT

CONFIG_DIR = REPO_ROOT / 'configs/tscam'
CUB = CONFIG_DIR / 'tscam_deit-small_1xb128-60e_cub.py'
IN1K = CONFIG_DIR / 'tscam_deit-small_4xb64-20e_in1k.py'
CONFIGS = sorted(p for p in CONFIG_DIR.glob('*.py'))


def build_model(cfg):
    model_cfg = cfg.model.to_dict()
    model_cfg['backbone']['init_cfg'] = None
    return MODELS.build(model_cfg)


def micro(cfg):
    """The config's model with a micro arch (same parameter names)."""
    cfg.model.backbone.arch = dict(embed_dims=32, depth=2, num_heads=2)
    cfg.model.head.in_channels = 32
    return build_model(cfg)


def upstream_lr(base: float, steps: tuple[int, ...], epoch: int) -> float:
    """lr of 1-based ``epoch``: x0.1 at every epoch e <= epoch with
    e % s == 0 for some s in ``steps`` (upstream's adjust_learning_rate)."""
    drops = sum(
        1 for e in range(1, epoch + 1) if any(e % s == 0 for s in steps)
    )
    return base * 0.1**drops


@pytest.mark.parametrize(
    'path, base_lr, steps, epochs',
    [(CUB, 5e-5, (30,), 60), (IN1K, 5e-4, (10, 12), 20)],
    ids=['cub', 'in1k'],
)
def test_lr_per_epoch_equals_upstream_modulo_rule(
    path, base_lr, steps, epochs
):
    cfg = load_config(str(path))
    assert cfg.optim_wrapper.optimizer.lr == base_lr
    assert cfg.train_cfg.max_epochs == epochs
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=cfg.optim_wrapper.optimizer.lr)
    sched_cfg = dict(cfg.param_scheduler, optimizer=optimizer)
    scheduler = PARAM_SCHEDULERS.build(sched_cfg)
    lrs = []
    for _ in range(epochs):  # MMEngine steps the scheduler after each epoch
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    expected = [upstream_lr(base_lr, steps, e) for e in range(1, epochs + 1)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)
    # The table of tscam.md §4.
    if path == CUB:
        assert lrs[28] == base_lr and lrs[29] == pytest.approx(base_lr / 10)
        assert lrs[59] == pytest.approx(base_lr / 100)
    else:
        assert lrs[8] == base_lr and lrs[9] == pytest.approx(base_lr / 10)
        assert lrs[11] == pytest.approx(base_lr / 100)
        assert lrs[19] == pytest.approx(base_lr / 1000)


CONFORMER_CUB = CONFIG_DIR / 'tscam_conformer-small_1xb128-60e_cub.py'


@pytest.mark.parametrize(
    'path', [CUB, IN1K, CONFORMER_CUB], ids=['cub', 'in1k', 'conformer']
)
def test_weight_decay_per_parameter(path):
    cfg = load_config(str(path))
    if cfg.model.backbone.type == 'TSCAMDeiT':
        model = micro(cfg)
    else:  # BN weights, conv biases and backbone.cls_token
        cfg.model.backbone.init_cfg = None
        model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    optimizer = wrapper.optimizer
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults['betas'] == (0.9, 0.999)
    assert optimizer.defaults['eps'] == 1e-8
    decay_of = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            decay_of[id(p)] = group['weight_decay']
    names = dict(model.named_parameters())
    assert len(decay_of) == len(names)
    for name, p in names.items():
        # timm 0.3.2 create_optimizer: no decay for 1-D, .bias and the
        # no_weight_decay() names; nothing else is exempt.
        exempt = (
            p.ndim <= 1
            or name.endswith('.bias')
            or name.endswith(('pos_embed', 'cls_token'))
        )
        assert decay_of[id(p)] == (0.0 if exempt else 0.05), name
    assert decay_of[id(names['head.conv.weight'])] == 0.05
    assert decay_of[id(names['head.conv.bias'])] == 0.0


def test_recipe_fields():
    cub = load_config(str(CUB))
    assert cub.randomness.seed == 26
    assert cub.env_cfg.cudnn_benchmark is False
    assert cub.auto_scale_lr == dict(base_batch_size=128, enable=False)
    assert cub.train_cfg.val_interval == 1
    assert cub.default_hooks.checkpoint.interval == 1
    assert cub.default_hooks.checkpoint.save_best is None
    backbone = cub.model.backbone
    assert backbone.drop_path_rate == 0.1
    assert backbone.attn_reduce == 'sum' and backbone.attn_layers == 'all'
    assert backbone.init_cfg.checkpoint == cub.pretrained
    assert cub.model.head.loss == dict(
        type='CrossEntropyLoss', loss_weight=1.0
    )
    for path, tau in ((CUB, 0.1), (IN1K, 0.12)):
        cfg = load_config(str(path))
        loc, box = cfg.test_evaluator
        assert loc.type == 'LocAccuracyMetric' and loc.preset == 'tscam'
        assert loc.cam_threshold == tau and loc.prefix == 'tscam'
        assert box.type == 'MaxBoxAccMetric' and box.prefix == 'wsol'
        assert cfg.custom_hooks[0].cam_threshold == tau
    tiny = load_config(str(CONFIG_DIR / 'tscam_deit-tiny_4xb32-20e_in1k.py'))
    assert tiny.train_dataloader.batch_size == 32
    assert tiny.auto_scale_lr.base_batch_size == 128


def test_pipelines_on_synthetic_cub(synthetic_root, monkeypatch):
    monkeypatch.setenv('DATA_ROOT', str(synthetic_root / 'demo'))
    cfg = load_config(str(CUB))
    train = DATASETS.build(cfg.train_dataloader.dataset)
    test = DATASETS.build(cfg.test_dataloader.dataset)
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        steps = [TRANSFORMS.build(t) for t in loader.dataset.pipeline]
        assert steps[0].imdecode_backend == 'pillow'
        (resize,) = [t for t in steps if type(t).__name__ == 'LocResize']
        assert resize.backend == 'pillow'
        assert resize.interpolation == 'bilinear'
    types = [t.type for t in cfg.test_dataloader.dataset.pipeline]
    assert not any('Crop' in t for t in types)
    assert train[0]['inputs'].shape == (3, 224, 224)
    sample = test[0]
    assert sample['inputs'].shape == (3, 224, 224)
    meta = sample['data_samples']
    assert tuple(meta.img_shape) == (224, 224)
    # One GT box into the 224 frame by the TS-CAM profile formula (§5):
    # int(float(v)) first, then divide by the original size and multiply.
    raw = np.asarray(meta.ori_gt_bboxes, dtype=np.float64).reshape(-1, 4)[0]
    h0, w0 = meta.ori_shape
    x, y, w, h = (int(float(v)) for v in raw)
    expected = [
        int(max(x / w0 * 224, 0)),
        int(max(y / h0 * 224, 0)),
        int(min((x + w) / w0 * 224, 223)),
        int(min((y + h) / h0 * 224, 223)),
    ]
    got = protocol_gt_boxes(
        meta.ori_gt_bboxes, 'xywh', (h0, w0), (224, 224), 'tscam'
    )
    assert got[0].tolist() == expected


def metafile_models() -> dict:
    data = yaml.safe_load(
        (REPO_ROOT / 'projects/tscam/metafile.yml').read_text()
    )
    return {m['Name']: m for m in data['Models']}


def test_metafile_lists_every_config_with_its_exact_parameter_count():
    models = metafile_models()
    assert sorted(models) == sorted(p.stem for p in CONFIGS)
    for path in CONFIGS:
        entry = models[path.stem]
        assert entry['Config'] == str(Path(path).relative_to(REPO_ROOT))
        with torch.device('meta'):  # shapes only, no initialisation
            model = build_model(load_config(str(path)))
        count = sum(p.numel() for p in model.parameters())
        assert entry['Metadata']['Parameters'] == count, path.stem


def test_select_on_test_command_builds_the_checkpoint_hook():
    """The README's opt-in selection on the test set (tscam.md §5)."""
    cfg = load_config(
        str(CUB),
        {
            'default_hooks.checkpoint.save_best': 'tscam/gt_known_loc',
            'default_hooks.checkpoint.rule': 'greater',
        },
    )
    hook_cfg = dict(cfg.default_hooks.checkpoint)
    hook_cfg.pop('type')
    hook = CheckpointHook(**hook_cfg)
    assert hook.key_indicators == ['tscam/gt_known_loc']
    assert hook.rules == ['greater']


def test_384_recipe_pipelines(synthetic_root, monkeypatch):
    """The assumed DeiT-B-384 recipe: resize 438 -> crop 384; test 384."""
    monkeypatch.setenv('DATA_ROOT', str(synthetic_root / 'demo'))
    cfg = load_config(
        str(CONFIG_DIR / 'tscam_deit-base_1xb128-60e_cub-384px.py')
    )
    assert cfg.model.backbone.img_size == 384
    train = list(cfg.train_dataloader.dataset.pipeline)
    assert [t.type for t in train][2:4] == ['LocResize', 'LocRandomCrop']
    assert tuple(train[2].scale) == (438, 438) and train[3].crop_size == 384
    train_set = DATASETS.build(cfg.train_dataloader.dataset)
    test_set = DATASETS.build(cfg.test_dataloader.dataset)
    assert train_set[0]['inputs'].shape == (3, 384, 384)
    assert test_set[0]['inputs'].shape == (3, 384, 384)
