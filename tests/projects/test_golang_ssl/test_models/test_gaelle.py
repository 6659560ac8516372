"""``GAELLE`` algorithm: crop-layout errors, per-group trunk calls and a
3-step ResNet-18 run (``golang_ssl.md`` §4.1, §11 "Algorithm").

The model is the real algorithm around a real mmpretrain ``ResNet-18``
(stage-4 maps of 512 channels: 2×2 at 64 px, 1×1 at 32 px), ``GAELLENeck``
with plain BN and ``GAELLELoss`` with small heads; batch 2 per view because
the neck's BatchNorm1d cannot take batch 1.
"""

from __future__ import annotations

import math

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmpretrain.structures import DataSample

import projects.golang_ssl.models.gaelle  # noqa: F401
import projects.golang_ssl.models.gaelle_head  # noqa: F401
import projects.golang_ssl.models.gaelle_loss  # noqa: F401
import projects.golang_ssl.models.gaelle_neck  # noqa: F401
from shared.registry import MODELS

B = 2  # images per view
CROPS = [2, 6]
BIG, SMALL = 64, 32  # px: 2×2 and 1×1 stage-4 maps
D, K = 16, 20


def model_cfg(with_local: bool = True) -> dict:
    return dict(
        type='GAELLE',
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.14, 57.12, 57.375],
            to_rgb=True,
        ),
        backbone=dict(
            type='ResNet',
            depth=18,
            out_indices=(3,),
            norm_cfg=dict(type='BN'),
            zero_init_residual=False,
        ),
        neck=dict(
            type='GAELLENeck',
            in_channels=512,
            hid_channels=32,
            feat_dim=D,
            local_feat_dim=D,
            num_groups=4,
            with_local=with_local,
            norm_cfg=dict(type='BN'),
        ),
        head=dict(
            type='GAELLEHead',
            loss=dict(
                type='GAELLELoss',
                feat_dim=D,
                local_feat_dim=D,
                num_prototypes=K,
                num_local_prototypes=K,
                num_crops=CROPS,
                crops_for_assign=[0, 1],
                with_local=with_local,
                with_l2g=with_local,
            ),
        ),
    )


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    net = MODELS.build(model_cfg())
    net.init_weights()
    return net


def views(sizes, batch=B, seed=0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, s, s, generator=gen) for s in sizes]


RECIPE = [BIG] * CROPS[0] + [SMALL] * CROPS[1]


def test_registered():
    assert MODELS.get('GAELLE') is projects.golang_ssl.models.gaelle.GAELLE


@pytest.mark.parametrize(
    'inputs, match',
    [
        (lambda: torch.randn(B, 3, BIG, BIG), 'expects a list of views'),
        (lambda: views(RECIPE[:-1]), r'got 7 views.*needs 8'),
        (
            lambda: views(RECIPE[:-1]) + views([SMALL], batch=B + 1),
            r'same batch size, got \[2, 2, 2, 2, 2, 2, 2, 3\]',
        ),
        # Merged groups: all 8 views at one resolution.
        (lambda: views([BIG] * 8), r'groups of equal size \[8\]'),
        # The 96-px (small) crops first.
        (
            lambda: views([SMALL] * 6 + [BIG] * 2),
            r'groups of equal size \[6, 2\]',
        ),
        # Right group sizes, but the first group is the smaller one.
        (
            lambda: views([SMALL] * 2 + [BIG] * 6),
            'must have the largest resolution',
        ),
        # A first-group map of 1×1 = 1 position.
        (lambda: views([32] * 2 + [16] * 6), r'1 position\(s\)'),
    ],
)
def test_bad_crop_layouts_and_batch_sizes_raise(model, inputs, match):
    with pytest.raises(ValueError, match=match):
        model.loss(inputs())


def test_predict_points_to_the_probe(model):
    with pytest.raises(NotImplementedError, match='linear-probe_golang'):
        model.predict(views(RECIPE))
    # The runner's val/test loops call forward(mode='predict').
    with pytest.raises(NotImplementedError, match='linear-probe'):
        model(views(RECIPE), mode='predict')


def test_trunk_runs_once_per_resolution_group(model):
    seen = []
    handle = model.backbone.register_forward_pre_hook(
        lambda _m, args: seen.append(tuple(args[0].shape))
    )
    try:
        out = model.loss(views(RECIPE))
    finally:
        handle.remove()
    # One call per concatenated group, view-major: BN statistics are per
    # resolution group, as in the original.
    assert seen == [(2 * B, 3, BIG, BIG), (6 * B, 3, SMALL, SMALL)]
    assert set(out) == {'loss', 'glb', 'alg', 'l2g', 'q_used'}


def _data_batch(step: int) -> dict:
    gen = torch.Generator().manual_seed(100 + step)
    samples = []
    for _ in range(B):
        samples.append(
            [
                torch.randint(0, 256, (3, s, s), generator=gen).to(torch.uint8)
                for s in RECIPE
            ]
        )
    # default_collate of MultiView samples: one (B, 3, s, s) stack per view.
    inputs = [torch.stack([s[v] for s in samples]) for v in range(len(RECIPE))]
    return dict(inputs=inputs, data_samples=[DataSample() for _ in range(B)])


def test_three_train_steps_give_finite_logged_terms():
    torch.manual_seed(0)
    net = MODELS.build(model_cfg())
    net.init_weights()
    net.train()
    wrapper = OptimWrapper(torch.optim.SGD(net.parameters(), lr=0.05))
    trunk = net.backbone.conv1.weight
    before = trunk.detach().clone()
    logs = [
        {
            k: float(v.detach())
            for k, v in net.train_step(_data_batch(step), wrapper).items()
        }
        for step in range(3)
    ]
    for log in logs:
        assert set(log) >= {'loss', 'glb', 'alg', 'l2g', 'q_used'}
        for key in ('loss', 'glb', 'alg', 'l2g'):
            assert math.isfinite(log[key]), (key, log)
        # Equal weights 1/3 (loss_weights=None), no queue.
        total = (log['glb'] + log['alg'] + log['l2g']) / 3
        assert log['loss'] == pytest.approx(total, rel=1e-5)
        assert log['q_used'] == 0.0
    # The terms change from step to step (the model trains).
    assert logs[0]['loss'] != logs[2]['loss']
    assert not torch.equal(trunk.detach(), before)


def test_swav_ablation_has_one_term():
    torch.manual_seed(0)
    net = MODELS.build(model_cfg(with_local=False))
    net.init_weights()
    out = net.loss(views(RECIPE))
    assert set(out) == {'loss', 'glb', 'q_used'}
    torch.testing.assert_close(out['loss'].detach(), out['glb'])
