"""Tests for ``SANMixedNet`` (san.md §2.4, §6 items 14-16)."""

import math

import pytest
import torch
import torchvision
from torch import nn

from projects.san.models.mixed_net import (
    ARCH_PRESETS,
    PreActBottleneck,
    SANMixedNet,
    TransitionLayer,
    nl_interleave,
)
from projects.san.models.nl_block import NLBlock
from projects.san.models.san import SAN, SANBlock
from projects.san.models.san_resnet import SANResNet
from shared.registry import MODELS

RES_W = (256, 512, 1024, 2048)
SAN_W = (64, 256, 512, 1024, 2048)
FC_1000 = 2048 * 1000 + 1000


def _symbols(blocks):
    names = {
        TransitionLayer: 'T',
        PreActBottleneck: 'R',
        NLBlock: 'NL',
        SANBlock: 'S',
    }
    return [names[type(m)] for m in blocks]


def _num_params(module):
    return sum(p.numel() for p in module.parameters())


def _meta_count(**kwargs):
    """Parameter count of a model built on the meta device (no memory)."""
    with torch.device('meta'):
        return _num_params(SANMixedNet(weight_init=None, **kwargs))


# ---------------------------------------------------------------- interleave


@pytest.mark.parametrize(
    ('stage_type', 'n', 'q', 'expected'),
    [
        # The examples of the spec / the fork's docstrings.
        ('res', 6, 2, 'R R R NL R R NL R'),
        ('res', 6, 3, 'R NL R R NL R R NL R'),
        ('res', 6, 4, 'R R NL R NL R NL R NL R'),
        ('res', 1, 1, 'T NL R'),
        ('san', 2, 2, 'NL S NL S'),
        ('san', 6, 2, 'S S S NL S S NL S'),
        ('san', 6, 3, 'S NL S S NL S S NL S'),
        ('san', 6, 4, 'S S NL S NL S NL S NL S'),
        ('san', 1, 1, 'NL S'),
        ('res', 2, 1, 'R NL R'),
        ('res', 3, 3, 'T NL R NL R NL R'),
        ('res', 4, 0, 'R R R R'),
        ('san', 3, 0, 'S S S'),
    ],
)
def test_nl_interleave_examples(stage_type, n, q, expected):
    order = nl_interleave(stage_type, n, q)
    assert order == expected.split()
    assert order.count('NL') == q
    assert order.count('R' if stage_type == 'res' else 'S') == n
    assert order[-1] != 'NL'


@pytest.mark.parametrize(
    ('stage_type', 'n', 'q'),
    [('res', 2, 3), ('san', 1, 2), ('res', 2, -1), ('nl', 2, 1)],
)
def test_nl_interleave_rejects_invalid(stage_type, n, q):
    with pytest.raises(ValueError):
        nl_interleave(stage_type, n, q)


