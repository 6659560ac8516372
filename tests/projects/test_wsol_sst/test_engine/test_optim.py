"""``SSTOptimWrapperConstructor`` (``wsol_sst.md`` §5.1, §12 item 10)."""

from __future__ import annotations

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from torch import nn

import projects.wsol_sst  # noqa: F401
from projects.wsol_sst.engine import SST_MODULES, SSTOptimWrapperConstructor
from shared.registry import OPTIM_WRAPPER_CONSTRUCTORS

MODULE_LR = dict(backbone=1e-3, cls_head=1e-2, sos_head=1e-4, sa=5e-3)


def _cfg(**paramwise) -> dict:
    """The §7 base config's ``optim_wrapper``."""
    return dict(
        optimizer=dict(
            type='SGD', lr=1e-3, momentum=0.9, nesterov=True,
            weight_decay=5e-4,
        ),
        constructor='SSTOptimWrapperConstructor',
        paramwise_cfg=dict(
            dict(module_lr=dict(MODULE_LR), bias_lr_mult=2.0), **paramwise
        ),
    )  # fmt: skip


class StandIn(nn.Module):
    """The submodule names of ``SSTLocalizer``; BN weights in the backbone
    must land in the weight group (split by the ``.bias`` suffix)."""

    def __init__(self, sos: bool = True, sa: bool = True) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.cls_head = nn.Conv2d(4, 5, 1)
        if sos:
            self.sos_head = nn.Conv2d(4, 1, 1)
        if sa:
            self.sa = nn.Linear(4, 4)
        self.current_epoch = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        out = self.cls_head(f).mean()
        if hasattr(self, 'sa'):
            out = out + self.sa(f.mean((2, 3))).mean()
        if hasattr(self, 'sos_head'):
            out = out + self.sos_head(f).mean()
        return out


def _expected(model: nn.Module, modules) -> list[tuple]:
    """(module, kind, param ids, lr) per group, built by hand."""
    rows = []
    for module in modules:
        named = list(getattr(model, module).named_parameters(prefix=module))
        weights = [id(p) for n, p in named if not n.endswith('.bias')]
        biases = [id(p) for n, p in named if n.endswith('.bias')]
        rows.append((module, 'weight', weights, MODULE_LR[module]))
        rows.append((module, 'bias', biases, 2 * MODULE_LR[module]))
    return rows


def _rows(optim_wrapper) -> list[tuple]:
    return [
        (g['module'], g['param_type'], [id(p) for p in g['params']], g['lr'])
        for g in optim_wrapper.optimizer.param_groups
    ]


def test_registered():
    assert (
        OPTIM_WRAPPER_CONSTRUCTORS.get('SSTOptimWrapperConstructor')
        is SSTOptimWrapperConstructor
    )


def test_groups_order_lrs_and_sgd_settings():
    model = StandIn()
    wrapper = build_optim_wrapper(model, _cfg())
    optimizer = wrapper.optimizer
    assert isinstance(optimizer, torch.optim.SGD)
    assert _rows(wrapper) == _expected(model, SST_MODULES)
    # BN weight is a weight, BN bias a bias.
    bn = model.backbone[1]
    assert id(bn.weight) in _rows(wrapper)[0][2]
    assert id(bn.bias) in _rows(wrapper)[1][2]
    for group in optimizer.param_groups:
        assert group['momentum'] == 0.9
        assert group['nesterov'] is True
        assert group['dampening'] == 0
        assert group['weight_decay'] == 5e-4  # biases included
    # Every parameter is optimised exactly once.
    ids = [id(p) for g in optimizer.param_groups for p in g['params']]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


def test_bias_step_applies_decay_and_nesterov():
    """One SGD step on a bias whose loss gradient is 0: nesterov momentum
    0.9 on the decay term gives b - lr_bias * (1 + 0.9) * wd * b."""
    model = StandIn()
    wrapper = build_optim_wrapper(model, _cfg())
    bias = model.cls_head.bias
    with torch.no_grad():
        bias.copy_(torch.linspace(-1.0, 1.0, bias.numel()))
    before = bias.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    wrapper.step()
    lr_bias = 2 * MODULE_LR['cls_head']
    expected = before - lr_bias * (1 + 0.9) * 5e-4 * before
    torch.testing.assert_close(bias.detach(), expected, rtol=0, atol=1e-9)


