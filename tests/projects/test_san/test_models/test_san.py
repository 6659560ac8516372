"""Tests of the ``SAN`` backbone (``san.md`` §2.2; §6 items 9, 12-15).

Whole-model forwards run SAN10 at 128² with batch 2; the 224² stage shapes
are checked on the meta device (no compute).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from projects.san.models.san import SAN, SAN_LAYERS, SAN_WIDTHS, SANBlock
from shared.registry import MODELS

SA_TYPES = ('pairwise', 'patchwise')
KERNELS = (3, 7, 7, 7, 7)

# Exact parameter counts with a 1000-class Linear head (2048 -> 1000),
# from the analytic formula below and from the built models.
PINNED_PARAMS = {
    ('pairwise', 10): 10_531_848,
    ('pairwise', 15): 14_065_436,
    ('pairwise', 19): 17_596_156,
    ('patchwise', 10): 11_841_124,
    ('patchwise', 15): 16_181_310,
    ('patchwise', 19): 20_518_470,
}
# README figures (millions, one decimal).
README_PARAMS_M = {
    ('pairwise', 10): 10.5,
    ('pairwise', 15): 14.1,
    ('pairwise', 19): 17.6,
    ('patchwise', 10): 11.8,
    ('patchwise', 15): 16.2,
    ('patchwise', 19): 20.5,
}


def analytic_block_params(sa_type: str, c: int, k: int) -> int:
    """Parameters of one block of width C from the §2.1/§2.2 description."""
    r, m = c // 16, c // 4
    cw, kk = m // 8, k * k
    sam = 2 * (c * r + r) + (c * m + m)  # φ, ψ, β with biases
    if sa_type == 'pairwise':
        sam += 2 * (r + 2) + (r + 2) * r + 2 * r + (r * cw + cw)
        sam += 2 * 2 + 2  # conv_p
    else:
        sam += 2 * r * (kk + 1) + r * (kk + 1) * cw + 2 * cw
        sam += cw * kk * cw + kk * cw
    return sam + 2 * c + 2 * m + (m * c + c)  # bn1, bn2, conv


def analytic_params(sa_type: str, depth: int, num_classes: int = 1000) -> int:
    total = 3 * 64 + 2 * 64  # conv_in, bn_in
    in_width = 64
    for stage, width in enumerate(SAN_WIDTHS):
        total += in_width * width + 2 * width  # conv{s}, bn{s}
        total += SAN_LAYERS[depth][stage] * analytic_block_params(
            sa_type, width, KERNELS[stage]
        )
        in_width = width
    return total + 2048 * num_classes + num_classes


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('sa_type', SA_TYPES)
@pytest.mark.parametrize('depth', [10, 15, 19])
def test_parameter_counts(sa_type, depth):
    key = (sa_type, depth)
    analytic = analytic_params(sa_type, depth)
    assert analytic == PINNED_PARAMS[key]
    assert round(analytic / 1e6, 1) == README_PARAMS_M[key]
    with torch.device('meta'):  # shapes only, no init cost
        backbone = SAN(sa_type, SAN_LAYERS[depth])
    assert count(backbone) + 2048 * 1000 + 1000 == PINNED_PARAMS[key]


def test_layer_presets():
    assert SAN_LAYERS == {
        10: (2, 1, 2, 4, 1),
        15: (3, 2, 3, 5, 2),
        19: (3, 3, 4, 6, 3),
    }


def expected_keys(sa_type: str, layers) -> set[str]:
    bn = ('weight', 'bias', 'running_mean', 'running_var')
    bn = bn + ('num_batches_tracked',)
    keys = {'conv_in.weight'} | {f'bn_in.{s}' for s in bn}
    for stage, blocks in enumerate(layers):
        keys.add(f'conv{stage}.weight')
        keys |= {f'bn{stage}.{s}' for s in bn}
        for b in range(blocks):
            p = f'layer{stage}.{b}.'
            keys |= {p + f'bn1.{s}' for s in bn} | {p + f'bn2.{s}' for s in bn}
            keys |= {p + 'conv.weight', p + 'conv.bias'}
            for conv in (
                'sam.conv1',
                'sam.conv2',
                'sam.conv3',
                'sam.conv_w.5',
            ):
                keys |= {p + f'{conv}.weight', p + f'{conv}.bias'}
            keys |= {p + f'sam.conv_w.0.{s}' for s in bn}
            keys |= {p + f'sam.conv_w.3.{s}' for s in bn}
            keys.add(p + 'sam.conv_w.2.weight')
            if sa_type == 'pairwise':
                keys |= {p + 'sam.conv_p.weight', p + 'sam.conv_p.bias'}
    return keys


@pytest.mark.parametrize('sa_type', SA_TYPES)
def test_state_dict_keys_and_sample_shapes(sa_type):
    with torch.device('meta'):
        model = SAN(sa_type, SAN_LAYERS[10])
    state = model.state_dict()
    assert set(state) == expected_keys(sa_type, SAN_LAYERS[10])
    if sa_type == 'pairwise':
        assert state['layer1.0.sam.conv_w.2.weight'].shape == (16, 18, 1, 1)
    else:
        assert state['layer1.0.sam.conv_w.5.weight'].shape == (392, 8, 1, 1)
    assert state['conv1.weight'].shape == (256, 64, 1, 1)
    assert state['layer4.0.conv.weight'].shape == (2048, 512, 1, 1)


@pytest.mark.parametrize('sa_type', SA_TYPES)
def test_stage_shapes_224_on_meta(sa_type):
    with torch.device('meta'):
        model = SAN(sa_type, SAN_LAYERS[10], out_indices=range(5)).eval()
        outs = model(torch.empty(2, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [
        (2, 64, 112, 112),
        (2, 256, 56, 56),
        (2, 512, 28, 28),
        (2, 1024, 14, 14),
        (2, 2048, 7, 7),
    ]


def test_forward_128_all_stages():
    torch.manual_seed(0)
    model = SAN('pairwise', SAN_LAYERS[10], out_indices=(0, 1, 2, 3, -1))
    model.eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 128, 128))
    assert [tuple(o.shape) for o in outs] == [
        (2, 64, 64, 64),
        (2, 256, 32, 32),
        (2, 512, 16, 16),
        (2, 1024, 8, 8),
        (2, 2048, 4, 4),
    ]
    for out in outs:  # after bn{s} + ReLU
        assert torch.isfinite(out).all() and out.min() >= 0


def test_classifier_logits_from_registry():
    torch.manual_seed(0)
    classifier = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='SAN', sa_type='patchwise', layers=SAN_LAYERS[10]
            ),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=1000,
                in_channels=2048,
                init_cfg=None,
            ),
        )
    )
    assert type(classifier.backbone) is SAN
    classifier.init_weights()
    classifier.eval()
    with torch.no_grad():
        logits = classifier(torch.randn(2, 3, 128, 128), mode='tensor')
    assert logits.shape == (2, 1000)
    assert count(classifier) == PINNED_PARAMS[('patchwise', 10)]


@pytest.mark.parametrize('size', [(96, 96), (64, 64), (128, 96), (127, 200)])
def test_input_too_small_is_refused_up_front(size):
    model = SAN('pairwise', SAN_LAYERS[10])
    calls = []
    model.conv_in.register_forward_hook(lambda *args: calls.append(1))
    with pytest.raises(ValueError, match=r'stage 4 .*at least 128x128'):
        model(torch.randn(1, 3, *size))
    assert not calls  # nothing ran before the check
    assert model.min_input_size() == 128
    # Smaller stage-4 kernels lower the minimum.
    assert (
        SAN('pairwise', (1,) * 5, kernels=(3, 7, 7, 7, 3)).min_input_size()
        == 64
    )


def test_wrong_input_channels():
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        SAN('pairwise', SAN_LAYERS[10])(torch.randn(1, 1, 128, 128))


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        (dict(sa_type=0), 'sa_type'),
        (dict(sa_type='pair'), 'sa_type'),
        (dict(layers=(2, 1, 2, 4)), 'layers must have 5'),
        (dict(kernels=(3, 7, 7, 7)), 'kernels must have 5'),
        (dict(kernels=(3, 7, 6, 7, 7)), r'kernels\[2\] must be odd'),
        (dict(layers=(2, 1, -1, 4, 1)), '>= 0'),
        (dict(out_indices=(5,)), 'out_indices'),
        (dict(out_indices=(4, -1)), 'distinct'),
        (dict(frozen_stages=6), 'frozen_stages'),
    ],
)
def test_constructor_errors(kwargs, match):
    args = dict(sa_type='pairwise', layers=SAN_LAYERS[10]) | kwargs
    with pytest.raises(ValueError, match=match):
        SAN(**args)


def test_block_width_must_be_multiple_of_32():
    with pytest.raises(ValueError, match='multiple of 32'):
        SANBlock('pairwise', 48, 3)


def test_default_pytorch_init():
    torch.manual_seed(0)
    model = SAN('patchwise', SAN_LAYERS[10])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()  # init_cfg=None: nothing changes
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            # kaiming_uniform(a=√5): U(±1/√fan_in), std = bound/√3.
            bound = 1 / math.sqrt(module.weight[0].numel())
            assert module.weight.abs().max() <= bound, name
            if module.weight.numel() >= 100_000:
                std = module.weight.std().item()
                assert abs(std - bound / math.sqrt(3)) < 0.02 * bound, name
            if module.bias is not None:
                assert module.bias.abs().max() <= bound, name
                if module.bias.numel() >= 64:  # U(±bound), not zeros
                    assert module.bias.abs().max() > 0.5 * bound, name
        elif isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


def _relative_bias_grads(model: nn.Module) -> dict[str, float]:
    """max|grad bias| / max|grad weight| of every biased layer."""
    params = dict(model.named_parameters())
    ratios = {}
    for name, param in params.items():
        if name.endswith('.bias'):
            weight = params[name[: -len('bias')] + 'weight']
            ratios[name] = (
                param.grad.abs().max() / weight.grad.abs().max()
            ).item()
    return ratios


# §2.2 dead biases (per block, under ``sam.``).
DEAD_SAM_BIASES = {
    'pairwise': {'conv1', 'conv2', 'conv3', 'conv_w.5', 'conv_p'},
    'patchwise': {'conv1', 'conv2'},
}


@pytest.mark.parametrize('sa_type', SA_TYPES)
def test_dead_gradient_signature(sa_type):
    """SAN10, float64, train mode, batch 2 (also: a float64 model runs)."""
    torch.manual_seed(0)
    model = SAN(sa_type, SAN_LAYERS[10]).double().train()
    x = torch.randn(2, 3, 128, 128, dtype=torch.float64)
    (out,) = model(x)
    assert out.dtype == torch.float64
    (out * torch.randn_like(out)).sum().backward()
    ratios = _relative_bias_grads(model)
    dead = set()
    for name, ratio in ratios.items():
        parts = name.split('.')
        module = '.'.join(parts[2:-1])  # drop 'layer{s}.{b}.' and '.bias'
        is_dead = (
            module.startswith('sam.')
            and module[4:] in DEAD_SAM_BIASES[sa_type]
        )
        # Not listed in §2.2 but equally dead: each block's output-conv
        # bias shifts the residual stream by a constant, which the next
        # train-mode BN (bn1 of the next block, bn{s} of the stage)
        # removes.
        is_dead |= module == 'conv'
        if is_dead:
            dead.add(name)
            assert ratio < 1e-12, (name, ratio)
        else:
            assert ratio > 1e-4, (name, ratio)
    num_blocks = sum(SAN_LAYERS[10])
    assert len(dead) == num_blocks * (len(DEAD_SAM_BIASES[sa_type]) + 1)


def test_with_cp_same_result_less_saved_memory():
    torch.manual_seed(0)
    plain = SANBlock('pairwise', 64, 3).double().train()
    ckpt = SANBlock('pairwise', 64, 3, with_cp=True).double().train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 64, 12, 10, dtype=torch.float64)
    results = []
    for block in (plain, ckpt):
        inp = x.clone().requires_grad_()
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = block(inp)
        out.pow(2).sum().backward()
        grads = [p.grad.clone() for p in block.parameters()]
        results.append((out.detach(), inp.grad, grads, sum(saved)))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    for g0, g1 in zip(results[0][2], results[1][2], strict=True):
        torch.testing.assert_close(g0, g1)
    assert results[1][3] < results[0][3] / 4
    model = SAN('pairwise', SAN_LAYERS[10], with_cp=True)
    assert all(b.with_cp for b in model.modules() if isinstance(b, SANBlock))


def test_frozen_stages_and_norm_eval():
    model = SAN('patchwise', SAN_LAYERS[10], frozen_stages=2).train()
    frozen = ('conv_in', 'bn_in', 'conv0', 'layer0', 'bn0', 'conv1')
    frozen += ('layer1', 'bn1')
    for name, param in model.named_parameters():
        assert param.requires_grad is not name.startswith(frozen), name
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.training is not name.startswith(frozen), name
    stem_only = SAN('pairwise', SAN_LAYERS[10], frozen_stages=0)
    trainable = {n for n, p in stem_only.named_parameters() if p.requires_grad}
    assert trainable == set(dict(stem_only.named_parameters())) - {
        'conv_in.weight',
        'bn_in.weight',
        'bn_in.bias',
    }
    model = SAN('pairwise', SAN_LAYERS[10], norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns)
    assert model.layer0[0].sam.training
    assert all(p.requires_grad for p in model.parameters())
