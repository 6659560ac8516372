"""tools/analysis/complexity.py: the upstream SAN (sovrasov flops-counter)
MAC convention, rule by rule on tiny modules with hand-computed counts, and
the CLI on whole models against an analytic ResNet count."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from torch import nn

from shared.ops import Aggregation, Subtraction, Subtraction2
from tests.conftest import REPO_ROOT, load_tool

TOOL = REPO_ROOT / 'tools' / 'analysis' / 'complexity.py'


cx = load_tool(TOOL)


def macs_of(module: nn.Module, *inputs: torch.Tensor) -> int | float:
    """Total MACs of one batch-1 call, asserting no rule warning fired."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        _, macs, _ = cx.count_complexity(module, inputs)
    return macs


# -- per-rule unit tests ------------------------------------------------------


def test_conv2d_with_and_without_bias():
    x = torch.randn(1, 3, 9, 7)
    # 3x3/2 p1 on 9x7 -> 5x4 = 20 positions, 3 -> 8 channels.
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    assert macs_of(conv, x) == 9 * 3 * 8 * 20 + 8 * 20
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    assert macs_of(conv, x) == 9 * 3 * 8 * 20


def test_grouped_conv2d():
    # k²·C_in·(C_out/groups) per position: 9·8·3, over 5x5 positions.
    conv = nn.Conv2d(8, 12, 3, padding=1, groups=4, bias=False)
    assert macs_of(conv, torch.randn(1, 8, 5, 5)) == 9 * 8 * 3 * 25
    depthwise = nn.Conv2d(6, 6, 3, groups=6)  # 4x4 -> 2x2
    assert macs_of(depthwise, torch.randn(1, 6, 4, 4)) == 9 * 6 * 1 * 4 + 6 * 4


def test_conv1d_and_conv3d():
    assert macs_of(nn.Conv1d(4, 6, 3), torch.randn(1, 4, 10)) == (
        3 * 4 * 6 * 8 + 6 * 8
    )
    conv3d = nn.Conv3d(2, 3, (1, 2, 3), bias=False)  # (3,4,5) -> (3,3,3)
    assert macs_of(conv3d, torch.randn(1, 2, 3, 4, 5)) == 6 * 2 * 3 * 27


def test_conv_transpose2d_reproduces_the_bias_typo():
    deconv = nn.ConvTranspose2d(4, 6, 3, stride=2)
    x = torch.randn(1, 4, 5, 3)  # -> (1, 6, 11, 7)
    assert deconv(x).shape == (1, 6, 11, 7)
    conv_part = 9 * 4 * 6 * (5 * 3)  # over the *input* positions
    assert macs_of(deconv, x) == conv_part + 6 * 11 * 11  # H_out·H_out
    assert macs_of(deconv, x) != conv_part + 6 * 11 * 7
    no_bias = nn.ConvTranspose2d(4, 6, 3, stride=2, bias=False)
    assert macs_of(no_bias, x) == conv_part


def test_batchnorm_affine_doubles():
    x = torch.randn(1, 5, 4, 3)
    assert macs_of(nn.BatchNorm2d(5), x) == 2 * 60
    assert macs_of(nn.BatchNorm2d(5, affine=False), x) == 60
    assert macs_of(nn.BatchNorm1d(7), torch.randn(1, 7)) == 2 * 7
    assert macs_of(nn.BatchNorm3d(2), torch.randn(1, 2, 2, 3, 4)) == 2 * 48


@pytest.mark.parametrize(
    'pool, shape',
    [
        (nn.MaxPool2d(2), (1, 3, 8, 6)),
        (nn.AvgPool2d(3, stride=2), (1, 3, 8, 6)),
        (nn.AdaptiveAvgPool2d(1), (1, 5, 7, 7)),
        (nn.AdaptiveMaxPool2d((2, 3)), (1, 5, 7, 7)),
        (nn.MaxPool1d(2), (1, 4, 10)),
        (nn.AvgPool3d(2), (1, 2, 4, 4, 4)),
    ],
)
def test_pools_count_input_elements(pool, shape):
    x = torch.randn(shape)
    assert pool(x).numel() < x.numel()  # so numel(in) != numel(out)
    assert macs_of(pool, x) == x.numel()


