"""SSTConvHead: structure, keys, initialisation, forward and bad input.

``wsol_sst.md`` §3.3, §3.8 (cls and SOS heads differ only in the last 1×1
conv) and §11 (a head's ``in_channels`` must match the features).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from projects.wsol_sst.models.heads import SSTConvHead
from shared.registry import MODELS

#: Small widths for the functional tests; the real ones appear in the
#: structure and parameter-count tests.
CIN, MID, COUT = 24, 40, 7


@pytest.fixture(scope='module')
def small_head() -> SSTConvHead:
    torch.manual_seed(0)
    return SSTConvHead(CIN, MID, COUT).eval()


def head_param_count(cin: int, mid: int, cout: int) -> int:
    """Weights plus biases of conv3×3, conv3×3, conv1×1."""
    return (cin * mid * 9 + mid) + (mid * mid * 9 + mid) + (mid * cout + cout)


def test_registered_and_builds_from_config():
    head = MODELS.build(
        dict(
            type='SSTConvHead',
            in_channels=CIN,
            mid_channels=MID,
            out_channels=COUT,
        )
    )
    assert type(head) is SSTConvHead
    assert MODELS.get('SSTConvHead') is SSTConvHead


def test_layer_structure_and_keys(small_head):
    layers = small_head.layers
    assert isinstance(layers, nn.Sequential) and len(layers) == 5
    assert list(small_head.state_dict()) == [
        f'layers.{i}.{p}' for i in (0, 2, 4) for p in ('weight', 'bias')
    ]
    expected = [
        (CIN, MID, (3, 3), (1, 1)),
        (MID, MID, (3, 3), (1, 1)),
        (MID, COUT, (1, 1), (0, 0)),
    ]
    for idx, (cin, cout, kernel, pad) in zip((0, 2, 4), expected):
        conv = layers[idx]
        assert isinstance(conv, nn.Conv2d)
        assert (conv.in_channels, conv.out_channels) == (cin, cout)
        assert conv.kernel_size == kernel and conv.padding == pad
        assert conv.stride == (1, 1) and conv.dilation == (1, 1)
        assert conv.groups == 1 and conv.bias is not None
    assert isinstance(layers[1], nn.ReLU) and isinstance(layers[3], nn.ReLU)
    # No dropout or normalisation anywhere.
    assert not any(
        isinstance(m, (nn.Dropout, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm))
        for m in small_head.modules()
    )


def test_forward_matches_functional_reference(small_head):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, CIN, 5, 7, generator=gen)
    convs = [small_head.layers[i] for i in (0, 2, 4)]
    ref = F.relu(F.conv2d(x, convs[0].weight, convs[0].bias, padding=1))
    ref = F.relu(F.conv2d(ref, convs[1].weight, convs[1].bias, padding=1))
    ref = F.conv2d(ref, convs[2].weight, convs[2].bias)
    with torch.no_grad():
        out = small_head(x)
    assert out.shape == (2, COUT, 5, 7)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_sos_head_keeps_batch_and_channel_dims_at_batch_one():
    torch.manual_seed(0)
    sos = SSTConvHead(CIN, MID, out_channels=1).eval()
    x = torch.randn(1, CIN, 3, 4)
    out = sos(x)
    # The caller squeezes dim 1 explicitly; the head never drops B.
    assert out.shape == (1, 1, 3, 4)
    assert out.squeeze(1).shape == (1, 3, 4)


@pytest.mark.parametrize('cin,mid,cout', [(CIN, MID, COUT), (96, 160, 1)])
def test_xavier_uniform_weights_and_zero_bias(cin, mid, cout):
    torch.manual_seed(1)
    head = SSTConvHead(cin, mid, cout)
    for idx, (fan_in_c, fan_out_c) in zip(
        (0, 2, 4), ((cin, mid), (mid, mid), (mid, cout))
    ):
        conv = head.layers[idx]
        k = conv.kernel_size[0] * conv.kernel_size[1]
        bound = math.sqrt(6.0 / (fan_in_c * k + fan_out_c * k))
        weight = conv.weight.detach()
        assert weight.abs().max() <= bound
        assert torch.count_nonzero(conv.bias) == 0
        if weight.numel() >= 5000:
            # U(-a, a): std a/√3; the extremes come close to the bound,
            # which PyTorch's default (bound 1/√fan_in) would not reach.
            std = bound / math.sqrt(3.0)
            assert abs(weight.std().item() - std) < 0.03 * std
            assert weight.abs().max() > 0.98 * bound
            assert abs(weight.mean().item()) < 5 * std / weight.numel() ** 0.5


def test_init_weights_leaves_construction_init(small_head):
    torch.manual_seed(2)
    head = SSTConvHead(CIN, MID, COUT)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    head.init_weights()
    after = head.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize('cin', [512, 768])
def test_cls_and_sos_heads_differ_only_in_last_conv(cin):
    num_classes = 200
    cls_head = SSTConvHead(cin, out_channels=num_classes)
    sos_head = SSTConvHead(cin, out_channels=1)
    assert cls_head.mid_channels == sos_head.mid_channels == 1024
    cls_sd, sos_sd = cls_head.state_dict(), sos_head.state_dict()
    assert list(cls_sd) == list(sos_sd)
    differing = {k for k in cls_sd if cls_sd[k].shape != sos_sd[k].shape}
    assert differing == {'layers.4.weight', 'layers.4.bias'}
    n_cls = sum(p.numel() for p in cls_head.parameters())
    n_sos = sum(p.numel() for p in sos_head.parameters())
    assert n_cls == head_param_count(cin, 1024, num_classes)
    assert n_sos == head_param_count(cin, 1024, 1)
    # Last conv: 1024·Cout weights + Cout biases.
    assert n_cls - n_sos == (1024 + 1) * (num_classes - 1)


def test_missing_out_channels_raises():
    with pytest.raises(ValueError, match='out_channels must be given'):
        SSTConvHead(CIN, MID)


@pytest.mark.parametrize(
    'kwargs,name',
    [
        (dict(in_channels=0, mid_channels=MID, out_channels=3), 'in_channels'),
        (
            dict(in_channels=CIN, mid_channels=0, out_channels=3),
            'mid_channels',
        ),
        (
            dict(in_channels=CIN, mid_channels=MID, out_channels=-1),
            'out_channels',
        ),
    ],
)
def test_bad_channel_counts_raise(kwargs, name):
    with pytest.raises(ValueError, match=f'{name} must be >= 1, got'):
        SSTConvHead(**kwargs)


def test_channel_mismatch_raises_naming_both(small_head):
    with pytest.raises(ValueError) as err:
        small_head(torch.zeros(1, CIN + 8, 4, 4))
    msg = str(err.value)
    assert f'in_channels={CIN}' in msg and f'{(1, CIN + 8, 4, 4)}' in msg
    with pytest.raises(ValueError, match=r'got shape \(24, 4, 4\)'):
        small_head(torch.zeros(CIN, 4, 4))
