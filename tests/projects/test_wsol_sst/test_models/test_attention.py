"""SSTEdgeSelfAttention: C-wide heads, edge bias, init, dropout, bad input.

``wsol_sst.md`` §3.5, §11 (``num_heads``, ``attn_drop``, ``embed_dims``)
and §12 item 6. The attention probabilities are read at the input of
``sa.attn_drop`` through a forward hook; the full output is checked
against an independent einsum implementation written here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from projects.wsol_sst.models.attention import SSTEdgeSelfAttention
from shared.registry import MODELS

C, HEADS, H, W = 16, 3, 3, 5  # non-square grid
N = H * W


def make_sa(std: float = 0.2, seed: int = 0, **kwargs) -> SSTEdgeSelfAttention:
    """An SA whose weights are large enough for Q·Kᵀ to matter."""
    torch.manual_seed(seed)
    kwargs.setdefault('num_heads', HEADS)
    sa = SSTEdgeSelfAttention(C, **kwargs)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for fc in (sa.fc_q, sa.fc_k, sa.fc_v, sa.fc_o):
            fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen) * std)
            fc.bias.copy_(torch.randn(fc.bias.shape, generator=gen) * std)
    return sa


def inputs(
    batch: int = 2,
    seed: int = 1,
    channels: int = C,
    height: int = H,
    width: int = W,
) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    feat = torch.randn(batch, channels, height, width, generator=gen)
    num = height * width
    # Asymmetric and non-negative, like Σ max(FO, SO): E ≠ Eᵀ, so a
    # transposed [key, query] indexing would be caught.
    edge = torch.rand(batch, num, num, generator=gen) * 2.0
    return feat, edge


def reference(
    sa: SSTEdgeSelfAttention, feat: torch.Tensor, edge: torch.Tensor | None
) -> tuple:
    """Loop-free einsum implementation of §3.5 (eval mode).

    Returns:
        tuple: (out (B, C, h, w), attention (B, heads, N, N)).
    """
    batch, chans, height, width = feat.shape
    heads = sa.num_heads
    tokens = torch.einsum('bchw->bhwc', feat).reshape(batch, -1, chans)

    def proj(fc: nn.Linear) -> torch.Tensor:
        # Output unit (head g, channel d) is row g·C + d of the weight.
        weight = fc.weight.reshape(heads, chans, chans)
        bias = fc.bias.reshape(heads, 1, chans)
        return torch.einsum('bnc,gdc->bgnd', tokens, weight) + bias

    q, k, v = proj(sa.fc_q), proj(sa.fc_k), proj(sa.fc_v)
    logits = torch.einsum('bgid,bgjd->bgij', q, k) / math.sqrt(chans)
    if edge is not None:
        logits = logits + edge[:, None]
    attn = torch.softmax(logits, dim=-1)
    ctx = torch.einsum('bgij,bgjd->bgid', attn, v)
    w_o = sa.fc_o.weight.reshape(chans, heads, chans)
    out = torch.einsum('bgnd,cgd->bnc', ctx, w_o) + sa.fc_o.bias
    out = out.reshape(batch, height, width, chans).permute(0, 3, 1, 2)
    return out, attn


@contextmanager
def capture_attention(sa: SSTEdgeSelfAttention) -> Iterator[list]:
    """Record (probabilities, dropped probabilities) of each forward."""
    records: list = []

    def hook(module, args, output):
        records.append((args[0].detach().clone(), output.detach().clone()))

    handle = sa.attn_drop.register_forward_hook(hook)
    try:
        yield records
    finally:
        handle.remove()


def test_registered_and_builds_from_config():
    sa = MODELS.build(
        dict(
            type='SSTEdgeSelfAttention',
            embed_dims=C,
            num_heads=8,
            attn_drop=0.1,
            init_std=1e-3,
            use_edge=True,
        )
    )
    assert type(sa) is SSTEdgeSelfAttention
    assert sa.num_heads == 8 and sa.use_edge
    assert sa.attn_drop.p == pytest.approx(0.1)


@pytest.mark.parametrize('dims', [512, 768])
def test_each_head_is_c_wide(dims):
    sa = SSTEdgeSelfAttention(dims)
    heads = 8
    assert list(sa.state_dict()) == [
        f'fc_{n}.{p}' for n in 'qkvo' for p in ('weight', 'bias')
    ]
    for fc in (sa.fc_q, sa.fc_k, sa.fc_v):
        assert (fc.in_features, fc.out_features) == (dims, heads * dims)
        assert fc.bias is not None
    assert (sa.fc_o.in_features, sa.fc_o.out_features) == (heads * dims, dims)
    n_params = sum(p.numel() for p in sa.parameters())
    assert n_params == 4 * heads * dims**2 + 3 * heads * dims + dims
    # No residual path parameters, no norm, no FFN.
    assert not any(
        isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d))
        for m in sa.modules()
    )


@pytest.mark.parametrize('use_edge', [True, False])
def test_matches_einsum_reference_in_eval(use_edge):
    sa = make_sa(use_edge=use_edge).eval()
    feat, edge = inputs()
    with capture_attention(sa) as rec, torch.no_grad():
        out = sa(feat, edge)
    ref_out, ref_attn = reference(sa, feat, edge if use_edge else None)
    assert out.shape == (2, C, H, W)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rec[0][0], ref_attn, rtol=1e-4, atol=1e-6)
    # The heads really differ: per-head width C with distinct projections.
    assert not torch.allclose(ref_attn[:, 0], ref_attn[:, 1], atol=1e-3)


def test_edge_term_changes_output_only_with_use_edge():
    feat, edge = inputs()
    with_edge = make_sa(use_edge=True).eval()
    without = make_sa(use_edge=False).eval()
    with torch.no_grad():
        a = with_edge(feat, edge)
        b = without(feat, edge)
        c = without(feat, None)
        d = without(feat, edge * 0 + 5.0)
    assert not torch.allclose(a, b, atol=1e-4)
    torch.testing.assert_close(b, c, rtol=0, atol=0)
    torch.testing.assert_close(b, d, rtol=0, atol=0)


def test_zero_query_key_gives_softmax_of_edge():
    sa = make_sa().eval()
    with torch.no_grad():
        for fc in (sa.fc_q, sa.fc_k):
            fc.weight.zero_()
            fc.bias.zero_()
    feat, edge = inputs()
    with capture_attention(sa) as rec, torch.no_grad():
        out = sa(feat, edge)
    probs = rec[0][0]
    expected = torch.softmax(edge, dim=-1)  # over keys j of E[i, j]
    assert probs.shape == (2, HEADS, N, N)
    for g in range(HEADS):
        torch.testing.assert_close(probs[:, g], expected, rtol=0, atol=1e-6)
    # Every head shares A = softmax(E), so the linear output collapses to
    # A · (V_concat W_oᵀ) + b_o.
    tokens = feat.flatten(2).transpose(1, 2)
    v_o = sa.fc_v(tokens) @ sa.fc_o.weight.T
    flat = (expected @ v_o + sa.fc_o.bias).transpose(1, 2)
    torch.testing.assert_close(
        out, flat.reshape(2, C, H, W), rtol=1e-4, atol=1e-5
    )


def test_zero_output_weight_gives_bias_everywhere():
    sa = make_sa()
    with torch.no_grad():
        sa.fc_o.weight.zero_()
    feat, edge = inputs()
    bias = sa.fc_o.bias.detach()
    assert bias.abs().min() > 0
    for mode in (sa.eval, sa.train):
        mode()
        with torch.no_grad():
            out = sa(feat * 100.0, edge)
        # No residual: nothing of F5 leaks through.
        torch.testing.assert_close(
            out, bias.view(1, C, 1, 1).expand_as(out), rtol=0, atol=1e-6
        )


def test_train_stochastic_eval_deterministic():
    sa = make_sa(attn_drop=0.1)
    feat, edge = inputs()
    sa.train()
    with torch.no_grad():
        torch.manual_seed(5)
        t1 = sa(feat, edge)
        t2 = sa(feat, edge)
    assert not torch.allclose(t1, t2)
    sa.eval()
    with torch.no_grad():
        e1 = sa(feat, edge)
        e2 = sa(feat, edge)
    torch.testing.assert_close(e1, e2, rtol=0, atol=0)
    torch.testing.assert_close(
        e1, reference(sa, feat, edge)[0], rtol=1e-4, atol=1e-5
    )


def test_dropout_acts_on_attention_probabilities():
    p = 0.25
    sa = make_sa(attn_drop=p).train()
    feat, edge = inputs()
    torch.manual_seed(7)
    with capture_attention(sa) as rec, torch.no_grad():
        sa(feat, edge)
    probs, dropped = rec[0]
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, HEADS, N))
    kept = dropped != 0
    frac_dropped = 1 - kept.float().mean().item()
    assert abs(frac_dropped - p) < 0.05  # 1350 Bernoulli draws
    torch.testing.assert_close(dropped[kept], probs[kept] / (1 - p))


def test_zero_drop_train_equals_eval():
    sa = make_sa(attn_drop=0.0)
    feat, edge = inputs()
    with torch.no_grad():
        train_out = sa.train()(feat, edge)
        eval_out = sa.eval()(feat, edge)
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)


def test_init_statistics_and_small_output():
    dims, init_std = 512, 1e-3
    torch.manual_seed(0)
    sa = SSTEdgeSelfAttention(dims, num_heads=8, init_std=init_std).eval()
    for fc in (sa.fc_q, sa.fc_k, sa.fc_v, sa.fc_o):
        weight = fc.weight.detach()
        # ≥ 2M samples: the sample std is within ~0.1 % of σ.
        assert abs(weight.std().item() - init_std) < 0.01 * init_std
        assert abs(weight.mean().item()) < 5 * init_std / weight.numel() ** 0.5
        assert torch.count_nonzero(fc.bias) == 0
    feat, edge = inputs(batch=2, channels=dims, height=4, width=6)
    with capture_attention(sa) as rec, torch.no_grad():
        out = sa(feat, edge)
    assert out.shape == feat.shape
    assert out.norm() < 1e-2 * feat.norm()
    # At init Q·Kᵀ/√C is O(σ²·|x|²) ≈ 1e-3 against E's O(1) spread:
    # A ≈ softmax(E) in every head, elementwise within 1 %.
    expected = torch.softmax(edge, dim=-1).unsqueeze(1).expand_as(rec[0][0])
    rel_err = ((rec[0][0] - expected).abs() / expected).max()
    assert rel_err < 1e-2


def test_custom_init_std_and_init_weights_keeps_it():
    torch.manual_seed(0)
    sa = SSTEdgeSelfAttention(64, num_heads=4, init_std=0.02)
    std = sa.fc_q.weight.std().item()
    assert abs(std - 0.02) < 0.05 * 0.02  # 16384 samples
    before = {k: v.clone() for k, v in sa.state_dict().items()}
    sa.init_weights()
    after = sa.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_gradient_reaches_all_projections_and_features():
    sa = make_sa(attn_drop=0.0).train()
    feat, edge = inputs()
    feat.requires_grad_(True)
    sa(feat, edge).square().sum().backward()
    for name, param in sa.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert feat.grad.abs().sum() > 0


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize('heads', [0, -2])
def test_bad_num_heads_raises(heads):
    with pytest.raises(
        ValueError, match=f'num_heads must be >= 1, got {heads}'
    ):
        SSTEdgeSelfAttention(C, num_heads=heads)


@pytest.mark.parametrize('drop', [1.0, -0.1, 1.5])
def test_bad_attn_drop_raises(drop):
    with pytest.raises(
        ValueError, match=rf'attn_drop must be in \[0, 1\), got {drop}'
    ):
        SSTEdgeSelfAttention(C, attn_drop=drop)


@pytest.mark.parametrize(
    'kwargs,pattern',
    [
        (dict(embed_dims=0), 'embed_dims must be >= 1, got 0'),
        (dict(embed_dims=C, init_std=0.0), 'init_std must be > 0, got 0.0'),
    ],
)
def test_bad_dims_or_std_raise(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SSTEdgeSelfAttention(**kwargs)


def test_embed_dims_mismatch_raises_naming_both():
    sa = make_sa().eval()
    feat, edge = inputs(channels=C + 4)
    with pytest.raises(ValueError) as err:
        sa(feat, edge)
    msg = str(err.value)
    assert f'embed_dims={C}' in msg
    assert f'{(2, C + 4, H, W)}' in msg


def test_missing_edge_with_use_edge_raises():
    sa = make_sa(use_edge=True).eval()
    feat, _ = inputs()
    with pytest.raises(ValueError, match='use_edge=True but edge is None'):
        sa(feat)


def test_edge_shape_mismatch_raises():
    sa = make_sa().eval()
    feat, _ = inputs()
    bad = torch.zeros(2, N, N - 1)
    with pytest.raises(ValueError) as err:
        sa(feat, bad)
    msg = str(err.value)
    assert f'{(2, N, N)}' in msg and f'{(2, N, N - 1)}' in msg
    assert f'{H}x{W}' in msg
