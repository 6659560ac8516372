"""SBIR metric losses (san.md §3.3, §6 item 18)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from projects.san.models.sbir_losses import (
    sbir_contrastive_loss,
    sbir_triplet_loss,
)


def _dist(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def contrastive_reference(s, p, ys, yp, margin):
    """The fork's ContrastiveLossHardNegative with explicit loops (NaN → 0)."""
    s, p = s.tolist(), p.tolist()
    ys, yp = ys.tolist(), yp.tolist()
    pos_terms = [
        _dist(s[i], p[i]) ** 2 for i in range(len(s)) if ys[i] == yp[i]
    ]
    pos = sum(pos_terms) / len(pos_terms) if pos_terms else 0.0
    neg_d = sorted(
        _dist(s[i], p[j])
        for i in range(len(s))
        for j in range(len(p))
        if ys[i] != yp[j]
    )
    k = min(len(s) // 2, len(neg_d))
    hard = neg_d[:k]
    neg = sum(max(0.0, margin - d) ** 2 for d in hard) / k if k else 0.0
    return (pos + neg) / 2


def _emb(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64))


@pytest.mark.parametrize(
    ('ys', 'yp', 'margin'),
    [
        ([0, 1, 2, 3, 0, 1], [0, 2, 2, 1, 3, 1], 0.7),  # mixed
        ([0, 1, 2, 3, 4], [0, 0, 2, 2, 4], 0.7),  # odd B: k = 2
        ([0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 1, 0, 2, 3, 3, 2], 1.5),
    ],
)
def test_contrastive_matches_loops(ys, yp, margin):
    n = len(ys)
    s, p = _emb(n, 5, 1), _emb(n, 5, 2)
    ys, yp = torch.tensor(ys), torch.tensor(yp)
    got = sbir_contrastive_loss(s, p, ys, yp, margin)
    assert got.item() == pytest.approx(
        contrastive_reference(s, p, ys, yp, margin), rel=1e-12
    )


def test_contrastive_distance_is_not_squared():
    # One negative pair at distance 0.5 (B = 2 → k = 1): (0.7 - 0.5)² / 2
    # with the Euclidean distance, (0.7 - 0.25)² / 2 if it were squared.
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    p = s.clone()
    ys, yp = torch.tensor([0, 1]), torch.tensor([0, 1])
    # Move p[1] so that d(s0, p1) = 0.5 but keep unit norm.
    angle = 2 * math.asin(0.25)
    p[1] = torch.tensor([math.cos(angle), math.sin(angle)])
    got = sbir_contrastive_loss(s, p, ys, yp, 0.7)
    pos = ((s[1] - p[1]).norm() ** 2).item() / 2  # mean over 2 own pairs
    assert got.item() == pytest.approx((pos + (0.7 - 0.5) ** 2) / 2)


def test_no_positive_pair_gives_zero_pos_not_nan():
    s, p = _emb(4, 3, 3), _emb(4, 3, 4)
    ys, yp = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0])
    got = sbir_contrastive_loss(s, p, ys, yp)
    assert torch.isfinite(got)
    ref = contrastive_reference(s, p, ys, yp, 0.7)
    assert got.item() == pytest.approx(ref, rel=1e-12)
    # Only the negative half is left.
    d = torch.cdist(s, p)[ys[:, None] != yp[None]].sort().values[:2]
    assert got.item() == pytest.approx(
        ((0.7 - d).clamp(min=0) ** 2).mean().item() / 2, rel=1e-12
    )


def test_no_negative_pair_gives_half_pos():
    s, p = _emb(4, 3, 5), _emb(4, 3, 6)
    y = torch.zeros(4, dtype=torch.long)
    got = sbir_contrastive_loss(s, p, y, y)
    pos = ((s - p) ** 2).sum(1).mean().item()
    assert got.item() == pytest.approx(pos / 2, rel=1e-12)


def test_contrastive_gradient_is_finite_for_coincident_negatives():
    s = _emb(2, 4, 7).requires_grad_()
    p = s.detach().clone().requires_grad_()
    # s0 and p0 coincide but have different labels: d = 0.
    loss = sbir_contrastive_loss(
        s, p, torch.tensor([0, 1]), torch.tensor([1, 0])
    )
    loss.backward()
    assert loss.item() == pytest.approx(0.7**2 / 2)
    assert torch.isfinite(s.grad).all() and torch.isfinite(p.grad).all()


def test_contrastive_bad_shapes():
    s = _emb(3, 4, 0)
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match='sketch_emb and photo_emb'):
        sbir_contrastive_loss(s, s[:2], y, y)
    with pytest.raises(ValueError, match='photo_labels'):
        sbir_contrastive_loss(s, s, y, y[:2])


def triplet_reference(a, p, n, margin, eps=1e-6):
    """nn.TripletMarginLoss(margin), one triplet at a time (its eps)."""
    total = 0.0
    for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist()):
        dp = math.sqrt(sum((x - y + eps) ** 2 for x, y in zip(ai, pi)))
        dn = math.sqrt(sum((x - y + eps) ** 2 for x, y in zip(ai, ni)))
        total += max(0.0, dp - dn + margin)
    return total / len(a)


@pytest.mark.parametrize('margin', [0.7, 0.1])
def test_triplet_matches_loop(margin):
    a, p, n = _emb(6, 5, 8), _emb(6, 5, 9), _emb(6, 5, 10)
    got = sbir_triplet_loss(a, p, n, margin)
    ref = triplet_reference(a, p, n, margin)
    assert ref > 0
    assert got.item() == pytest.approx(ref, rel=1e-12)


def test_triplet_bad_shapes():
    a = _emb(3, 4, 0)
    with pytest.raises(ValueError, match='one \\(B, D\\) shape'):
        sbir_triplet_loss(a, a, a[:2])