def test_wrapped_model_is_unwrapped():
    model = StandIn()
    wrapper = build_optim_wrapper(nn.DataParallel(model), _cfg())
    assert _rows(wrapper) == _expected(model, SST_MODULES)


def test_absent_modules_have_no_groups():
    model = StandIn(sos=False, sa=False)  # the spa modes
    wrapper = build_optim_wrapper(model, _cfg())
    assert _rows(wrapper) == _expected(model, ('backbone', 'cls_head'))


def test_frozen_module_has_no_group_and_no_gradient():
    model = StandIn()
    wrapper = build_optim_wrapper(model, _cfg(frozen=['backbone']))
    assert _rows(wrapper) == _expected(model, ('cls_head', 'sos_head', 'sa'))
    assert not any(p.requires_grad for p in model.backbone.parameters())
    before = [p.detach().clone() for p in model.backbone.parameters()]
    model(torch.randn(2, 3, 6, 6)).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.cls_head.weight.grad is not None
    wrapper.step()
    for p, b in zip(model.backbone.parameters(), before):
        torch.testing.assert_close(p.detach(), b, rtol=0, atol=0)


def test_frozen_module_needs_no_lr():
    model = StandIn()
    lrs = {k: v for k, v in MODULE_LR.items() if k != 'sa'}
    cfg = _cfg(frozen=('sa',))
    cfg['paramwise_cfg']['module_lr'] = lrs
    wrapper = build_optim_wrapper(model, cfg)
    assert [r[0] for r in _rows(wrapper)][-1] == 'sos_head'


def _build(paramwise_cfg, model=None):
    constructor = SSTOptimWrapperConstructor(
        dict(optimizer=dict(type='SGD', lr=0.1)), paramwise_cfg
    )
    return constructor(model or StandIn())


@pytest.mark.parametrize(
    ('paramwise_cfg', 'error', 'match'),
    [
        (dict(module_lr=dict(MODULE_LR, neck=0.1)), KeyError, "'neck'"),
        (
            dict(module_lr=dict(MODULE_LR), frozen=['head']),
            KeyError,
            "frozen names unknown modules \\['head'\\]",
        ),
        (
            dict(module_lr=dict(MODULE_LR), bias_lr_mul=2.0),
            KeyError,
            'bias_lr_mul',
        ),
        (dict(bias_lr_mult=2.0), KeyError, 'module_lr'),
        (None, TypeError, 'module_lr'),
        (dict(module_lr=dict(MODULE_LR, sa=-1.0)), ValueError, '-1.0'),
    ],
)
def test_bad_config(paramwise_cfg, error, match):
    with pytest.raises(error, match=match):
        _build(paramwise_cfg)


def test_present_module_without_lr_is_an_error():
    lrs = {k: v for k, v in MODULE_LR.items() if k != 'sa'}
    with pytest.raises(ValueError, match="\\['sa'\\]"):
        _build(dict(module_lr=lrs))


def test_parameters_outside_the_modules_are_an_error():
    model = StandIn()
    model.extra = nn.Linear(2, 2)
    with pytest.raises(ValueError, match='extra.weight'):
        _build(dict(module_lr=dict(MODULE_LR)), model)


@pytest.mark.parametrize(
    ('mode', 'modules'),
    [
        ('spa', ('backbone', 'cls_head')),
        ('sos+sa_v3', SST_MODULES),
    ],
)
def test_real_localizer(mode, modules):
    from projects.wsol_sst.models.localizer import SSTLocalizer

    model = SSTLocalizer(
        mode=mode,
        num_classes=3,
        backbone=dict(type='SSTVGG16'),
        cls_head=dict(type='SSTConvHead', mid_channels=8),
        sos_head=dict(type='SSTConvHead', mid_channels=8, out_channels=1),
        sa=dict(type='SSTEdgeSelfAttention', num_heads=1),
    )
    wrapper = build_optim_wrapper(model, _cfg())
    assert _rows(wrapper) == _expected(model, modules)
    ids = [id(p) for g in wrapper.optimizer.param_groups for p in g['params']]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
