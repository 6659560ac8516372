"""Tests of ``SAM`` (``san.md`` §2.1; §6 items 9-12).

The references below gather reflect-padded neighbours with explicit index
arithmetic, independent of :mod:`shared.ops`.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from projects.san.models.sam import SAM, position_map
from shared.ops import Aggregation, Subtraction, Subtraction2


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """One reflection without repeating the edge (ReflectionPad2d)."""
    index = torch.where(index < 0, -index, index)
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def neighbours(x: torch.Tensor, k: int, d: int = 1) -> torch.Tensor:
    """X̃ at every slot: (N, C, H, W) -> (N, C, k*k, H*W), slot a*k+b."""
    n, c, h, w = x.shape
    p = d * (k - 1) // 2
    rows, cols = torch.arange(h), torch.arange(w)
    slots = []
    for a in range(k):
        for b in range(k):
            ih = _reflect(rows - p + a * d, h)
            iw = _reflect(cols - p + b * d, w)
            slots.append(x[:, :, ih][:, :, :, iw].reshape(n, c, h * w))
    return torch.stack(slots, 2)


def formula_positions(h: int, w: int) -> torch.Tensor:
    """P⁰ from the formula, (1, 2, H, W) float64."""
    p = torch.empty(1, 2, h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            p[0, 0, i, j] = -1 + 2 * j / (w - 1)
            p[0, 1, i, j] = -1 + 2 * i / (h - 1)
    return p


def reference_forward(sam: SAM, x: torch.Tensor) -> torch.Tensor:
    """SAM's forward restated with explicit gathers (no shared.ops)."""
    n, _, h, w = x.shape
    k, d = sam.kernel_size, sam.dilation
    r, m, cw = sam.rel_channels, sam.mid_channels, sam.weight_channels
    length = h * w
    phi, psi, beta = sam.conv1(x), sam.conv2(x), sam.conv3(x)
    if sam.sa_type == 'pairwise':
        rel = phi.view(n, r, 1, length) - neighbours(psi, k, d)
        pp = sam.conv_p(formula_positions(h, w).to(x.dtype))
        pos = pp.view(1, 2, 1, length) - neighbours(pp, k, d)
        delta = torch.cat([rel, pos.expand(n, -1, -1, -1)], 1)
        alpha = torch.softmax(sam.conv_w(delta), dim=2)
    else:
        keys = neighbours(psi, k, d).reshape(n, r * k * k, 1, length)
        gamma = sam.conv_w(torch.cat([phi.view(n, r, 1, length), keys], 1))
        alpha = gamma.view(n, cw, k * k, length)
    alpha = alpha[:, torch.arange(m) % cw]  # interleaved sharing
    out = (alpha * neighbours(beta, k, d)).sum(2)
    return out.view(n, m, h, w)


def _randomise_bn(module: nn.Module, gen: torch.Generator) -> None:
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            c = bn.num_features
            bn.weight.data = torch.rand(c, generator=gen).double() + 0.5
            bn.bias.data = torch.randn(c, generator=gen).double()
            bn.running_mean = torch.randn(c, generator=gen).double()
            bn.running_var = torch.rand(c, generator=gen).double() + 0.5