def test_linear_ignores_bias():
    assert macs_of(nn.Linear(10, 4), torch.randn(1, 10)) == 40
    assert macs_of(nn.Linear(10, 4, bias=False), torch.randn(1, 10)) == 40


@pytest.mark.parametrize(
    'act', [nn.ReLU(), nn.ReLU6(), nn.LeakyReLU(), nn.ELU(), nn.PReLU()]
)
def test_activations_count_output_elements(act):
    assert macs_of(act, torch.randn(1, 3, 4, 5)) == 60


def test_upsample_counts_one_sample_of_the_output():
    up = nn.Upsample(scale_factor=2, mode='nearest')
    assert macs_of(up, torch.randn(1, 3, 4, 5)) == 3 * 8 * 10


def test_uncounted_modules():
    # No rule, no parameters: silently 0 (softmax, GELU, padding, unfold).
    for module, x in [
        (nn.Softmax(dim=1), torch.randn(1, 4, 3)),
        (nn.GELU(), torch.randn(1, 4)),
        (nn.ReflectionPad2d(1), torch.randn(1, 2, 4, 4)),
        (nn.Unfold(3), torch.randn(1, 2, 4, 4)),
    ]:
        assert macs_of(module, x) == 0


def test_subtraction_ops_count_one_sample_of_the_output():
    x1, x2 = torch.randn(1, 4, 6, 5), torch.randn(1, 4, 6, 5)
    # (N, C, K, L) = (1, 4, 9, 30) for k=3 'same' padding.
    sub = Subtraction(3, 1, 1, 1, 'reflect')
    assert sub(x1).shape == (1, 4, 9, 30)
    assert macs_of(sub, x1) == 4 * 9 * 30
    sub2 = Subtraction2(3, 1, 1, 1, 'reflect')
    assert macs_of(sub2, x1, x2) == 4 * 9 * 30
    # k=5, dilation 2: K = 25, the count has no extra factor.
    sub2 = Subtraction2(5, 1, 4, 2, 'zero')
    assert macs_of(sub2, x1, x2) == 4 * 25 * 30


def test_aggregation_counts_output_times_window():
    x = torch.randn(1, 8, 6, 5)
    agg = Aggregation(3, 1, 1, 1, 'reflect')
    w = torch.randn(1, 2, 9, 30)
    assert macs_of(agg, x, w) == (8 * 6 * 5) * 9
    # Stride 2: 6x5 -> 3x3 output, L = 9.
    agg = Aggregation(3, 2, 1, 1, 'zero')
    w = torch.randn(1, 2, 9, 9)
    assert agg(x, w).shape == (1, 8, 3, 3)
    assert macs_of(agg, x, w) == (8 * 3 * 3) * 9


class _Block(nn.Module):
    """conv -> relu -> Subtraction; the ReLU is called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 1, bias=False)
        self.relu = nn.ReLU()
        self.sub = Subtraction(3, 1, 1, 1, 'reflect')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.relu(self.conv(x)) - 1)
        return self.sub(x)


def test_composition_repeated_calls_and_per_layer_stats():
    x = torch.randn(1, 2, 5, 5)
    block = _Block().train()
    block.relu.eval()  # e.g. a frozen part: its flag must survive
    params, macs, per_layer = cx.count_complexity(block, x)
    conv, relu, sub = 2 * 4 * 25, 2 * (4 * 25), 4 * 9 * 25
    assert (params, macs) == (8, conv + relu + sub)
    assert block.training and block.conv.training  # modes are restored
    assert not block.relu.training
    stats = {s.name: s for s in per_layer}
    assert list(stats) == ['', 'conv', 'relu', 'sub']
    assert (stats['relu'].own_macs, stats['relu'].macs) == (relu, relu)
    assert (stats[''].own_macs, stats[''].macs, stats[''].params) == (
        0,
        macs,
        8,
    )
    assert stats['conv'].type == 'Conv2d'
    # Hooks are removed afterwards: a second count gives the same total.
    assert cx.count_complexity(block, x)[1] == macs


def test_params_count_only_trainable():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model[0].weight.requires_grad_(False)
    params, _, _ = cx.count_complexity(model, torch.randn(1, 3, 5, 5))
    assert params == 4 + 2 * 4  # conv bias + BN weight/bias, no buffers


def test_batch_other_than_one_is_refused():
    with pytest.raises(ValueError, match=r'batch size must be 1.*\[2\]'):
        cx.count_complexity(nn.ReLU(), torch.randn(2, 3))
    x1, x2 = torch.randn(1, 4, 5, 5), torch.randn(3, 4, 5, 5)
    with pytest.raises(ValueError, match=r'batch size must be 1.*\[1, 3\]'):
        cx.count_complexity(Subtraction2(3, 1, 1), (x1, x2))


class _Scale(nn.Module):
    """A parameterised leaf module without a rule."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _MyConv(nn.Conv2d):
    """A Conv2d subclass: hooks match exact types, so it has no rule."""