def test_built_res_stages_follow_interleave():
    model = SANMixedNet(
        layers=(6, 6, 1),
        layer_types=('res', 'res', 'res'),
        widths=(16, 32, 64),
        added_nl_blocks=(2, 4, 1),
    )
    blocks = [model.stages[i][0] for i in range(3)]
    assert _symbols(blocks[0]) == 'R R R NL R R NL R'.split()
    assert _symbols(blocks[1]) == 'R R NL R NL R NL R NL R'.split()
    assert _symbols(blocks[2]) == ['T', 'NL', 'R']
    # Stage 0 projects 64→16 at stride 1, stage 1 projects at stride 2.
    assert blocks[0][0].downsample[0].stride == (1, 1)
    assert blocks[1][0].conv2.stride == (2, 2)
    assert blocks[1][0].downsample[0].stride == (2, 2)
    assert all(
        b.downsample is None
        for b in list(blocks[0])[1:]
        if isinstance(b, PreActBottleneck)
    )
    # q = n: the transition changes the shape, so no block projects.
    assert blocks[2][2].downsample is None
    assert blocks[2][2].conv2.stride == (1, 1)
    assert blocks[2][0][3].in_channels == 32
    model.out_indices = (0, 1, 2)
    outs = model(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [
        (2, 16, 8, 8),
        (2, 32, 4, 4),
        (2, 64, 2, 2),
    ]


def test_built_san_stages_follow_interleave():
    model = SANMixedNet(
        layers=(2, 6),
        layer_types=('san', 'san'),
        widths=(32, 64),
        sa_type='patchwise',
        added_nl_blocks=(2, 3),
        out_indices=(0, 1),
    )
    for i, expected in enumerate(['NL S NL S', 'S NL S S NL S S NL S']):
        stage = model.stages[i]
        assert isinstance(stage[0], TransitionLayer)
        assert _symbols(stage[1]) == expected.split()
        kernels = {
            b.sam.kernel_size for b in stage[1] if isinstance(b, SANBlock)
        }
        assert kernels == {3 if i == 0 else 7}
        assert {
            b.sam.sa_type for b in stage[1] if isinstance(b, SANBlock)
        } == {'patchwise'}
    outs = model(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 16, 16), (2, 64, 8, 8)]


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(layers=(1, 2), added_nl_blocks=(0, 3)),
        dict(layers=(1, 2), added_nl_blocks=(2, 0)),
        dict(layers=(1, 2), added_nl_blocks=(0, -1)),
        dict(layers=(1, 2), added_nl_blocks=(0, 1, 0)),
        dict(
            layers=(1, 2),
            layer_types=('res', 'nl'),
            added_nl_blocks=(0, 1),
        ),
        dict(
            layers=(1, 2),
            layer_types=('res', 'san'),
            sa_type='pairwise',
            added_nl_blocks=(0, 3),
        ),
    ],
)
def test_invalid_added_nl_blocks_raise(kwargs):
    kwargs = dict(dict(layer_types=('res', 'res'), widths=(32, 64)), **kwargs)
    with pytest.raises(ValueError, match='added_nl_blocks'):
        SANMixedNet(**kwargs)


# ------------------------------------------------------------ argument errors


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        (dict(arch='resnet50'), r"unknown arch 'resnet50'.*resnet26"),
        (dict(arch='resnet26', layers=(1, 1, 1, 1)), 'fixes the structure'),
        (dict(layers=(1, 1)), 'give arch'),
        (
            dict(layers=(1, 1), layer_types=('res',), widths=(32, 64)),
            'equal length',
        ),
        (
            dict(layers=(1,), layer_types=('res',), widths=(32, 64)),
            'equal length',
        ),
        (dict(layers=(), layer_types=(), widths=()), 'non-empty'),
        (
            dict(layers=(1,), layer_types=('conv',), widths=(32,)),
            r"unknown type 'conv'.*'res', 'san', 'nl'",
        ),
        (
            dict(layers=(1,), layer_types=('san',), widths=(64,)),
            r"sa_type in \['pairwise', 'patchwise'\], got None",
        ),
        (
            dict(layers=(1,), layer_types=('san',), widths=(64,), sa_type=0),
            'sa_type',
        ),
        (
            dict(layers=(1,), layer_types=('res',), widths=(32,), sa_type=1),
            'sa_type must be one of',
        ),
        (
            dict(layers=(1,), layer_types=('res',), widths=(30,)),
            'not divisible by 4',
        ),
        (
            dict(
                layers=(1,),
                layer_types=('san',),
                widths=(48,),
                sa_type='pairwise',
            ),
            'not divisible by 32',
        ),
        (
            dict(layers=(0,), layer_types=('res',), widths=(32,)),
            '>= 1 block',
        ),
        (dict(arch='resnet26', out_indices=(4,)), 'out_indices'),
        (dict(arch='resnet26', weight_init='kaiming'), 'weight_init'),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SANMixedNet(**kwargs)


# ------------------------------------------------------------------- presets


