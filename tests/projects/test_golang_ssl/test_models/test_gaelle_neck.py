"""GAELLENeck: shapes, attention, pooling order, per-position BN, errors.

``golang_ssl.md`` §4.2, §9 (P per-position calls of g are reproduced) and
§11 "Neck". The per-position reference below is written from the original
``forward_alignment`` / ``forward_head`` with a hand-written BatchNorm, so
it checks outputs, gradients and the sequence of running-stat updates.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from projects.golang_ssl.models.gaelle_neck import GAELLENeck
from shared.registry import MODELS

#: Small sizes: C channels, hidden width, d, d_l, G groups (M = d / G).
C, HID, D, DL, G = 16, 24, 8, 6, 4
M = D // G
#: B images per view, views per resolution group, first/second map sides.
B, CROPS, S0, S1 = 3, (2, 3), 3, 2
V, N, P = CROPS[0], sum(CROPS), S0 * S0


def make_neck(**kwargs) -> GAELLENeck:
    cfg = dict(
        in_channels=C,
        hid_channels=HID,
        feat_dim=D,
        local_feat_dim=DL,
        num_groups=G,
        norm_cfg=dict(type='BN1d'),
    )
    cfg.update(kwargs)
    torch.manual_seed(0)
    return GAELLENeck(**cfg)


def make_inputs(seed: int = 1, dtype=torch.float32) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(CROPS[0] * B, C, S0, S0, generator=gen, dtype=dtype),
        torch.randn(CROPS[1] * B, C, S1, S1, generator=gen, dtype=dtype),
    ]


def capture_tokens(neck: GAELLENeck) -> list[torch.Tensor]:
    """Record the input of h (the pooled tokens) on the next forward."""
    seen: list[torch.Tensor] = []
    neck.local_proj.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach().clone())
    )
    return seen


def test_registered_and_builds_from_config():
    neck = MODELS.build(
        dict(type='GAELLENeck', in_channels=C, hid_channels=HID, feat_dim=D)
    )
    assert type(neck) is GAELLENeck
    assert MODELS.get('GAELLENeck') is GAELLENeck


def test_structure_and_state_dict_keys():
    neck = make_neck()
    for proj, out in ((neck.global_proj, D), (neck.local_proj, DL)):
        assert isinstance(proj, nn.Sequential) and len(proj) == 4
        assert (proj[0].in_features, proj[0].out_features) == (C, HID)
        assert proj[0].bias is not None and proj[3].bias is not None
        assert isinstance(proj[1], nn.BatchNorm1d)
        assert proj[1].num_features == HID
        assert isinstance(proj[2], nn.ReLU)
        assert (proj[3].in_features, proj[3].out_features) == (HID, out)
    assert neck.global_proj[0].weight is not neck.local_proj[0].weight
    bn_keys = ['weight', 'bias', 'running_mean', 'running_var']
    expected = [
        f'{name}.{idx}.{key}'
        for name in ('global_proj', 'local_proj')
        for idx, keys in (
            (0, ['weight', 'bias']),
            (1, bn_keys + ['num_batches_tracked']),
            (3, ['weight', 'bias']),
        )
        for key in keys
    ]
    assert list(neck.state_dict()) == expected

    swav = make_neck(with_local=False)
    assert not hasattr(swav, 'local_proj')
    assert all(k.startswith('global_proj.') for k in swav.state_dict())


def mlp_param_count(cin: int, hid: int, out: int) -> int:
    """Linear(cin, hid) + BN1d(hid) affine + Linear(hid, out), with biases."""
    return (cin * hid + hid) + 2 * hid + (hid * out + out)


def test_parameter_count_at_recipe_sizes():
    neck = GAELLENeck(norm_cfg=dict(type='BN1d'))  # C = hid = 2048, d = 128
    g = mlp_param_count(2048, 2048, 128)
    h = mlp_param_count(2048, 2048, 128)
    assert g == 4_462_720  # §4.6: "g and h about 4.46M each"
    assert sum(p.numel() for p in neck.global_proj.parameters()) == g
    assert sum(p.numel() for p in neck.parameters()) == g + h
    swav = GAELLENeck(with_local=False, norm_cfg=dict(type='BN1d'))
    assert sum(p.numel() for p in swav.parameters()) == g


@pytest.mark.parametrize('position_bn', ['loop', 'flatten'])
def test_shapes_and_unit_norms(position_bn):
    neck = make_neck(position_bn=position_bn).train()
    out = neck(make_inputs(), batch_size=B, num_crops=CROPS)
    assert set(out) == {'global_emb', 'local_emb', 'batch_size', 'num_tokens'}
    assert out['global_emb'].shape == (N * B, D)
    assert out['local_emb'].shape == (V * B * M, DL)
    assert out['batch_size'] == B and out['num_tokens'] == M
    for key in ('global_emb', 'local_emb'):
        norms = out[key].norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))


def test_without_local_branch():
    neck = make_neck(with_local=False).train()
    out = neck(make_inputs(), batch_size=B, num_crops=CROPS)
    assert out['local_emb'] is None and out['num_tokens'] == M
    assert out['global_emb'].shape == (N * B, D)
    assert int(neck.global_proj[1].num_batches_tracked) == 1


def attention_bounds(num_pos: int, temperature: float) -> tuple[float, float]:
    """Extremes of softmax over P of entries in [-1/tau, 1/tau]."""
    e = math.exp(2.0 / temperature)
    return 1.0 / (1.0 + (num_pos - 1) * e), e / (e + num_pos - 1)


@pytest.mark.parametrize('temperature', [1.0, 0.5])
def test_attention_sums_to_one_within_bounds(temperature):
    neck = make_neck(attn_temperature=temperature).train()
    feats = make_inputs()[0].flatten(2)
    gen = torch.Generator().manual_seed(3)
    lo, hi = attention_bounds(P, temperature)
    for scores in (
        neck.position_scores(feats).detach(),
        100.0 * torch.randn(V * B, D, P, generator=gen),
    ):
        attn = neck.attention(scores)
        assert attn.shape == (V * B, D, P)
        sums = attn.sum(dim=2)
        torch.testing.assert_close(sums, torch.ones_like(sums))
        assert attn.min() >= lo - 1e-7 and attn.max() <= hi + 1e-7

    # The bounds are tight: channel 0 is +1 at position 0 and -1 elsewhere
    # (after the L2 normalisation over d), which attains both extremes.
    extreme = torch.zeros(1, D, P)
    extreme[0, 0, 0], extreme[0, 0, 1:] = 1.0, -1.0
    attn = neck.attention(extreme)
    assert attn[0, 0, 0].item() == pytest.approx(hi, rel=1e-6)
    assert attn[0, 0, 1].item() == pytest.approx(
        math.exp(-1 / temperature)
        / (math.exp(1 / temperature) + (P - 1) * math.exp(-1 / temperature)),
        rel=1e-6,
    )
    extreme[0, 0] = -extreme[0, 0]
    assert neck.attention(extreme)[0, 0, 0].item() == pytest.approx(
        lo, rel=1e-6
    )


def test_zero_last_layer_of_g_gives_gap_tokens_in_row_order():
    neck = make_neck().train()
    nn.init.zeros_(neck.global_proj[3].weight)
    nn.init.zeros_(neck.global_proj[3].bias)
    h_copy = copy.deepcopy(neck.local_proj)
    seen = capture_tokens(neck)
    inputs = make_inputs()
    out = neck(inputs, batch_size=B, num_crops=CROPS)
    tokens = seen[0]
    assert tokens.shape == (V * B * M, C)
    first = inputs[0]
    for v in range(V):
        for b in range(B):
            gap = first[v * B + b].mean(dim=(1, 2))
            for k in range(M):
                torch.testing.assert_close(tokens[v * B * M + b * M + k], gap)
    torch.testing.assert_close(
        out['local_emb'], F.normalize(h_copy(tokens), dim=1)
    )


def test_constant_map_gives_constant_tokens():
    neck = make_neck().train()
    seen = capture_tokens(neck)
    gen = torch.Generator().manual_seed(5)
    const = torch.randn(V * B, C, generator=gen)
    inputs = make_inputs()
    inputs[0] = const[:, :, None, None].expand(-1, -1, S0, S0).contiguous()
    neck(inputs, batch_size=B, num_crops=CROPS)
    expected = const.repeat_interleave(M, dim=0)  # row n*M + k -> map n
    torch.testing.assert_close(seen[0], expected)


def test_group_to_token_composition_under_one_hot_attention(monkeypatch):
    neck = make_neck().train()
    gen = torch.Generator().manual_seed(7)
    picks = torch.randint(0, P, (V * B, D), generator=gen)
    one_hot = F.one_hot(picks, P).float()  # (VB, d, P)
    monkeypatch.setattr(neck, 'attention', lambda scores: one_hot)
    seen = capture_tokens(neck)
    inputs = make_inputs()
    neck(inputs, batch_size=B, num_crops=CROPS)
    feats = inputs[0].flatten(2)
    cg = C // G
    expected = torch.empty(V * B * M, C)
    for v in range(V):
        for b in range(B):
            n = v * B + b
            for k in range(M):
                for j in range(G):
                    pos = picks[n, j * M + k]
                    expected[v * B * M + b * M + k, j * cg : (j + 1) * cg] = (
                        feats[n, j * cg : (j + 1) * cg, pos]
                    )
    torch.testing.assert_close(seen[0], expected)


# -- hand-written reference of the original forward with per-position BN --


class RefBN:
    """BatchNorm1d in training mode with explicit running statistics."""

    def __init__(self, bn: nn.BatchNorm1d) -> None:
        self.weight, self.bias = bn.weight, bn.bias
        self.eps, self.momentum = bn.eps, bn.momentum
        self.mean = bn.running_mean.clone()
        self.var = bn.running_var.clone()
        self.count = int(bn.num_batches_tracked)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=0)
        var = ((x - mean) ** 2).mean(dim=0)
        unbiased = var * x.shape[0] / (x.shape[0] - 1)
        m = self.momentum
        self.mean = (1 - m) * self.mean + m * mean.detach()
        self.var = (1 - m) * self.var + m * unbiased.detach()
        self.count += 1
        return (x - mean) / torch.sqrt(
            var + self.eps
        ) * self.weight + self.bias


class RefMLP:
    def __init__(self, seq: nn.Sequential) -> None:
        self.fc0, self.fc3 = seq[0], seq[3]
        self.bn = RefBN(seq[1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x @ self.fc0.weight.t() + self.fc0.bias
        x = torch.relu(self.bn(x))
        return x @ self.fc3.weight.t() + self.fc3.bias


def reference_forward(neck, inputs, batch_size, groups):
    """The original ``forward_alignment`` + heads, written out literally."""
    g, h = RefMLP(neck.global_proj), RefMLP(neck.local_proj)
    x = inputs[0].flatten(2)
    attention_map = torch.cat(
        [g(x[:, :, i]).unsqueeze(2) for i in range(x.shape[-1])], dim=2
    )
    nviews = x.shape[0] // batch_size
    align = []
    for i in range(nviews):
        rows = slice(batch_size * i, batch_size * (i + 1))
        attn = F.normalize(attention_map[rows], dim=1, p=2)
        attn = (attn / neck.attn_temperature).softmax(dim=2)
        attn = attn.view(batch_size, groups, -1, attn.shape[-1])
        feats = x[rows].view(batch_size, groups, -1, x.shape[-1])
        val = torch.matmul(feats, attn.transpose(3, 2))
        align.append(val.view(batch_size, -1, val.shape[-1]))
    tokens = torch.cat(align, dim=0).transpose(2, 1)
    tokens = tokens.reshape(-1, tokens.shape[-1])
    pooled = torch.cat([torch.flatten(t.mean(dim=(2, 3)), 1) for t in inputs])
    glob = F.normalize(g(pooled), dim=1, p=2)
    loc = F.normalize(h(tokens), dim=1, p=2)
    return glob, loc, g.bn, h.bn


def _loss(glob, loc, gen_seed=11):
    gen = torch.Generator().manual_seed(gen_seed)
    wg = torch.randn(glob.shape, generator=gen, dtype=glob.dtype)
    wl = torch.randn(loc.shape, generator=gen, dtype=loc.dtype)
    return (glob * wg).sum() + (loc * wl).sum()


def test_loop_equals_per_position_bn_reference_and_flatten_differs():
    neck = make_neck(position_bn='loop').double().train()
    # Non-trivial running statistics and affine parameters to start from.
    for bn in (neck.global_proj[1], neck.local_proj[1]):
        gen = torch.Generator().manual_seed(13)
        bn.running_mean.copy_(torch.randn(HID, generator=gen))
        bn.running_var.copy_(torch.rand(HID, generator=gen) + 0.5)
        with torch.no_grad():
            bn.weight.copy_(torch.rand(HID, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(HID, generator=gen))
    flat = make_neck(position_bn='flatten').double().train()
    flat.load_state_dict(neck.state_dict())
    ref_neck = copy.deepcopy(neck)
    inputs = make_inputs(dtype=torch.float64)

    out = neck(inputs, batch_size=B, num_crops=CROPS)
    glob, loc, g_bn, h_bn = reference_forward(ref_neck, inputs, B, G)
    tol = dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out['global_emb'], glob, **tol)
    torch.testing.assert_close(out['local_emb'], loc, **tol)
    for bn, ref in ((neck.global_proj[1], g_bn), (neck.local_proj[1], h_bn)):
        torch.testing.assert_close(bn.running_mean, ref.mean, **tol)
        torch.testing.assert_close(bn.running_var, ref.var, **tol)
        assert int(bn.num_batches_tracked) == ref.count
    assert g_bn.count == P + 1 and h_bn.count == 1

    # Gradients agree too (same parameters, independent arithmetic).
    _loss(out['global_emb'], out['local_emb']).backward()
    _loss(glob, loc).backward()
    for (name, p), p_ref in zip(
        neck.named_parameters(), ref_neck.parameters(), strict=True
    ):
        torch.testing.assert_close(p.grad, p_ref.grad, **tol, msg=name)

    # 'flatten' pools the statistics over positions: different embeddings
    # and a different running mean after one update instead of P.
    out_flat = flat(inputs, batch_size=B, num_crops=CROPS)
    assert (out_flat['local_emb'] - loc).abs().max() > 1e-4
    assert (flat.global_proj[1].running_mean - g_bn.mean).abs().max() > 1e-4
    assert int(flat.global_proj[1].num_batches_tracked) == 2


def test_loop_and_flatten_agree_in_eval_mode():
    """The two modes differ only through the batch statistics."""
    loop = make_neck(position_bn='loop').eval()
    flat = make_neck(position_bn='flatten').eval()
    flat.load_state_dict(loop.state_dict())
    inputs = make_inputs()
    a = loop(inputs, batch_size=B, num_crops=CROPS)
    b = flat(inputs, batch_size=B, num_crops=CROPS)
    torch.testing.assert_close(a['local_emb'], b['local_emb'])
    torch.testing.assert_close(a['global_emb'], b['global_emb'])


@pytest.mark.parametrize(
    'position_bn, with_local, g_step, h_step',
    [('loop', True, P + 1, 1), ('flatten', True, 2, 1), ('loop', False, 1, 0)],
)
def test_num_batches_tracked_per_training_forward(
    position_bn, with_local, g_step, h_step
):
    neck = make_neck(position_bn=position_bn, with_local=with_local).train()
    inputs = make_inputs()
    for step in (1, 2):
        neck(inputs, batch_size=B, num_crops=CROPS)
        assert int(neck.global_proj[1].num_batches_tracked) == step * g_step
        if with_local:
            assert int(neck.local_proj[1].num_batches_tracked) == step * h_step
    neck.eval()
    neck(inputs, batch_size=B, num_crops=CROPS)
    assert int(neck.global_proj[1].num_batches_tracked) == 2 * g_step


def test_local_gradient_reaches_g_through_attention():
    neck = make_neck().train()
    out = neck(make_inputs(), batch_size=B, num_crops=CROPS)
    gen = torch.Generator().manual_seed(17)
    # The local embedding depends on g only through the attention weights.
    (
        out['local_emb'] * torch.randn(out['local_emb'].shape, generator=gen)
    ).sum().backward()
    for layer in (neck.global_proj[0], neck.global_proj[3]):
        assert layer.weight.grad is not None
        assert layer.weight.grad.abs().max() > 0
    assert neck.local_proj[0].weight.grad.abs().max() > 0


def test_default_sync_bn_runs_on_cpu_without_process_group():
    assert not (dist.is_available() and dist.is_initialized())
    torch.manual_seed(0)
    sync = GAELLENeck(C, HID, D, DL, G).train()  # norm_cfg=SyncBN default
    assert isinstance(sync.global_proj[1], nn.SyncBatchNorm)
    plain = make_neck().train()
    plain.load_state_dict(sync.state_dict())
    inputs = make_inputs()
    a = sync(inputs, batch_size=B, num_crops=CROPS)
    b = plain(inputs, batch_size=B, num_crops=CROPS)
    torch.testing.assert_close(a['global_emb'], b['global_emb'])
    torch.testing.assert_close(a['local_emb'], b['local_emb'])
    torch.testing.assert_close(
        sync.global_proj[1].running_mean, plain.global_proj[1].running_mean
    )


def test_bn_type_is_read_as_bn1d():
    neck = make_neck(norm_cfg=dict(type='BN'))
    assert type(neck.global_proj[1]) is nn.BatchNorm1d
    neck.train()(make_inputs(), batch_size=B, num_crops=CROPS)


def test_sync_bn_on_cpu_under_process_group_names_the_fix(tmp_path):
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1
    )
    try:
        neck = GAELLENeck(C, HID, D, DL, G).train()
        with pytest.raises(ValueError, match=r"norm_cfg=dict\(type='BN'\)"):
            neck(make_inputs(), batch_size=B, num_crops=CROPS)
        # BN and eval mode are fine under the group.
        make_neck().train()(make_inputs(), batch_size=B, num_crops=CROPS)
        neck.eval()(make_inputs(), batch_size=B, num_crops=CROPS)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(in_channels=18), r'in_channels=18 .*num_groups=4'),
        (dict(feat_dim=10), r'feat_dim=10 .*num_groups=4'),
        (dict(num_groups=3), r'in_channels=16 .*num_groups=3'),
        (dict(position_bn='batched'), r"position_bn .*'batched'"),
        (dict(attn_temperature=0.0), r'attn_temperature .*0\.0'),
        (dict(attn_temperature=-1.0), r'attn_temperature .*-1\.0'),
        (dict(attn_temperature=float('nan')), r'attn_temperature .*nan'),
        (dict(num_groups=0), r'num_groups .*0'),
        (dict(hid_channels=2.5), r'hid_channels .*2\.5'),
    ],
)
def test_construction_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_neck(**kwargs)


def test_forward_errors():
    neck = make_neck().train()
    inputs = make_inputs()
    with pytest.raises(ValueError, match=r'8 channels.*in_channels=16'):
        bad = [inputs[0][:, :8], inputs[1]]
        neck(bad, batch_size=B, num_crops=CROPS)
    with pytest.raises(ValueError, match=r'inputs\[1\] has 9 rows.*3 \* 2'):
        neck([inputs[0][:4], inputs[1]], batch_size=2, num_crops=CROPS)
    with pytest.raises(ValueError, match=r'len\(num_crops\)=1\), got 2'):
        neck(inputs, batch_size=B, num_crops=(5,))
    with pytest.raises(ValueError, match='non-empty list'):
        neck(inputs[0], batch_size=B, num_crops=CROPS)
    with pytest.raises(ValueError, match=r'4-D.*\(6, 16, 9\)'):
        neck([inputs[0].flatten(2), inputs[1]], batch_size=B, num_crops=CROPS)
    with pytest.raises(ValueError, match=r'batch_size .*0'):
        neck(inputs, batch_size=0, num_crops=CROPS)
