"""``SANSmoothCELoss`` (san.md §3.1, §6 item 18)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models.losses import LabelSmoothLoss
from mmpretrain.structures import DataSample

from projects.san.models.smooth_ce_loss import SANSmoothCELoss
from shared.registry import MODELS


def formula(logits, labels, eps):
    """Upstream smooth_loss, one sample and one class at a time."""
    n, k = logits.shape
    total = 0.0
    for i in range(n):
        row = logits[i].tolist()
        top = max(row)
        log_z = top + math.log(sum(math.exp(v - top) for v in row))
        for c in range(k):
            q = 1 - eps if c == labels[i] else eps / (k - 1)
            total -= q * (row[c] - log_z)
    return total / n


@pytest.mark.parametrize('k', [2, 5, 1000])
@pytest.mark.parametrize('eps', [0.0, 0.1, 0.35])
def test_formula_labelsmooth_and_torch_ce_agree(k, eps):
    g = torch.Generator().manual_seed(k)
    logits = torch.randn(6, k, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, k, (6,), generator=g)
    ours = SANSmoothCELoss(eps)(logits, labels)
    assert ours.item() == pytest.approx(
        formula(logits, labels, eps), rel=1e-12
    )
    ls = eps * k / (k - 1)
    torch_ce = F.cross_entropy(logits, labels, label_smoothing=ls)
    torch.testing.assert_close(ours, torch_ce, rtol=1e-12, atol=0)
    if eps > 0:  # LabelSmoothLoss rejects a smoothing value of 0
        # LabelSmoothLoss builds its target in float32.
        mmpre = LabelSmoothLoss(ls, mode='original', num_classes=k)
        torch.testing.assert_close(
            ours, mmpre(logits, labels).to(ours.dtype), rtol=1e-6, atol=0
        )


def test_differs_from_torch_label_smoothing_eps():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 9, 5])
    ours = SANSmoothCELoss(0.1)(logits, labels)
    assert not torch.allclose(
        ours, F.cross_entropy(logits, labels, label_smoothing=0.1)
    )


def test_target_values_and_gradient():
    loss = SANSmoothCELoss(0.1)
    q = loss.smooth_target(torch.tensor([2, 0]), 5)
    expected = torch.full((2, 5), 0.1 / 4)
    expected[0, 2] = expected[1, 0] = 0.9
    torch.testing.assert_close(q, expected)
    torch.testing.assert_close(q.sum(1), torch.ones(2))
    # d loss / d z = (softmax(z) − q) / N
    logits = torch.randn(2, 5, requires_grad=True)
    loss(logits, torch.tensor([2, 0])).backward()
    torch.testing.assert_close(
        logits.grad, (logits.detach().softmax(1) - expected) / 2
    )


def test_soft_one_hot_target_equals_indices_and_reductions():
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 3, 0])
    loss = SANSmoothCELoss(0.2)
    torch.testing.assert_close(
        loss(logits, F.one_hot(labels, 4).float()), loss(logits, labels)
    )
    per_sample = loss(logits, labels, reduction_override='none')
    assert per_sample.shape == (3,)
    torch.testing.assert_close(per_sample.mean(), loss(logits, labels))
    torch.testing.assert_close(
        loss(logits, labels, reduction_override='sum'), per_sample.sum()
    )
    w = torch.tensor([1.0, 0.0, 2.0])
    torch.testing.assert_close(
        loss(logits, labels, weight=w, avg_factor=3),
        (per_sample * w).sum() / 3,
    )
    torch.testing.assert_close(
        SANSmoothCELoss(0.2, loss_weight=0.5)(logits, labels),
        0.5 * loss(logits, labels),
    )


def test_inside_linear_cls_head():
    head = MODELS.build(
        dict(
            type='LinearClsHead',
            num_classes=7,
            in_channels=16,
            loss=dict(type='SANSmoothCELoss', eps=0.1),
            topk=(1, 5),
            init_cfg=None,
        )
    )
    feats = (torch.randn(3, 16),)
    samples = [DataSample().set_gt_label(i) for i in (0, 6, 2)]
    losses = head.loss(feats, samples)
    logits = head(feats)
    expected = formula(logits.detach().double(), [0, 6, 2], 0.1)
    assert losses['loss'].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize('eps', [-0.1, 1.0, 1.5, True])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match=r'eps must be in \[0, 1\)'):
        SANSmoothCELoss(eps)


def test_bad_inputs():
    loss = SANSmoothCELoss(0.1)
    with pytest.raises(ValueError, match='K >= 2.*K=1'):
        loss(torch.randn(2, 1), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r'\[0, 4\).*max 4'):
        loss(torch.randn(2, 4), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match='min -1'):
        loss(torch.randn(2, 4), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match='3 labels for 2 scores'):
        loss(torch.randn(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r'\(2, 5\)'):
        loss(torch.randn(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match='reduction'):
        SANSmoothCELoss(0.1, reduction='avg')