def test_preset_table():
    def p(types, layers, widths=RES_W, sa=None, nl=None):
        return dict(
            layer_types=tuple(types),
            layers=layers,
            widths=widths,
            sa_type=sa,
            added_nl_blocks=nl,
        )

    res4, nl4 = ('res',) * 4, (0, 1, 2, 0)
    expected = {
        'resnet26': p(res4, (1, 2, 4, 1)),
        'resnet26_nl': p(res4, (1, 1, 2, 1), nl=nl4),
        'hybrid_nl_2-2': p(('res', 'res', 'nl', 'nl'), (1, 2, 4, 1)),
        'hybrid_nl_3-1': p(('res', 'res', 'res', 'nl'), (1, 2, 4, 1)),
        'nl': p(('nl',) * 4, (3, 2, 4, 1)),
    }
    for short, sa in (('pair', 'pairwise'), ('patch', 'patchwise')):
        t22 = ('res', 'res', 'san', 'san')
        t31 = ('res', 'res', 'res', 'san')
        expected[f'hybrid_{short}_2-2'] = p(t22, (1, 2, 4, 1), sa=sa)
        expected[f'hybrid_{short}_2-2_nl'] = p(
            t22, (1, 1, 2, 1), sa=sa, nl=nl4
        )
        expected[f'hybrid_{short}_3-1'] = p(t31, (1, 2, 4, 1), sa=sa)
        expected[f'hybrid_{short}_3-1_nl'] = p(
            t31, (1, 1, 2, 1), sa=sa, nl=nl4
        )
        san5 = ('san',) * 5
        expected[f'san10_{sa}'] = p(san5, (2, 1, 2, 4, 1), SAN_W, sa)
        expected[f'san10_{sa}_nl'] = p(
            san5, (2, 1, 1, 2, 1), SAN_W, sa, (0, 0, 1, 2, 0)
        )
    assert ARCH_PRESETS == expected


@pytest.mark.parametrize('arch', sorted(ARCH_PRESETS))
def test_every_preset_builds_on_meta(arch):
    with torch.device('meta'):
        model = SANMixedNet(arch)
    preset = ARCH_PRESETS[arch]
    assert model.layer_types == preset['layer_types']
    assert len(model.stages) == len(preset['layers'])
    # Blocks per stage: res/SAN/NL blocks plus the added NL blocks.
    added = preset['added_nl_blocks'] or (0,) * len(preset['layers'])
    for i, stage in enumerate(model.stages):
        body = stage[1] if isinstance(stage[0], TransitionLayer) else stage[0]
        syms = _symbols(body)
        assert len([s for s in syms if s != 'T']) == (
            preset['layers'][i] + added[i]
        )
    last = model.stages[-1]
    assert isinstance(last[-2], nn.BatchNorm2d)
    assert last[-2].num_features == preset['widths'][-1]
    assert isinstance(last[-1], nn.ReLU)


def _bn_keys(prefix):
    return {
        f'{prefix}.{p}'
        for p in (
            'weight',
            'bias',
            'running_mean',
            'running_var',
            'num_batches_tracked',
        )
    }


def _res_block_keys(prefix, downsample):
    keys = set()
    for j in (1, 2, 3):
        keys |= _bn_keys(f'{prefix}.bn{j}') | {f'{prefix}.conv{j}.weight'}
    if downsample:
        keys |= {f'{prefix}.downsample.0.weight'}
        keys |= _bn_keys(f'{prefix}.downsample.1')
    return keys


def _nl_block_keys(prefix):
    keys = _bn_keys(f'{prefix}.bn') | _bn_keys(f'{prefix}.W_z.0')
    for conv in ('theta', 'phi.0', 'g.0', 'W_z.2'):
        keys |= {f'{prefix}.{conv}.weight', f'{prefix}.{conv}.bias'}
    return keys


def test_resnet26_keys():
    with torch.device('meta'):
        model = SANMixedNet('resnet26')
    expected = {'stem.0.weight'} | _bn_keys('stages.3.1')
    for i, n in enumerate((1, 2, 4, 1)):
        for j in range(n):
            expected |= _res_block_keys(f'stages.{i}.0.{j}', j == 0)
    assert set(model.state_dict()) == expected
    sd = model.state_dict()
    assert sd['stem.0.weight'].shape == (64, 3, 7, 7)
    assert sd['stages.0.0.0.conv2.weight'].shape == (64, 64, 3, 3)
    assert sd['stages.0.0.0.bn1.weight'].shape == (64,)
    assert sd['stages.1.0.0.downsample.0.weight'].shape == (512, 256, 1, 1)
    assert sd['stages.3.0.0.conv3.weight'].shape == (2048, 512, 1, 1)