def test_unknown_parameterised_leaf_warns_and_counts_zero():
    model = nn.Sequential(
        _Scale(), _MyConv(3, 3, 1), nn.Conv2d(3, 2, 1, bias=False)
    )
    x = torch.randn(1, 3, 4, 4)
    with pytest.warns(UserWarning) as record:
        params, macs, _ = cx.count_complexity(model, x)
    messages = [str(r.message) for r in record]
    assert any(re.search(r'type _Scale .*e\.g\. 0\)', m) for m in messages)
    assert any(re.search(r'type _MyConv .*e\.g\. 1\)', m) for m in messages)
    assert not any('Conv2d have' in m for m in messages)
    assert macs == 3 * 2 * 16  # only the exact nn.Conv2d
    assert params == 3 + (9 + 3) + 6


def _nl_children(hw: int, c: int = 16, inter: int = 2, gc: int = 4) -> int:
    """MACs of an NL block's children for HW output positions."""
    return (
        2 * c * hw  # bn (affine)
        + c * hw  # relu
        + (c * gc * hw + gc * hw) + gc * hw  # g conv + max-pool (numel in)
        + (c * inter * hw + inter * hw)  # theta
        + (c * inter * hw + inter * hw) + inter * hw  # phi conv + max-pool
        + 2 * gc * hw + gc * hw  # W_z bn + relu on the (gc, H, W) map
        + (gc * c * hw + c * hw)  # W_z conv
    )  # fmt: skip


def test_nl_block_rule_on_top_of_children():
    from projects.san.models.nl_block import NLBlock

    assert NLBlock in cx.get_rules()
    assert NLBlock not in cx.RULES  # the static table stays upstream's
    block = NLBlock(16)  # inter = 2, gc = 4
    # (HW)²/4·inter + (HW)²/4 with HW = 64: 2048 + 1024.
    macs = macs_of(block, torch.randn(1, 16, 8, 8))
    assert macs == _nl_children(64) + 3072
    # Odd size: a float, ignoring the pool's flooring: 49²/4·3 = 1800.75.
    macs = macs_of(block, torch.randn(1, 16, 7, 7))
    assert isinstance(macs, float)
    assert macs == _nl_children(49) + 1800.75


# -- CLI on whole models ------------------------------------------------------


