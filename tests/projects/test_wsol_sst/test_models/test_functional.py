"""WSOL-SST pure functions: HSC, S, E, SCG, pseudo-mask and the losses.

``wsol_sst.md`` §3.4, §3.7, §4 and §12 items 4, 5, 7 and 8. Every reference
is a formula or a python loop written here, never a copied number.
"""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from projects.wsol_sst.models.functional import (
    check_so_thr,
    check_threshold,
    edge_code,
    fuse_correlation,
    pseudo_mask,
    ra_loss,
    scg_v1,
    scg_v2,
    self_correlation,
    sparse_loss,
)


def _feat(b: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Non-negative (post-ReLU-like) random features."""
    gen = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(b, c, h, w, generator=gen) + 0.3)


def _structure(feats, source='fused', **thr) -> torch.Tensor:
    return fuse_correlation(
        [self_correlation(f, **thr) for f in feats], source=source
    )


# -- HSC (§3.4) --------------------------------------------------------------


def _hsc_loop(feat: torch.Tensor, fo_thr: float, so_thr: float):
    """§3.4 step by step, one image, python loops, float64."""
    c, h, w = feat.shape
    n = h * w
    cols = feat.double().reshape(c, n)
    x = [cols[:, i] / (cols[:, i].norm() + 1e-10) for i in range(n)]
    a = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            v = max(0.0, float(x[i] @ x[j]))
            a[i, j] = 0.0 if v < fo_thr else v

    def colnorm(m, eps):
        out = m.clone()
        for j in range(n):
            out[:, j] = m[:, j] / (m[:, j].sum() + eps)
        return out

    fo = colnorm(a, 1e-5)
    p = a.clone()
    for i in range(n):
        p[i, i] = 0.0
    p = colnorm(p, 1e-5)
    so = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            so[i, j] = sum(p[i, k] * p[k, j] for k in range(n))
    so = colnorm(so, 1e-10)
    so[so < so_thr / n] = 0.0
    return fo, so


@pytest.mark.parametrize('fo_thr,so_thr', [(0.2, 1.0), (0.1, 0.5)])
def test_self_correlation_matches_loop_reference(fo_thr, so_thr):
    feat = _feat(2, 6, 3, 4)  # non-square grid, N = 12
    fo, so = self_correlation(feat, fo_thr=fo_thr, so_thr=so_thr)
    assert fo.shape == so.shape == (2, 12, 12)
    for b in range(2):
        ref_fo, ref_so = _hsc_loop(feat[b], fo_thr, so_thr)
        torch.testing.assert_close(
            fo[b].double(), ref_fo, atol=1e-6, rtol=1e-5
        )
        torch.testing.assert_close(
            so[b].double(), ref_so, atol=1e-6, rtol=1e-5
        )


def test_self_correlation_properties():
    feat = _feat(3, 16, 5, 7)  # N = 35
    n = 35
    feat.requires_grad_(True)
    fo, so = self_correlation(feat, fo_thr=0.2, so_thr=1.0)
    assert not fo.requires_grad and not so.requires_grad
    torch.testing.assert_close(
        fo.sum(dim=1), torch.ones(3, n), atol=2e-5, rtol=0
    )
    assert (fo.diagonal(dim1=1, dim2=2) > 0).all()
    nonzero = so[so != 0]
    assert nonzero.numel() > 0
    assert (nonzero >= 1.0 / n).all()
    # A stricter SO threshold only removes entries.
    _, so_strict = self_correlation(feat, fo_thr=0.2, so_thr=3.0)
    assert (so_strict[so_strict != 0] >= 3.0 / n).all()
    assert (so_strict != 0).sum() < (so != 0).sum()


def test_self_correlation_invariant_to_positive_position_scaling():
    feat = _feat(2, 8, 4, 6, seed=1)
    gen = torch.Generator().manual_seed(2)
    scale = 0.2 + 5 * torch.rand(2, 1, 4, 6, generator=gen)
    fo, so = self_correlation(feat)
    fo_s, so_s = self_correlation(feat * scale)
    torch.testing.assert_close(fo_s, fo, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(so_s, so, atol=1e-6, rtol=1e-5)


def test_self_correlation_permutation_equivariant():
    b, c, h, w = 2, 8, 4, 5
    feat = _feat(b, c, h, w, seed=3)
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(4))
    permuted = feat.flatten(2)[:, :, perm].reshape(b, c, h, w)
    fo, so = self_correlation(feat)
    fo_p, so_p = self_correlation(permuted)
    torch.testing.assert_close(fo_p, fo[:, perm][:, :, perm])
    torch.testing.assert_close(so_p, so[:, perm][:, :, perm])


def test_self_correlation_constant_map_closed_form():
    """All positions share one feature vector, so every x_iᵀx_j = 1.

    FO_ij = 1 / (N + 1e-5) everywhere. P has p = 1 / (N − 1 + 1e-5) off the
    diagonal, so (P·P)_ii = (N − 1)p² and (P·P)_ij = (N − 2)p² (i ≠ j); each
    column sums to (N − 1)²p². After the column normalisation SO_ii ≈ 1/(N−1)
    > 1/N is kept, and SO_ij ≈ (N − 2)/(N − 1)² < 1/N (because
    N(N − 2) = (N − 1)² − 1) is zeroed: SO is diagonal.
    """
    h, w = 3, 5
    n = h * w
    feat = torch.full((2, 4, h, w), 0.7)
    fo, so = self_correlation(feat, fo_thr=0.2, so_thr=1.0)
    p = 1.0 / (n - 1 + 1e-5)
    col = (n - 1) ** 2 * p**2
    so_diag = (n - 1) * p**2 / (col + 1e-10)
    assert (n - 2) * p**2 / (col + 1e-10) < 1.0 / n < so_diag
    torch.testing.assert_close(fo, torch.full((2, n, n), 1.0 / (n + 1e-5)))
    torch.testing.assert_close(so, so_diag * torch.eye(n).expand(2, n, n))


def test_self_correlation_runs_in_float32_under_autocast():
    feat = _feat(2, 8, 3, 4, seed=19).bfloat16()
    ref = self_correlation(feat.float())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = self_correlation(feat)
        s = fuse_correlation([out])
        maps = [scg_v2(feat[:, :2], s), scg_v1(feat[:, :2], s)]
        maps.append(pseudo_mask(feat[:, 0], s, 0.5, 0.1, target='raw'))
    for o, r in zip(out, ref):
        assert o.dtype == torch.float32
        torch.testing.assert_close(o, r)
    # bf16 maps with a float32 S: the products are float32.
    ref_s = fuse_correlation([ref])
    ref_maps = [
        scg_v2(feat[:, :2].float(), ref_s),
        scg_v1(feat[:, :2].float(), ref_s),
        pseudo_mask(feat[:, 0].float(), ref_s, 0.5, 0.1, target='raw'),
    ]
    for o, r in zip(maps, ref_maps):
        assert o.dtype == torch.float32
        torch.testing.assert_close(o, r)


def _two_groups(h: int, w: int):
    """Features from two orthogonal channel groups, split by a column mask."""
    gen = torch.Generator().manual_seed(5)
    feat = torch.zeros(1, 16, h, w)
    group_a = torch.zeros(h, w, dtype=torch.bool)
    group_a[:, : w // 2] = True
    group_a[0, -1] = True  # not just a rectangle
    pos = torch.rand(16, h, w, generator=gen) + 0.1
    feat[0, :8] = pos[:8] * group_a
    feat[0, 8:] = pos[8:] * ~group_a
    return feat, group_a


def test_orthogonal_groups_scg_stays_inside_group():
    h, w = 4, 6
    feat, group_a = _two_groups(h, w)
    fo, so = self_correlation(feat)
    mask_a = group_a.flatten()
    cross = mask_a[:, None] ^ mask_a[None, :]
    assert (fo[0][cross] == 0).all() and (so[0][cross] == 0).all()
    s = fuse_correlation([(fo, so)])
    for point in (0, 7):  # one in each group
        cam = torch.zeros(1, 1, h * w)
        cam[0, 0, point] = 3.0
        out = scg_v2(cam.view(1, 1, h, w), s).flatten()
        inside = mask_a if mask_a[point] else ~mask_a
        assert (out[~inside] == 0).all()
        assert (out[inside] > 0).sum() > 1  # it spreads within the group


def test_fuse_correlation_and_edge_code():
    f4, f5 = _feat(2, 8, 4, 5, seed=6), _feat(2, 12, 4, 5, seed=7)
    f4.requires_grad_(True)
    pairs = [self_correlation(f4), self_correlation(f5)]

    s = fuse_correlation(pairs)
    torch.testing.assert_close(
        s.sum(dim=1), torch.full((2, 20), 2.0), atol=1e-5, rtol=0
    )
    ref = sum(
        torch.maximum(fo, so) / (torch.maximum(fo, so).sum(1, keepdim=True))
        for fo, so in pairs
    )
    torch.testing.assert_close(s, ref)
    for source, idx in (('fo', 0), ('so', 1)):
        ref = sum(p[idx] / p[idx].sum(1, keepdim=True) for p in pairs)
        torch.testing.assert_close(fuse_correlation(pairs, source), ref)
    single = fuse_correlation(pairs[1:])
    torch.testing.assert_close(single.sum(1), torch.ones(2, 20))

    e = edge_code(pairs)
    assert not e.requires_grad and not s.requires_grad
    expected = torch.maximum(*pairs[0]) + torch.maximum(*pairs[1])
    assert torch.equal(e, expected)
    # Not re-normalised: columns do not sum to the number of stages.
    assert not torch.allclose(e.sum(1), torch.full((2, 20), 2.0), atol=1e-2)


# -- SCG (§3.7) --------------------------------------------------------------


def _minmax_list(v: list[float], eps: float = 1e-10) -> list[float]:
    lo, hi = min(v), max(v)
    return [(x - lo) / (hi - lo + eps) for x in v]


def _scg_inputs():
    b, k, h, w = 2, 3, 4, 5
    s = _structure([_feat(b, 8, h, w, seed=8), _feat(b, 10, h, w, seed=9)])
    gen = torch.Generator().manual_seed(10)
    cam = torch.randn(b, k, h, w, generator=gen)
    cam[1, 2] = -1.0  # all zero after ReLU: no foreground column at all
    return cam, s


def test_scg_v2_matches_loop_reference():
    cam, s = _scg_inputs()
    b, k, h, w = cam.shape
    n = h * w
    out = scg_v2(cam, s)
    assert out.shape == cam.shape
    for bi in range(b):
        for ki in range(k):
            c = _minmax_list(
                [max(0.0, v) for v in cam[bi, ki].flatten().tolist()]
            )
            ref = [
                max(0.0, sum(c[i] * float(s[bi, i, j]) for i in range(n)))
                for j in range(n)
            ]
            torch.testing.assert_close(
                out[bi, ki].flatten(),
                torch.tensor(ref, dtype=torch.float32),
                atol=1e-6,
                rtol=1e-5,
            )
    assert torch.equal(out[1, 2], torch.zeros(h, w))


def _scg_v1_loop(cam_map, s_img, fg_thr, bg_thr):
    n = s_img.shape[0]
    c = _minmax_list([max(0.0, v) for v in cam_map.flatten().tolist()])

    def side(keep):
        total = [0.0] * n
        selected = [j for j in range(n) if keep(c[j])]
        if not selected:
            return total
        for j in selected:
            col = _minmax_list([float(s_img[i, j]) for i in range(n)])
            total = [t + v for t, v in zip(total, col)]
        return _minmax_list(total)

    pos = side(lambda v: v >= fg_thr)
    neg = side(lambda v: v <= bg_thr)
    return _minmax_list([max(0.0, p - q) for p, q in zip(pos, neg)])


@pytest.mark.parametrize('fg_thr,bg_thr', [(0.05, 0.05), (0.6, 0.3)])
def test_scg_v1_matches_loop_reference(fg_thr, bg_thr):
    cam, s = _scg_inputs()
    b, k, h, w = cam.shape
    out = scg_v1(cam, s, fg_thr=fg_thr, bg_thr=bg_thr)
    assert out.shape == cam.shape
    for bi in range(b):
        for ki in range(k):
            ref = _scg_v1_loop(cam[bi, ki], s[bi], fg_thr, bg_thr)
            torch.testing.assert_close(
                out[bi, ki].flatten(),
                torch.tensor(ref, dtype=torch.float32),
                atol=1e-5,
                rtol=1e-4,
            )
    assert torch.equal(out[1, 2], torch.zeros(h, w))  # pos = 0
    assert out[0].amax(dim=(1, 2)).gt(0.999).all()


# -- pseudo-mask (§4.2) ------------------------------------------------------


def _identity_s(b: int, n: int) -> torch.Tensor:
    return torch.eye(n).expand(b, n, n).clone()


def test_pseudo_mask_tc_bc_raw_on_hand_built_vector():
    # With S = I, one image whose map spans [0, 1] passes through unchanged;
    # dyadic values keep every comparison exact, boundaries included.
    values = [0.0, 0.125, 0.25, 0.375, 0.4375, 0.5, 0.75, 1.0]
    cam = torch.tensor(values).view(1, 2, 4)
    s = _identity_s(1, 8)
    fg, bg = 0.5, 0.25
    tc = pseudo_mask(cam, s, fg, bg, target='tc').flatten().tolist()
    bc = pseudo_mask(cam, s, fg, bg, target='bc').flatten().tolist()
    raw = pseudo_mask(cam, s, fg, bg, target='raw').flatten().tolist()
    assert tc == [0.0 if v <= bg else 1.0 if v >= fg else v for v in values]
    assert tc == [0.0, 0.0, 0.0, 0.375, 0.4375, 1.0, 1.0, 1.0]
    assert bc == [1.0 if v >= fg else 0.0 for v in values]
    assert raw == values


def _peaked_and_broad(h: int = 4, w: int = 5):
    n = h * w
    s = _structure([_feat(2, 8, h, w, seed=11), _feat(2, 8, h, w, seed=12)])
    peaked = torch.zeros(n)
    peaked[7] = 2.0
    broad = torch.ones(n)
    broad[0] = 0.0
    cam = torch.stack([peaked, broad]).view(2, h, w)
    return cam, s


@pytest.mark.parametrize('target', ['tc', 'bc', 'raw'])
def test_pseudo_mask_batch_global_vs_per_image(target):
    cam, s = _peaked_and_broad()
    thr = dict(fg_thr=0.5, bg_thr=0.1, target=target)
    alone = pseudo_mask(cam[:1], s[:1], **thr)
    joined = pseudo_mask(cam, s, **thr)
    assert not torch.equal(joined[0], alone[0])
    alone_pi = pseudo_mask(cam[:1], s[:1], norm='per_image', **thr)
    joined_pi = pseudo_mask(cam, s, norm='per_image', **thr)
    torch.testing.assert_close(joined_pi[0], alone_pi[0], rtol=0, atol=0)
    # One image: the batch and the image are the same group.
    torch.testing.assert_close(alone, alone_pi, rtol=0, atol=0)


def test_pseudo_mask_raw_matches_formula_and_is_detached():
    cam, s = _peaked_and_broad()
    cam.requires_grad_(True)
    s.requires_grad_(True)
    out = pseudo_mask(cam, s, 0.5, 0.1, target='raw')
    assert not out.requires_grad and out.grad_fn is None
    c = cam.detach().flatten(1).relu()
    c = (c - c.amin(1, keepdim=True)) / (
        c.amax(1, keepdim=True) - c.amin(1, keepdim=True) + 1e-10
    )
    scm = torch.einsum('bi,bij->bj', c, s.detach()).relu()
    ref = (scm - scm.min()) / (scm.max() - scm.min() + 1e-10)
    torch.testing.assert_close(out.flatten(1), ref)


def _ddp_inputs():
    """Batch of 4: two narrow maps (rank 0's half), two broad (rank 1's)."""
    h, w = 4, 5
    s = _structure([_feat(4, 8, h, w, seed=13), _feat(4, 8, h, w, seed=14)])
    gen = torch.Generator().manual_seed(15)
    cam = torch.randn(4, h, w, generator=gen)
    cam[2:] = cam[2:].abs() + 1.0
    return cam, s


DDP_CASES = (('tc', 0.5, 0.1), ('bc', 0.3, 0.0), ('raw', 0.5, 0.1))


def _gloo_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world,
    )
    try:
        cam, s = _ddp_inputs()
        half = cam.shape[0] // world
        mine = slice(rank * half, (rank + 1) * half)
        results = {
            target: pseudo_mask(cam[mine], s[mine], fg, bg, target=target)
            for target, fg, bg in DDP_CASES
        }
        torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_pseudo_mask_two_gloo_ranks_equal_full_batch(tmp_path, monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    mp.spawn(
        _gloo_worker,
        args=(2, _free_port(), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    ranks = [
        torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1)
    ]
    cam, s = _ddp_inputs()
    for target, fg, bg in DDP_CASES:
        full = pseudo_mask(cam, s, fg, bg, target=target)
        gathered = torch.cat([ranks[0][target], ranks[1][target]])
        torch.testing.assert_close(gathered, full, atol=1e-6, rtol=1e-6)
        # Without the all-reduce, rank 0's half would normalise differently.
        local = pseudo_mask(cam[:2], s[:2], fg, bg, target=target)
        assert not torch.allclose(local, full[:2], atol=1e-3)


# -- RA and sparse losses (§4.3, §4.4) ---------------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_ra_loss_uniform_logits():
    # Equal logits: v = 0 everywhere, v̂ = 0/(0 + 1e-15) = 0, so every
    # position is background and the loss is σ(a).
    a = 0.7
    cls_map = torch.full((2, 5, 3, 4), a)
    loss = ra_loss(cls_map, torch.tensor([1, 4]), bg_thr=0.1, gap=0.2)
    assert loss.item() == pytest.approx(_sigmoid(a), abs=1e-6)


def test_ra_loss_half_foreground_half_background():
    # Left half: the GT class stands out (max variance, v̂ = 1 > θ + gap:
    # foreground). Right half: equal logits (v = 0, v̂ = 0 < θ: background).
    hi, lo = 4.0, -1.0
    cls_map = torch.full((1, 3, 2, 4), lo)
    cls_map[0, 2, :, :2] = hi
    loss = ra_loss(cls_map, torch.tensor([2]), bg_thr=0.1, gap=0.2)
    expected = 0.5 * _sigmoid(lo) + 0.5 * (1 - _sigmoid(hi))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_ra_loss_matches_loop_reference_with_gap():
    gen = torch.Generator().manual_seed(16)
    cls_map = 2 * torch.randn(2, 4, 3, 5, generator=gen)
    labels = torch.tensor([3, 0])
    bg_thr, gap = 0.3, 0.25
    b, c, h, w = cls_map.shape
    total, in_gap = 0.0, 0
    for bi in range(b):
        var = []
        for y in range(h):
            for x in range(w):
                logits = [float(cls_map[bi, k, y, x]) for k in range(c)]
                exps = [math.exp(v) for v in logits]
                prob = [e / sum(exps) for e in exps]
                mean = sum(prob) / c
                var.append(sum((p - mean) ** 2 for p in prob) / (c - 1))
        var = _minmax_list(var, eps=1e-15)
        for idx, v in enumerate(var):
            s = _sigmoid(float(cls_map[bi, labels[bi]].flatten()[idx]))
            total += s * (v < bg_thr) + (1 - s) * (v > bg_thr + gap)
            in_gap += bg_thr <= v <= bg_thr + gap
    assert in_gap > 0  # the gap really excludes some positions
    loss = ra_loss(cls_map, labels, bg_thr=bg_thr, gap=gap)
    assert loss.item() == pytest.approx(total / (b * h * w), abs=1e-6)


def test_ra_loss_gradient_reaches_only_gt_class_map():
    gen = torch.Generator().manual_seed(17)
    cls_map = torch.randn(3, 4, 3, 3, generator=gen, requires_grad=True)
    labels = torch.tensor([2, 0, 2])
    ra_loss(cls_map, labels, bg_thr=0.2, gap=0.1).backward()
    grad = cls_map.grad
    gt = torch.zeros_like(grad, dtype=torch.bool)
    gt[torch.arange(3), labels] = True
    assert (grad[~gt] == 0).all()
    assert (grad[gt] != 0).sum() > 0


def test_sparse_loss_formula():
    gen = torch.Generator().manual_seed(18)
    cls_map = torch.randn(2, 3, 4, 5, generator=gen)
    labels = torch.tensor([1, 2])
    expected = (
        sum(
            sum(max(0.0, v) for v in cls_map[b, labels[b]].flatten().tolist())
            / 20
            for b in range(2)
        )
        / 2
    )
    assert sparse_loss(cls_map, labels).item() == pytest.approx(expected)


# -- bad input (§11) ---------------------------------------------------------


def test_threshold_validation_names_the_value():
    assert check_threshold(0.0, 'x') == 0.0 and check_threshold(1, 'x') == 1.0
    for bad in (-0.1, 1.5, float('nan')):
        with pytest.raises(ValueError, match=r'fg_thr must lie in \[0, 1\]'):
            check_threshold(bad, 'fg_thr')
    assert check_so_thr(3.0) == 3.0
    with pytest.raises(ValueError, match='so_thr .*got -0.5'):
        check_so_thr(-0.5)
    feat = _feat(1, 4, 3, 3)
    with pytest.raises(ValueError, match='fo_thr .*got 1.2'):
        self_correlation(feat, fo_thr=1.2)
    with pytest.raises(ValueError, match='so_thr .*got -1.0'):
        self_correlation(feat, so_thr=-1.0)
    with pytest.raises(ValueError, match='at least 2x2, got 1x5'):
        self_correlation(_feat(1, 4, 1, 5))
    cam, s = _scg_inputs()
    with pytest.raises(ValueError, match='scgv1_fg_thr .*got 2.0'):
        scg_v1(cam, s, fg_thr=2.0)
    with pytest.raises(ValueError, match=r'S must have shape \(2, 12, 12\)'):
        scg_v2(cam[..., :3], s)
    with pytest.raises(ValueError, match=r'cam must be \(B, K, h, w\)'):
        scg_v1(cam[0], s)


def test_pseudo_mask_validation():
    cam, s = _peaked_and_broad()
    with pytest.raises(ValueError, match='fg_thr=0.1 and bg_thr=0.2'):
        pseudo_mask(cam, s, fg_thr=0.1, bg_thr=0.2, target='tc')
    with pytest.raises(ValueError, match='fg_thr=0.2 and bg_thr=0.2'):
        pseudo_mask(cam, s, fg_thr=0.2, bg_thr=0.2)
    # BC ignores bg_thr's order.
    pseudo_mask(cam, s, fg_thr=0.1, bg_thr=0.2, target='bc')
    with pytest.raises(ValueError, match='bg_thr must lie in .*got -0.1'):
        pseudo_mask(cam, s, fg_thr=0.5, bg_thr=-0.1)
    with pytest.raises(ValueError, match="target must be one of.*'soft'"):
        pseudo_mask(cam, s, 0.5, 0.1, target='soft')
    with pytest.raises(ValueError, match="norm must be one of.*'global'"):
        pseudo_mask(cam, s, 0.5, 0.1, norm='global')


def test_loss_validation():
    with pytest.raises(ValueError, match=r'C >= 2.*\(2, 1, 3, 3\)'):
        ra_loss(torch.zeros(2, 1, 3, 3), torch.tensor([0, 0]), 0.1, 0.2)
    with pytest.raises(ValueError, match=r'label 5 of sample 1 .*\[0, 4\)'):
        ra_loss(torch.zeros(2, 4, 3, 3), torch.tensor([0, 5]), 0.1, 0.2)
    with pytest.raises(ValueError, match=r'label -1 of sample 0'):
        sparse_loss(torch.zeros(2, 4, 3, 3), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match='gap must lie in .*got 1.5'):
        ra_loss(torch.zeros(2, 4, 3, 3), torch.tensor([0, 0]), 0.1, 1.5)
    with pytest.raises(ValueError, match="source must be one of.*'both'"):
        fuse_correlation([self_correlation(_feat(1, 4, 2, 2))], 'both')