def test_nl_and_resnet26_nl_keys():
    with torch.device('meta'):
        model = SANMixedNet('nl')
    expected = {'stem.weight'} | _bn_keys('stages.3.2')
    in_w = (64,) + RES_W[:-1]
    for i, n in enumerate((3, 2, 4, 1)):
        expected |= _bn_keys(f'stages.{i}.0.0')
        expected |= {f'stages.{i}.0.3.weight'}
        for j in range(n):
            expected |= _nl_block_keys(f'stages.{i}.1.{j}')
    assert set(model.state_dict()) == expected
    sd = model.state_dict()
    for i in range(4):
        assert sd[f'stages.{i}.0.3.weight'].shape == (RES_W[i], in_w[i], 1, 1)
    assert sd['stages.2.1.0.theta.weight'].shape == (128, 1024, 1, 1)
    assert sd['stages.2.1.0.g.0.weight'].shape == (256, 1024, 1, 1)
    assert sd['stages.2.1.0.W_z.2.weight'].shape == (1024, 256, 1, 1)

    with torch.device('meta'):
        keys = set(SANMixedNet('resnet26_nl').state_dict())
    # Stage 1: 1 block + 1 NL → [T, NL, R] inside the block list.
    stage1 = {k for k in keys if k.startswith('stages.1.')}
    assert stage1 == (
        _bn_keys('stages.1.0.0.0')
        | {'stages.1.0.0.3.weight'}
        | _nl_block_keys('stages.1.0.1')
        | _res_block_keys('stages.1.0.2', downsample=False)
    )
    # Stage 2: 2 blocks + 2 NL → [T, NL, R, NL, R].
    assert 'stages.2.0.3.theta.weight' in keys
    assert 'stages.2.0.4.conv3.weight' in keys
    assert not any(k.startswith('stages.2.0.5') for k in keys)


@pytest.mark.parametrize(
    ('arch', 'size', 'expected'),
    [
        ('resnet26', 64, [(256, 16), (512, 8), (1024, 4), (2048, 2)]),
        ('hybrid_nl_3-1', 64, [(256, 16), (512, 8), (1024, 4), (2048, 2)]),
        # SAN stem: the stages run at size/2 … size/16 (112…14 at 224²).
        ('nl', 64, [(256, 32), (512, 16), (1024, 8), (2048, 4)]),
        (
            'hybrid_patch_2-2_nl',
            128,
            [(256, 32), (512, 16), (1024, 8), (2048, 4)],
        ),
    ],
)
def test_preset_shapes(arch, size, expected):
    torch.manual_seed(0)
    model = SANMixedNet(arch, out_indices=(0, 1, 2, 3))
    outs = model(torch.randn(2, 3, size, size))
    assert [tuple(o.shape) for o in outs] == [
        (2, c, s, s) for c, s in expected
    ]
    assert model.stage_sizes(size) == [s for _, s in expected]
    assert (outs[-1] >= 0).all()  # final BN + ReLU
    assert torch.isfinite(outs[-1]).all()


@pytest.mark.parametrize(
    ('arch', 'minimum', 'sizes_224'),
    [
        ('san10_pairwise', 128, [112, 56, 28, 14, 7]),
        ('hybrid_patch_2-2', 121, [56, 28, 14, 7]),
        ('nl', 32, [112, 56, 28, 14]),
        ('resnet26_nl', 29, [56, 28, 14, 7]),
        ('resnet26', 1, [56, 28, 14, 7]),
    ],
)
def test_min_input_size(arch, minimum, sizes_224):
    with torch.device('meta'):
        model = SANMixedNet(arch, weight_init=None)
    assert model.stage_sizes(224) == sizes_224
    assert model.min_input_size() == minimum
    if minimum > 1:
        # Checked up front, before any compute, naming the minimum.
        with pytest.raises(ValueError, match=f'at least {minimum} pixels'):
            model(torch.empty(1, 3, minimum, minimum - 1, device='meta'))


def test_smallest_input_runs():
    model = SANMixedNet('hybrid_pair_2-2').eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 121, 125))[0]
    assert out.shape == (1, 2048, 4, 4)
    with pytest.raises(ValueError, match=r"stage 3 \('san'\)"):
        model(torch.randn(1, 3, 120, 125))
    with pytest.raises(ValueError, match='expected'):
        model(torch.randn(3, 121, 121))


