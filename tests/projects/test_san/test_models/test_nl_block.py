"""Tests for ``NLBlock`` (san.md §2.4, NL block)."""

import pytest
import torch
from torch import nn

from projects.san.models.nl_block import NLBlock


def _bn_eval(x, bn):
    """Eval-mode BatchNorm2d written out."""
    mean = bn.running_mean[None, :, None, None]
    var = bn.running_var[None, :, None, None]
    w = bn.weight[None, :, None, None]
    b = bn.bias[None, :, None, None]
    return (x - mean) / torch.sqrt(var + bn.eps) * w + b


def _conv1x1(x, conv):
    return (
        torch.einsum('nchw,oc->nohw', x, conv.weight[:, :, 0, 0])
        + (conv.bias[None, :, None, None])
    )


def _pool2(x):
    """2×2/2 max-pool with floor, by explicit reshaping."""
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    x = x.reshape(n, c, h // 2, 2, w // 2, 2)
    return x.amax(dim=(3, 5))


def _randomise(block):
    torch.manual_seed(1)
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)


def test_default_channels_and_keys():
    block = NLBlock(64)
    assert (block.inter_channels, block.g_channels) == (8, 16)
    assert set(block.state_dict()) == {
        f'{m}.{p}'
        for m, ps in {
            'bn': (
                'weight',
                'bias',
                'running_mean',
                'running_var',
                'num_batches_tracked',
            ),
            'W_z.0': (
                'weight',
                'bias',
                'running_mean',
                'running_var',
                'num_batches_tracked',
            ),
            'theta': ('weight', 'bias'),
            'phi.0': ('weight', 'bias'),
            'g.0': ('weight', 'bias'),
            'W_z.2': ('weight', 'bias'),
        }.items()
        for p in ps
    }
    assert block.theta.weight.shape == (8, 64, 1, 1)
    assert block.phi[0].weight.shape == (8, 64, 1, 1)
    assert block.g[0].weight.shape == (16, 64, 1, 1)
    assert block.W_z[0].num_features == 16
    assert block.W_z[2].weight.shape == (64, 16, 1, 1)
    assert isinstance(block.phi[1], nn.MaxPool2d)
    assert isinstance(block.g[1], nn.MaxPool2d)
    # Small widths clamp to one channel.
    tiny = NLBlock(4)
    assert (tiny.inter_channels, tiny.g_channels) == (1, 1)
    # Parameter count: bn 2C, θ/φ C·i+i each, g C·gc+gc, W_z 2gc + gc·C+C.
    c, i, gc = 64, 8, 16
    expected = 2 * c + 2 * (c * i + i) + (c * gc + gc) + 2 * gc + gc * c + c
    assert sum(p.numel() for p in block.parameters()) == expected


@pytest.mark.parametrize('hw', [(6, 8), (5, 7)])
def test_forward_matches_explicit_formula(hw):
    block = NLBlock(32).double()
    _randomise(block)
    block.eval()
    x = torch.randn(2, 32, *hw, dtype=torch.float64)
    out = block(x)

    a = torch.relu(_bn_eval(x, block.bn))
    theta = _conv1x1(a, block.theta)
    phi = _pool2(_conv1x1(a, block.phi[0]))
    g = _pool2(_conv1x1(a, block.g[0]))
    n, _, h, w = x.shape
    hp, wp = h // 2, w // 2
    num_pooled = hp * wp
    y = torch.zeros(n, block.g_channels, h, w, dtype=torch.float64)
    # y[:, :, p] = Σ_q (θ_p · φ_q / Np) g_q, position by position.
    for ph in range(h):
        for pw in range(w):
            for qh in range(hp):
                for qw in range(wp):
                    f = (theta[:, :, ph, pw] * phi[:, :, qh, qw]).sum(1)
                    y[:, :, ph, pw] += (
                        f[:, None] / num_pooled * g[:, :, qh, qw]
                    )
    z = _conv1x1(torch.relu(_bn_eval(y, block.W_z[0])), block.W_z[2])
    torch.testing.assert_close(out, x + z, rtol=1e-10, atol=1e-10)
    # The non-local term is not negligible, so the comparison has teeth.
    assert (out - x).abs().max() > 1e-2


def test_zero_output_conv_gives_identity_and_input_is_untouched():
    block = NLBlock(16)
    nn.init.zeros_(block.W_z[2].weight)
    nn.init.zeros_(block.W_z[2].bias)
    x = torch.randn(2, 16, 4, 6)
    x_copy = x.clone()
    out = block(x)
    torch.testing.assert_close(out, x)
    # The in-place pre-activation ReLU must not modify the residual input.
    torch.testing.assert_close(x, x_copy)


def test_gradients_reach_every_parameter():
    block = NLBlock(16)
    block(torch.randn(2, 16, 4, 4)).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_errors():
    with pytest.raises(NotImplementedError, match="mode='dot'"):
        NLBlock(16, mode='embedded')
    with pytest.raises(ValueError, match='in_channels'):
        NLBlock(0)
    block = NLBlock(16)
    with pytest.raises(ValueError, match=r'\(N, 16, H, W\)'):
        block(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match='>= 2'):
        block(torch.randn(2, 16, 1, 4))