@pytest.mark.parametrize('sa_type', ['pairwise', 'patchwise'])
@pytest.mark.parametrize(
    ('k', 'd', 'hw'), [(3, 1, (7, 6)), (5, 2, (9, 6)), (7, 1, (8, 11))]
)
def test_forward_matches_explicit_reference(sa_type, k, d, hw):
    torch.manual_seed(0)
    sam = SAM(sa_type, 64, kernel_size=k, dilation=d).double()
    _randomise_bn(sam, torch.Generator().manual_seed(1))
    x = torch.randn(2, 64, *hw, dtype=torch.float64)
    for mode in (True, False):  # batch statistics, then running ones
        sam.train(mode)
        out = sam(x)
        assert out.shape == (2, 16, *hw)
        assert out.dtype == torch.float64
        torch.testing.assert_close(
            out, reference_forward(sam, x), rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize('sa_type', ['pairwise', 'patchwise'])
def test_stage1_intermediate_shapes(sa_type):
    """§2.1 shapes for C=256, k=7 on 56² (one image)."""
    torch.manual_seed(0)
    sam = SAM(sa_type, 256, kernel_size=7).eval()
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = ([tuple(a.shape) for a in args], tuple(out.shape))

        return hook

    names = ['conv1', 'conv2', 'conv3', 'conv_w', 'aggregation']
    names += (
        ['subtraction2', 'softmax'] if sa_type == 'pairwise' else ['unfold_j']
    )
    for name in names:
        getattr(sam, name).register_forward_hook(record(name))
    with torch.no_grad():
        out = sam(torch.randn(1, 256, 56, 56))
    assert seen['conv1'][1] == seen['conv2'][1] == (1, 16, 56, 56)
    assert seen['conv3'][1] == (1, 64, 56, 56)
    if sa_type == 'pairwise':
        assert seen['subtraction2'][1] == (1, 16, 49, 3136)
        assert seen['conv_w'][0] == [(1, 18, 49, 3136)]  # δ
        assert seen['softmax'][1] == (1, 8, 49, 3136)  # α
    else:
        assert seen['unfold_j'][1] == (1, 784, 3136)  # keys
        assert seen['conv_w'][0] == [(1, 800, 1, 3136)]  # δ
        assert seen['conv_w'][1] == (1, 392, 1, 3136)  # γ
    assert seen['aggregation'][0] == [(1, 64, 56, 56), (1, 8, 49, 3136)]
    assert out.shape == (1, 64, 56, 56)


def test_pairwise_weights_sum_to_one_over_slots():
    torch.manual_seed(0)
    sam = SAM('pairwise', 64, kernel_size=5).double().train()
    captured = {}
    sam.aggregation.register_forward_hook(
        lambda mod, args, out: captured.update(alpha=args[1])
    )
    sam(torch.randn(2, 64, 9, 7, dtype=torch.float64))
    alpha = captured['alpha']
    assert alpha.shape == (2, 2, 25, 63)
    assert (alpha > 0).all()
    torch.testing.assert_close(
        alpha.sum(2), torch.ones(2, 2, 63, dtype=torch.float64)
    )
    # Not uniform: the weights really depend on the input.
    assert alpha.std() > 1e-3


@pytest.mark.parametrize('channel', [0, 4, 11, 16])
def test_patchwise_channel_to_weight_and_slot(channel):
    """conv_w output channel o drives weight channel o//K at slot o%K."""
    torch.manual_seed(0)
    sam = SAM('patchwise', 64, kernel_size=3).double().eval()
    k2, cw = 9, sam.weight_channels
    last = sam.conv_w[5]
    last.weight.data.zero_()
    last.bias.data.zero_()
    last.bias.data[channel] = 1.0
    captured = {}
    sam.aggregation.register_forward_hook(
        lambda mod, args, out: captured.update(beta=args[0], alpha=args[1])
    )
    x = torch.randn(2, 64, 6, 5, dtype=torch.float64)
    out = sam(x)
    group, slot = divmod(channel, k2)
    expected_alpha = torch.zeros(2, cw, k2, 30, dtype=torch.float64)
    expected_alpha[:, group, slot] = 1.0
    torch.testing.assert_close(captured['alpha'], expected_alpha)
    # The output is β read at that slot, in channels c ≡ group (mod Cw).
    beta_at_slot = neighbours(captured['beta'], 3)[:, :, slot].view(
        2, 16, 6, 5
    )
    served = (torch.arange(16) % cw) == group
    torch.testing.assert_close(out[:, served], beta_at_slot[:, served])
    assert out[:, ~served].abs().max() == 0


def test_position_map_formula_and_channel_order():
    p = position_map(5, 7, torch.float64)
    assert p.shape == (1, 2, 5, 7)
    torch.testing.assert_close(p, formula_positions(5, 7), rtol=0, atol=1e-15)
    # Channel 0 runs along the width, channel 1 down the height.
    assert p[0, 0, 3, 0] == -1 and p[0, 0, 3, 6] == 1
    assert p[0, 1, 0, 4] == -1 and p[0, 1, 4, 4] == 1
    assert position_map(3, 4, torch.float16).dtype == torch.float16
    assert position_map(1, 1).tolist() == [[[[-1.0]], [[-1.0]]]]


def test_position_relation_uses_reflected_coordinates():
    """With conv_p = identity, δ's last two channels are P(centre) − P̃."""
    sam = SAM('pairwise', 32, kernel_size=3).double().train()
    sam.conv_p.weight.data = torch.eye(2, dtype=torch.float64).view(2, 2, 1, 1)
    sam.conv_p.bias.data.zero_()
    captured = {}
    sam.conv_p.register_forward_hook(
        lambda mod, args, out: captured.update(pos_in=args[0])
    )
    sam.conv_w.register_forward_pre_hook(
        lambda mod, args: captured.update(delta=args[0])
    )
    h, w = 6, 5
    sam(torch.randn(2, 32, h, w, dtype=torch.float64))
    assert captured['pos_in'].dtype == torch.float64
    pos = captured['delta'][:, 2:]  # r = 2 relation channels first
    assert pos.shape == (2, 2, 9, h * w)
    p = formula_positions(h, w)
    expected = p.view(1, 2, 1, h * w) - neighbours(p, 3)
    torch.testing.assert_close(pos, expected.expand(2, -1, -1, -1))
    # Corner (0, 0), slot (0, 0): the neighbour (-1, -1) reflects to (1, 1).
    corner = pos[0, :, 0, 0]
    torch.testing.assert_close(
        corner, torch.tensor([-2 / (w - 1), -2 / (h - 1)], dtype=torch.float64)
    )


@pytest.mark.parametrize('sa_type', ['pairwise', 'patchwise'])
def test_modules_keys_and_no_extra_state(sa_type):
    sam = SAM(sa_type, 256, kernel_size=7)
    assert type(sam.aggregation) is Aggregation
    assert sam.aggregation.padding == (3, 3)
    assert sam.aggregation.pad_mode == 'reflect'
    if sa_type == 'pairwise':
        assert type(sam.subtraction) is Subtraction
        assert type(sam.subtraction2) is Subtraction2
        assert tuple(sam.conv_w[2].weight.shape) == (16, 18, 1, 1)
        assert sam.conv_w[2].bias is None
        assert tuple(sam.conv_w[5].weight.shape) == (8, 16, 1, 1)
        assert tuple(sam.conv_p.weight.shape) == (2, 2, 1, 1)
    else:
        assert isinstance(sam.pad, nn.ReflectionPad2d)
        assert isinstance(sam.unfold_j, nn.Unfold)
        assert tuple(sam.conv_w[2].weight.shape) == (8, 800, 1, 1)
        assert tuple(sam.conv_w[5].weight.shape) == (392, 8, 1, 1)
        assert not hasattr(sam, 'conv_p')
    # The only buffers are BN statistics (the position map is not one).
    for name, _ in sam.named_buffers():
        assert name.split('.')[:2] in (['conv_w', '0'], ['conv_w', '3'])
    params = {name for name, _ in sam.named_parameters()}
    expected = {
        f'{conv}.{kind}'
        for conv in ('conv1', 'conv2', 'conv3', 'conv_w.5')
        for kind in ('weight', 'bias')
    } | {'conv_w.0.weight', 'conv_w.0.bias', 'conv_w.2.weight'}
    expected |= {'conv_w.3.weight', 'conv_w.3.bias'}
    if sa_type == 'pairwise':
        expected |= {'conv_p.weight', 'conv_p.bias'}
    assert params == expected


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        (dict(sa_type=0, channels=64), 'sa_type'),
        (dict(sa_type=1, channels=64), 'sa_type'),
        (dict(sa_type='pair', channels=64), 'sa_type'),
        (dict(sa_type='pairwise', channels=48), r'multiple of 32 .*got 48'),
        (dict(sa_type='pairwise', channels=64, kernel_size=4), 'odd'),
        (dict(sa_type='patchwise', channels=64, dilation=0), 'dilation'),
        (dict(sa_type='patchwise', channels=64, stride=2), 'stride 1'),
        (dict(sa_type='pairwise', channels=64, stride=2), 'stride 1'),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAM(**kwargs)


@pytest.mark.parametrize('sa_type', ['pairwise', 'patchwise'])
def test_input_errors(sa_type):
    sam = SAM(sa_type, 64, kernel_size=7)
    with pytest.raises(ValueError, match=r'3x8 map is too small'):
        sam(torch.randn(1, 64, 3, 8))
    with pytest.raises(ValueError, match=r'\(N, 64, H, W\)'):
        sam(torch.randn(1, 32, 8, 8))
    assert sam(torch.randn(1, 64, 4, 5)).shape == (1, 16, 4, 5)