def test_registry_build_and_negative_out_indices():
    model = MODELS.build(
        dict(type='SANMixedNet', arch='resnet26', out_indices=(-2, -1))
    )
    assert isinstance(model, SANMixedNet)
    assert model.out_indices == (2, 3)
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [1024, 2048]


# ------------------------------------------------------------- semantics


def test_stems_and_transition():
    with torch.device('meta'):
        res = SANMixedNet('resnet26')
        san = SANMixedNet('san10_pairwise')
    conv, pool = res.stem
    assert len(res.stem) == 2  # no BN/ReLU: the net is pre-activation
    assert (conv.kernel_size, conv.stride, conv.padding) == (
        (7, 7),
        (2, 2),
        (3, 3),
    )
    assert conv.bias is None and conv.in_channels == 3
    assert conv.out_channels == 64
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    assert isinstance(san.stem, nn.Conv2d)
    assert san.stem.kernel_size == (1, 1) and san.stem.bias is None
    t = san.stages[1][0]
    assert [type(m) for m in t] == [
        nn.BatchNorm2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.Conv2d,
    ]
    assert t[0].num_features == 64 and t[3].out_channels == 256
    assert (t[2].kernel_size, t[2].stride) == (2, 2)
    assert t[3].bias is None and t[3].kernel_size == (1, 1)


def _bn(x, bn):
    shape = (1, -1, 1, 1)
    return (x - bn.running_mean.view(shape)) / torch.sqrt(
        bn.running_var.view(shape) + bn.eps
    ) * bn.weight.view(shape) + bn.bias.view(shape)


def test_preact_bottleneck_formula():
    torch.manual_seed(0)
    model = SANMixedNet(
        layers=(1, 2),
        layer_types=('res', 'res'),
        widths=(16, 32),
    ).double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    model.eval()
    block = model.stages[1][0][0]
    x = torch.randn(2, 16, 7, 6, dtype=torch.float64)
    conv2d = torch.nn.functional.conv2d
    out = conv2d(torch.relu(_bn(x, block.bn1)), block.conv1.weight)
    out = conv2d(
        torch.relu(_bn(out, block.bn2)),
        block.conv2.weight,
        stride=2,
        padding=1,
    )
    out = conv2d(torch.relu(_bn(out, block.bn3)), block.conv3.weight)
    shortcut = _bn(
        conv2d(x, block.downsample[0].weight, stride=2), block.downsample[1]
    )
    x_copy = x.clone()
    got = block(x)
    torch.testing.assert_close(got, out + shortcut, rtol=1e-10, atol=1e-10)
    assert (got < 0).any()  # no ReLU after the add
    torch.testing.assert_close(x, x_copy)
    # Identity shortcut in the second block.
    block2 = model.stages[1][0][1]
    y = torch.randn(2, 32, 4, 3, dtype=torch.float64)
    ref = conv2d(torch.relu(_bn(y, block2.bn1)), block2.conv1.weight)
    ref = conv2d(
        torch.relu(_bn(ref, block2.bn2)), block2.conv2.weight, padding=1
    )
    ref = conv2d(torch.relu(_bn(ref, block2.bn3)), block2.conv3.weight)
    torch.testing.assert_close(block2(y), ref + y, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------- init


def test_fork_init_statistics():
    torch.manual_seed(0)
    model = SANMixedNet('hybrid_pair_2-2_nl')
    checked = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight
            fan_out = m.out_channels * w.shape[2] * w.shape[3]
            if w.numel() >= 4096:
                std = math.sqrt(2.0 / fan_out)
                assert abs(w.std().item() / std - 1) < 0.1, name
                assert abs(w.mean().item()) < 0.1 * std, name
                checked += 1
            if m.bias is not None:
                # PyTorch's default: U(-1/√fan_in, 1/√fan_in), not zeros.
                bound = 1 / math.sqrt(w.shape[1] * w.shape[2] * w.shape[3])
                assert m.bias.abs().max() <= bound + 1e-7, name
                if m.bias.numel() >= 8:
                    assert m.bias.abs().max() > 0.1 * bound, name
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)), name
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
    # Res, SAM (conv1-3, conv_w), NL and transition convs are all covered.
    assert checked > 30
    # The default init differs measurably on a large conv (fan_out 2048 vs
    # kaiming-uniform(a=√5) std 1/√(3·fan_in)).
    torch.manual_seed(0)
    plain = SANMixedNet(
        layers=(1,), layer_types=('res',), widths=(2048,), weight_init=None
    )
    conv3 = plain.stages[0][0][0].conv3
    assert abs(conv3.weight.std().item() * math.sqrt(3 * 512) - 1) < 0.05
    # init_weights() without init_cfg keeps the construction-time init.
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------ cross-checks


