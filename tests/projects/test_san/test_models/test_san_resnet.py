"""``SANResNet`` (san.md §2.3, §6 item 15): counts, torchvision parity."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from mmengine.logging import MMLogger
from torchvision.models.resnet import Bottleneck as TVBottleneck
from torchvision.models.resnet import ResNet as TVResNet

from projects.san.models.san_resnet import SANResNet
from shared.registry import MODELS

LAYERS = {26: (1, 2, 4, 1), 38: (2, 3, 5, 2), 50: (3, 4, 6, 3)}
#: Exact parameter counts with a 1000-class Linear head (measured, pinned).
PARAMS = {26: 13_696_552, 38: 19_626_792, 50: 25_557_032}
#: hszhao/SAN README, in millions.
README_M = {26: 13.7, 38: 19.6, 50: 25.6}


def analytic_params(layers, num_classes=1000):
    """Count of a v1.5 bottleneck ResNet from the architecture description.

    Stem 7×7 conv 3→64 (no bias) + BN(64); stage s has width w = 64·2^s and
    output 4w; a block is 1×1 c→w, 3×3 w→w, 1×1 w→4w (no biases), each
    followed by a BN (2 parameters per channel); the first block of each
    stage adds a 1×1 c→4w projection + BN(4w); the head is Linear(2048, K).
    """
    total = 3 * 64 * 7 * 7 + 2 * 64
    c_in = 64
    for s, n in enumerate(layers):
        w = 64 * 2**s
        for b in range(n):
            c = c_in if b == 0 else 4 * w
            total += c * w + 2 * w + 9 * w * w + 2 * w + 4 * w * w + 8 * w
            if b == 0:
                total += c * 4 * w + 8 * w
        c_in = 4 * w
    return total + 2048 * num_classes + num_classes


def classifier(depth):
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='SANResNet', depth=depth),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=1000,
                in_channels=2048,
                init_cfg=None,
            ),
        )
    )
    quiet_init(model)
    return model


def quiet_init(model):
    """``init_weights`` without mmengine's per-parameter INFO dump."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def torchvision_model(depth):
    if depth == 50:
        return torchvision.models.resnet50(weights=None)
    return TVResNet(TVBottleneck, list(LAYERS[depth]))


def to_torchvision(state_dict):
    """``backbone.X`` → ``X``, ``head.fc.X`` → ``fc.X``; nothing else."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith('backbone.'):
            out[key[len('backbone.') :]] = value
        elif key.startswith('head.fc.'):
            out[key[len('head.') :]] = value
        else:
            raise AssertionError(f'unexpected key {key}')
    return out


@pytest.mark.parametrize('depth', sorted(LAYERS))
def test_parameter_count_pinned_analytic_and_readme(depth):
    model = classifier(depth)
    count = sum(p.numel() for p in model.parameters())
    assert count == PARAMS[depth]
    assert count == analytic_params(LAYERS[depth])
    assert count == sum(
        p.numel() for p in torchvision_model(depth).parameters()
    )
    assert round(count / 1e6, 1) == README_M[depth]
    assert model.backbone.stage_blocks == LAYERS[depth]


@pytest.mark.parametrize('depth', sorted(LAYERS))
def test_matches_torchvision_after_key_mapping(depth):
    torch.manual_seed(depth)
    model = classifier(depth)
    # Non-trivial BN statistics and affine parameters, so that a swapped BN
    # or a missing ReLU would show in the logits.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    tv = torchvision_model(depth)
    mapped = to_torchvision(model.state_dict())
    assert set(mapped) == set(tv.state_dict())
    tv.load_state_dict(mapped, strict=True)
    x = torch.randn(2, 3, 64, 80)
    model.eval()
    tv.eval()
    with torch.no_grad():
        ours = model(x, mode='tensor')
        theirs = tv(x)
    assert ours.shape == (2, 1000)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    # Train mode (batch statistics) goes through the same ops too.
    model.train()
    tv.train()
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, mode='tensor'), tv(x), rtol=0, atol=0
        )


def test_stage_shapes_and_stride_on_3x3():
    backbone = SANResNet(26, out_indices=(0, 1, 2, 3))
    outs = backbone(torch.randn(1, 3, 128, 96))
    assert [tuple(o.shape) for o in outs] == [
        (1, 256, 32, 24),
        (1, 512, 16, 12),
        (1, 1024, 8, 6),
        (1, 2048, 4, 3),
    ]
    block = backbone.layer2[0]
    assert block.conv1.stride == (1, 1)
    assert block.conv2.stride == (2, 2)
    assert block.downsample[0].stride == (2, 2)


def test_torchvision_init():
    torch.manual_seed(0)
    backbone = SANResNet(38)
    quiet_init(backbone)
    conv = backbone.layer3[1].conv2  # 256×256×3×3
    fan_out = conv.out_channels * 3 * 3
    expected = math.sqrt(2.0 / fan_out)
    std = conv.weight.std().item()
    assert std == pytest.approx(expected, rel=0.02)
    assert conv.weight.mean().abs().item() < 0.02 * expected
    # kaiming-normal, not uniform: a normal has excess kurtosis ≈ 0 (uniform
    # −1.2).
    w = conv.weight.flatten() / std
    assert (w**4).mean().item() == pytest.approx(3.0, abs=0.1)
    for m in backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    assert backbone.zero_init_residual is False
    assert backbone.style == 'pytorch'


@pytest.mark.parametrize('depth', [18, 34, 101, 152, 0])
def test_other_depths_raise(depth):
    with pytest.raises(ValueError, match=r'\[26, 38, 50\]'):
        SANResNet(depth)