def resnet_complexity(
    depths: tuple[int, ...], h: int, w: int, num_classes: int = 1000
) -> tuple[int, int]:
    """Analytic (params, MACs) of a torchvision v1.5 bottleneck ResNet.

    Written from the architecture and the rule table, independently of the
    hooks: every conv without bias, BN affine, one ReLU call after each BN
    except the one before the residual add, one ReLU after the add.
    """
    params = macs = 0

    def conv(cin, cout, k, s, p, h, w):
        nonlocal params, macs
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        params += k * k * cin * cout
        macs += k * k * cin * cout * ho * wo
        return ho, wo

    def bn(c, h, w, relu=True):
        nonlocal params, macs
        params += 2 * c
        macs += 2 * c * h * w + (c * h * w if relu else 0)

    h, w = conv(3, 64, 7, 2, 3, h, w)
    bn(64, h, w)
    macs += 64 * h * w  # max-pool: numel(in)
    h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    cin = 64
    for i, n in enumerate(depths):
        planes = 64 * 2**i
        for b in range(n):
            s = (1 if i == 0 else 2) if b == 0 else 1
            conv(cin, planes, 1, 1, 0, h, w)
            bn(planes, h, w)
            ho, wo = conv(planes, planes, 3, s, 1, h, w)
            bn(planes, ho, wo)
            conv(planes, 4 * planes, 1, 1, 0, ho, wo)
            bn(4 * planes, ho, wo, relu=False)
            if b == 0:
                conv(cin, 4 * planes, 1, s, 0, h, w)
                bn(4 * planes, ho, wo, relu=False)
            macs += 4 * planes * ho * wo  # ReLU after the add
            cin, h, w = 4 * planes, ho, wo
    macs += cin * h * w  # global average pool: numel(in)
    params += cin * num_classes + num_classes
    macs += cin * num_classes  # Linear, bias not counted
    return params, macs


def test_resnet_formula_stem_by_hand():
    # The stem alone, by hand: conv 7x7/2 3->64 on 224² -> 112², BN (x2),
    # ReLU, max-pool on its 64x112² input.
    params, macs = resnet_complexity((), 224, 224, num_classes=0)
    assert params == 7 * 7 * 3 * 64 + 2 * 64 == 9536
    assert macs == 118_013_952 + 1_605_632 + 802_816 + 802_816 + 64 * 56 * 56


def _summary(out: str) -> tuple[str, int, str, int]:
    match = re.search(
        r'^Params: (\d+\.\d\d)M \((\d+) parameters\)\n'
        r'MACs: (\d+\.\d\d) GMac \((\d+) MACs\)$',
        out,
        re.M,
    )
    assert match, out
    return match[1], int(match[2]), match[3], int(match[4])


R50_CONFIG = """
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet', depth=50, num_stages=4, out_indices=(3,),
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='/nonexistent.pth')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead', num_classes=1000, in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0), topk=(1, 5)))
"""


def test_cli_resnet50(tmp_path, capsys):
    config = tmp_path / 'resnet50.py'
    config.write_text(R50_CONFIG)
    assert cx.build_model(str(config)).backbone.init_cfg is None
    assert cx.main([str(config), '--per-layer']) == 0
    out = capsys.readouterr().out
    params_s, params, macs_s, macs = _summary(out)
    assert (params, macs) == resnet_complexity((3, 4, 6, 3), 224, 224)
    assert (params, macs) == (25_557_032, 4_121_924_096)
    assert (params_s, macs_s) == ('25.56', '4.12')
    assert round(macs / 1e9, 1) == 4.1  # the README's 4.1 GMac
    # Per-layer table: the stem conv by hand, the root at 100 %.
    assert re.search(
        r'^backbone\.conv1\s+Conv2d\s+9408\s+118013952\s+2\.863%\s+'
        r'118013952$',
        out,
        re.M,
    ), out
    assert re.search(
        rf'^<model>\s+ImageClassifier\s+{params}\s+{macs}\s+100\.000%\s+0$',
        out,
        re.M,
    ), out
    assert re.search(r'^head\.fc\s+Linear\s+2049000\s+2048000\s', out, re.M)

    # Non-square input.
    assert cx.main([str(config), '--shape', '160', '128']) == 0
    _, params2, _, macs2 = _summary(capsys.readouterr().out)
    assert (params2, macs2) == resnet_complexity((3, 4, 6, 3), 160, 128)


def test_torchvision_resnet50_matches_the_convention():
    from torchvision.models import resnet50

    params, macs, _ = cx.count_complexity(
        resnet50(), torch.zeros(1, 3, 224, 224)
    )
    assert (params, macs) == resnet_complexity((3, 4, 6, 3), 224, 224)