def _res_block_count(cin, out, downsample):
    """Pre-activation bottleneck: bn1, conv1, bn2, conv2 3×3, bn3, conv3."""
    w = out // 4
    total = 2 * cin + cin * w + 2 * w + 9 * w * w + 2 * w + w * out
    if downsample:
        total += cin * out + 2 * out  # 1×1 conv (no bias) + BN
    return total


def _transition_count(cin, out):
    return 2 * cin + cin * out  # BN(in) + 1×1 conv without bias


def _preact_resnet_count(layers, widths):
    """Analytic parameter count of the pre-activation ResNet (backbone)."""
    total = 3 * 64 * 49  # 7×7 stem conv, no bias, no BN
    in_w = 64
    for n, out in zip(layers, widths):
        total += _res_block_count(in_w, out, True)
        total += (n - 1) * _res_block_count(out, out, False)
        in_w = out
    return total + 2 * widths[-1]  # final BN


def _nl_count(c):
    i, g = max(c // 8, 1), max(c // 4, 1)
    return 2 * c + 2 * (c * i + i) + (c * g + g) + 2 * g + (g * c + c)


def test_parameter_counts():
    resnet26 = _preact_resnet_count((1, 2, 4, 1), RES_W)
    assert resnet26 == 11_647_552
    assert _meta_count(arch='resnet26') == resnet26
    # = torchvision / SANResNet ResNet26 with a 1000-class head (13.7M).
    tv = torchvision.models.resnet.ResNet(
        torchvision.models.resnet.Bottleneck, [1, 2, 4, 1]
    )
    assert _num_params(tv) == resnet26 + FC_1000 == 13_696_552
    assert _num_params(SANResNet(depth=26)) + FC_1000 == 13_696_552
    assert round((resnet26 + FC_1000) / 1e6, 1) == 13.7

    # resnet26_nl: stage 1 = [T, NL, R], stage 2 = [T, NL, R, NL, R].
    expected = 3 * 64 * 49 + _res_block_count(64, 256, True)
    expected += _transition_count(256, 512) + _nl_count(512)
    expected += _res_block_count(512, 512, False)
    expected += _transition_count(512, 1024) + 2 * _nl_count(1024)
    expected += 2 * _res_block_count(1024, 1024, False)
    expected += _res_block_count(1024, 2048, True) + 2 * 2048
    assert _meta_count(arch='resnet26_nl') == expected

    # nl: SAN stem, 4 × [T, NL × n] + final BN.
    total, in_w = 3 * 64, 64
    for n, out in zip((3, 2, 4, 1), RES_W):
        total += 2 * in_w + in_w * out + n * _nl_count(out)
        in_w = out
    assert _meta_count(arch='nl') == total + 2 * 2048


#: Exact backbone parameter counts (no classifier), pinned from the built
#: models; the res/NL ones are derived analytically above, the SAN ones are
#: assembled from ``SANBlock`` counts below and equal ``SAN`` for SAN10.
PINNED_COUNTS = {
    'hybrid_nl_2-2': 9_687_616,
    'hybrid_nl_3-1': 10_863_168,
    'hybrid_pair_2-2': 8_689_970,
    'hybrid_pair_2-2_nl': 8_890_590,
    'hybrid_pair_3-1': 10_364_042,
    'hybrid_pair_3-1_nl': 9_793_162,
    'hybrid_patch_2-2': 9_907_072,
    'hybrid_patch_2-2_nl': 9_799_616,
    'hybrid_patch_3-1': 10_964_992,
    'hybrid_patch_3-1_nl': 10_394_112,
    'nl': 9_640_768,
    'resnet26': 11_647_552,
    'resnet26_nl': 11_076_672,
    'san10_pairwise': 8_482_848,
    'san10_pairwise_nl': 8_763_186,
    'san10_patchwise': 9_792_124,
    'san10_patchwise_nl': 9_723_980,
}


def test_pinned_parameter_counts():
    assert set(PINNED_COUNTS) == set(ARCH_PRESETS)
    for arch, count in PINNED_COUNTS.items():
        assert _meta_count(arch=arch) == count, arch

    def san_block(sa_type, c, k=7):
        with torch.device('meta'):
            return _num_params(SANBlock(sa_type, c, k))

    # Hybrid: res stages as in ResNet26, then [T, SAN blocks] stages.
    for sa in ('pairwise', 'patchwise'):
        short = sa[: -len('wise')]
        res2 = 3 * 64 * 49 + _res_block_count(64, 256, True)
        res2 += _res_block_count(256, 512, True)
        res2 += _res_block_count(512, 512, False)
        expected = res2 + _transition_count(512, 1024)
        expected += 4 * san_block(sa, 1024) + _transition_count(1024, 2048)
        expected += san_block(sa, 2048) + 2 * 2048
        assert PINNED_COUNTS[f'hybrid_{short}_2-2'] == expected

        expected = 3 * 64 * 49 + _res_block_count(64, 256, True)
        expected += _transition_count(256, 512) + _nl_count(512)
        expected += _res_block_count(512, 512, False)
        expected += _transition_count(512, 1024) + 2 * _nl_count(1024)
        expected += 2 * _res_block_count(1024, 1024, False)
        expected += _transition_count(1024, 2048) + san_block(sa, 2048)
        assert PINNED_COUNTS[f'hybrid_{short}_3-1_nl'] == expected + 2 * 2048

        # SAN10 + NL: stage 2 = [NL, S], stage 3 = [NL, S, NL, S].
        expected = (
            3 * 64 + _transition_count(64, 64) + 2 * san_block(sa, 64, 3)
        )
        expected += _transition_count(64, 256) + san_block(sa, 256)
        expected += _transition_count(256, 512) + _nl_count(512)
        expected += san_block(sa, 512)
        expected += _transition_count(512, 1024)
        expected += 2 * (_nl_count(1024) + san_block(sa, 1024))
        expected += _transition_count(1024, 2048) + san_block(sa, 2048)
        assert PINNED_COUNTS[f'san10_{sa}_nl'] == expected + 2 * 2048


@pytest.mark.parametrize('sa_type', ['pairwise', 'patchwise'])
def test_san10_matches_SAN(sa_type):
    with torch.device('meta'):
        san_count = _num_params(SAN(sa_type, (2, 1, 2, 4, 1)))
    assert _meta_count(arch=f'san10_{sa_type}') == san_count
    # README: SAN10 pairwise 10.5M, patchwise 11.8M with the 1000-way fc.
    readme = {'pairwise': 10.5, 'patchwise': 11.8}[sa_type]
    assert round((san_count + FC_1000) / 1e6, 1) == readme

    # Same ops in the same order: equal outputs after mapping the weights.
    torch.manual_seed(0)
    san = SAN(sa_type, (2, 1, 2, 4, 1))
    for m in san.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    mixed = SANMixedNet(f'san10_{sa_type}')
    mapped = {}
    for key, value in san.state_dict().items():
        head, _, rest = key.partition('.')
        if head == 'conv_in':
            new = f'stem.{rest}'
        elif head == 'bn_in':
            new = f'stages.0.0.0.{rest}'
        elif head.startswith('conv'):
            new = f'stages.{head[4:]}.0.3.{rest}'
        elif head.startswith('layer'):
            new = f'stages.{head[5:]}.1.{rest}'
        elif head == 'bn4':
            new = f'stages.4.2.{rest}'
        else:  # bn0..bn3 feed the next stage's transition
            new = f'stages.{int(head[2:]) + 1}.0.0.{rest}'
        mapped[new] = value
    mixed.load_state_dict(mapped, strict=True)
    san.eval()
    mixed.eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(mixed(x)[0], san(x)[0])