def test_cli_san_resnet26(capsys):
    # Registers the types even before projects/san/__init__ imports them.
    import projects.san.models.san_resnet  # noqa: F401
    import projects.san.models.smooth_ce_loss  # noqa: F401

    config = REPO_ROOT / 'configs' / 'san' / 'san-resnet26_8xb32_in1k.py'
    assert cx.main([str(config)]) == 0
    params_s, params, macs_s, macs = _summary(capsys.readouterr().out)
    assert (params, macs) == resnet_complexity((1, 2, 4, 1), 224, 224)
    assert (params, macs) == (13_696_552, 2_361_448_960)
    # README: 13.7M params, 2.4 GMac.
    assert (round(params / 1e6, 1), round(macs / 1e9, 1)) == (13.7, 2.4)


def san_complexity(
    sa_type: str,
    layers: tuple[int, ...],
    kernels: tuple[int, ...] = (3, 7, 7, 7, 7),
    size: int = 224,
    num_classes: int = 1000,
) -> tuple[int, int]:
    """Analytic (params, MACs) of a SAN (spec §2.1-2.2) under the rules.

    Counted per block: bn1+ReLU, conv1/conv2/conv3 (bias), for pairwise
    conv_p and the position Subtraction on the batch-1 map, Subtraction2,
    conv_w on the (r+2, K, L) map; for patchwise conv_w on the
    (r(K+1), 1, L) keys (Unfold and padding uncounted); Aggregation (m·L·K),
    bn2+ReLU and the bias conv back to C. Softmax and adds are free.
    """
    params = macs = 0
    hw = size * size

    def conv(cin, cout, pos, bias):
        nonlocal params, macs
        params += cin * cout + (cout if bias else 0)
        macs += cin * cout * pos + (cout * pos if bias else 0)

    def bn(c, pos, relu=True):
        nonlocal params, macs
        params += 2 * c
        macs += 2 * c * pos + (c * pos if relu else 0)

    conv(3, 64, hw, False)
    bn(64, hw)
    cprev, h = 64, size
    for s, (n, k) in enumerate(zip(layers, kernels)):
        c = (64, 256, 512, 1024, 2048)[s]
        macs += cprev * h * h  # max-pool numel(in)
        h //= 2
        L = h * h
        K = k * k
        conv(cprev, c, L, False)
        r, m = c // 16, c // 4
        cw = m // 8
        for _ in range(n):
            bn(c, L)
            conv(c, r, L, True)
            conv(c, r, L, True)
            conv(c, m, L, True)
            if sa_type == 'pairwise':
                conv(2, 2, L, True)  # conv_p on the batch-1 map
                macs += 2 * K * L + r * K * L  # Subtraction(pos), Subtraction2
                bn(r + 2, K * L)
                conv(r + 2, r, K * L, False)
                bn(r, K * L)
                conv(r, cw, K * L, True)
            else:
                bn(r * (K + 1), L)
                conv(r * (K + 1), cw, L, False)
                bn(cw, L)
                conv(cw, K * cw, L, True)
            macs += m * L * K  # Aggregation
            bn(m, L)
            conv(m, c, L, True)
        bn(c, L)
        cprev = c
    macs += cprev * h * h
    params += cprev * num_classes + num_classes
    macs += cprev * num_classes
    return params, macs


@pytest.mark.parametrize(
    'sa_type, expected, readme',
    [
        ('pairwise', (10_531_848, 2_155_268_622), (10.5, 2.2)),
        ('patchwise', (11_841_124, 1_865_421_568), (11.8, 1.9)),
    ],
)
def test_cli_san10(sa_type, expected, readme, capsys):
    import projects.san.models.san  # noqa: F401
    import projects.san.models.smooth_ce_loss  # noqa: F401

    config = REPO_ROOT / 'configs' / 'san' / f'san10-{sa_type}_8xb32_in1k.py'
    assert cx.main([str(config)]) == 0
    _, params, _, macs = _summary(capsys.readouterr().out)
    assert (params, macs) == san_complexity(sa_type, (2, 1, 2, 4, 1))
    assert (params, macs) == expected
    assert (round(params / 1e6, 1), round(macs / 1e9, 1)) == readme


def test_cli_errors(tmp_path):
    with pytest.raises(SystemExit):
        cx.parse_args([str(tmp_path / 'x.py'), '--shape', '0', '224'])
    with pytest.raises(FileNotFoundError, match='does not exist'):
        cx.main([str(tmp_path / 'missing.py')])
