"""tools/model_converters/tscam_to_mono.py: released TS-CAM -> plugin keys."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.runner import load_checkpoint
from timm.models.vision_transformer import VisionTransformer
from torch import nn

import projects.tscam  # noqa: F401  (registers the TS-CAM models)
from shared.registry import MODELS
from shared.utils.checkpoint import list_checkpoint_globals, save_state_dict
from shared.utils.compat import apply_patches
from tests.conftest import PickleBomb, load_tool, run_tool

TOOL = 'tools/model_converters/tscam_to_mono.py'


tool = load_tool(TOOL)
main, guess_arch = tool.main, tool.guess_arch
MICRO = dict(embed_dims=64, depth=2, num_heads=2)
IMG = 64  # 4x4 patch grid: small and fast
CLASSES = 5


def _timm_vit(embed_dims: int, depth: int, num_heads: int, img_size: int):
    """timm's DeiT layout as upstream TS-CAM subclassed it."""
    return VisionTransformer(
        img_size=img_size,
        patch_size=16,
        num_classes=0,
        embed_dim=embed_dims,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
    )


def _original(arch: dict = MICRO, img_size: int = IMG, classes: int = CLASSES):
    """(checkpoint in the upstream layout, the timm ViT, the head conv)."""
    torch.manual_seed(0)
    vit = _timm_vit(**arch, img_size=img_size).eval()
    head = nn.Conv2d(arch['embed_dims'], classes, 3, 1, 1)
    state = {f'module.{k}': v for k, v in vit.state_dict().items()}
    state['module.head.weight'] = head.weight.detach().clone()
    state['module.head.bias'] = head.bias.detach().clone()
    # upstream: best_map is the numpy mean of a list (numpy float64)
    ckpt = {'epoch': 7, 'state_dict': state, 'best_map': np.float64(61.25)}
    return ckpt, vit, head


def _classifier(arch=MICRO, img_size: int = IMG, classes: int = CLASSES):
    return MODELS.build(
        dict(
            type='TSCAMClassifier',
            backbone=dict(type='TSCAMDeiT', arch=arch, img_size=img_size),
            head=dict(
                type='TSCAMHead',
                num_classes=classes,
                in_channels=arch['embed_dims']
                if isinstance(arch, dict)
                else {'tiny': 192, 'small': 384, 'base': 768}[arch],
            ),
        )
    ).eval()


def _convert(tmp_path: Path, ckpt, *extra: str) -> tuple[int, Path]:
    src, dst = tmp_path / 'model_best.pth', tmp_path / 'out' / 'conv.pth'
    save_state_dict(ckpt, str(src))
    return main([str(src), str(dst), *extra]), dst


def test_converts_and_loads_strict(tmp_path, capsys):
    ckpt, vit, head = _original()
    rc, dst = _convert(tmp_path, ckpt)
    assert rc == 0
    out = capsys.readouterr().out
    assert "arch: custom {'embed_dims': 64, 'depth': 2, 'num_heads': 1}" in out
    assert 'embed_dims=64, depth=2, img_size=64' in out
    assert f'num_classes: {CLASSES}' in out
    n_vit = len(vit.state_dict())
    assert f'tensors converted: {n_vit + 2} ({n_vit} backbone.vit + 2' in out
    assert 'epoch: 7' in out and 'best_map: 61.25' in out

    # Clean output: no pickle globals, loads with weights_only=True.
    assert list_checkpoint_globals(str(dst)) == []
    loaded = torch.load(dst, weights_only=True)
    assert set(loaded) == {'state_dict', 'meta'}
    assert loaded['meta'] == {
        'arch': {'embed_dims': 64, 'depth': 2, 'num_heads': 1},
        'embed_dims': 64,
        'depth': 2,
        'img_size': 64,
        'num_classes': CLASSES,
        'converted_from': 'model_best.pth',
        'epoch': 7,
        'best_map': 61.25,
    }
    assert type(loaded['meta']['best_map']) is float
    sd = loaded['state_dict']

    model = _classifier()
    model.load_state_dict(sd, strict=True)
    own = model.state_dict()
    assert list(sd) == list(own)
    for key, value in vit.state_dict().items():
        assert torch.equal(own[f'backbone.vit.{key}'], value), key
    assert torch.equal(own['head.conv.weight'], head.weight)
    assert torch.equal(own['head.conv.bias'], head.bias)

    # Same network: the upstream forward (GAP of the conv on the patch
    # tokens) gives the plugin's logits.
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        tokens = vit.forward_features(x)[:, 1:]
        fmap = tokens.transpose(1, 2).reshape(2, 64, IMG // 16, IMG // 16)
        expected = head(fmap).mean(dim=(2, 3))
        logits = model(x, mode='tensor')
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6)

    # What tools/test.py does with the file (load_from through safe_load).
    apply_patches()
    fresh = _classifier()
    load_checkpoint(fresh, str(dst), map_location='cpu', strict=True)
    for key, value in own.items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_round_trip_plugin_state_dict(tmp_path):
    torch.manual_seed(1)
    ours = _classifier().state_dict()
    original = {}
    for key, value in ours.items():
        if key.startswith('backbone.vit.'):
            original['module.' + key[len('backbone.vit.') :]] = value
        else:
            assert key.startswith('head.conv.'), key
            original['module.head.' + key[len('head.conv.') :]] = value
    ckpt = {'epoch': 3, 'state_dict': original, 'best_map': torch.tensor(0.5)}
    rc, dst = _convert(tmp_path, ckpt)
    assert rc == 0
    loaded = torch.load(dst, weights_only=True)
    assert loaded['meta']['epoch'] == 3 and loaded['meta']['best_map'] == 0.5
    back = loaded['state_dict']
    assert list(back) == list(ours)
    for key, value in ours.items():
        assert torch.equal(back[key], value), key


def test_bare_state_dict_without_prefix_and_named_arch(tmp_path, capsys):
    ckpt, _, _ = _original(
        dict(embed_dims=192, depth=12, num_heads=3), img_size=224, classes=3
    )
    bare = {k[len('module.') :]: v for k, v in ckpt['state_dict'].items()}
    rc, dst = _convert(tmp_path, bare)
    assert rc == 0
    out = capsys.readouterr().out
    assert 'arch: tiny (embed_dims=192, depth=12, img_size=224)' in out
    assert 'epoch' not in out
    loaded = torch.load(dst, weights_only=True)
    assert loaded['meta']['arch'] == 'tiny'
    assert 'epoch' not in loaded['meta']
    _classifier('tiny', 224, 3).load_state_dict(loaded['state_dict'])


@pytest.mark.parametrize(
    ('dims', 'expected'),
    [
        ((192, 12, 224), 'tiny'),
        ((384, 12, 224), 'small'),
        ((768, 12, 224), 'base'),
        ((768, 12, 384), 'base'),
        ((384, 12, 384), dict(embed_dims=384, depth=12, num_heads=6)),
        ((384, 6, 224), dict(embed_dims=384, depth=6, num_heads=6)),
        ((96, 2, 224), dict(embed_dims=96, depth=2, num_heads=1)),
    ],
)
def test_guess_arch(dims, expected):
    assert guess_arch(*dims) == expected


def _edit(fn):
    ckpt, _, _ = _original()
    fn(ckpt['state_dict'])
    return ckpt


def _linear_head(sd):
    sd['module.head.weight'] = torch.zeros(CLASSES, 64)


def _one_by_one_head(sd):
    sd['module.head.weight'] = torch.zeros(CLASSES, 64, 1, 1)


def _head_3d(sd):
    sd['module.head.weight'] = torch.zeros(CLASSES, 64, 9)


def _unknown_keys(sd):
    sd['module.extra.weight'] = torch.zeros(2)
    sd['module.blocks.0.ls1.gamma'] = torch.zeros(64)
    sd['module.head.extra'] = torch.zeros(1)


def _missing_and_misshaped(sd):
    del sd['module.blocks.1.mlp.fc2.bias']
    sd['module.norm.weight'] = torch.zeros(65)


def _distilled(sd):
    sd['module.dist_token'] = torch.zeros(1, 1, 64)
    sd['module.head_dist.weight'] = torch.zeros(CLASSES, 64)


def _no_pos_embed(sd):
    del sd['module.pos_embed']


def _no_head(sd):
    del sd['module.head.weight']
    del sd['module.head.bias']


@pytest.mark.parametrize(
    ('ckpt', 'messages'),
    [
        ([torch.ones(2)], ['not a checkpoint dict', 'list']),
        (_edit(_linear_head), ['Linear', '(5, 64)', 'Pretrained']),
        (_edit(_one_by_one_head), ['4-D 3x3 conv', '(5, 64, 1, 1)']),
        (_edit(_head_3d), ['4-D 3x3 conv', '(5, 64, 9)']),
        (
            _edit(_unknown_keys),
            [
                'unknown extra.weight (2,)',
                'unknown blocks.0.ls1.gamma (64,)',
                'unknown head.extra (1,)',
            ],
        ),
        (
            _edit(_missing_and_misshaped),
            [
                'missing blocks.1.mlp.fc2.bias (64,)',
                'shape mismatch norm.weight: model (64,) vs file (65,)',
            ],
        ),
        (_edit(_distilled), ['distilled', 'dist_token', 'head_dist.weight']),
        (_edit(_no_head), ['head.weight and head.bias are required']),
        (_edit(_no_pos_embed), ['no DeiT backbone', "['pos_embed'] missing"]),
        ({'epoch': 1, 'best_map': 0.0}, ['no tensors']),
    ],
    ids=[
        'not-dict',
        'linear-head',
        'conv1x1-head',
        '3d-head',
        'unknown-keys',
        'missing-misshaped',
        'distilled',
        'no-head',
        'no-pos-embed',
        'no-tensors',
    ],
)
def test_errors(tmp_path, capsys, ckpt, messages):
    rc, dst = _convert(tmp_path, ckpt)
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith('ConversionError: '), err
    for message in messages:
        assert message in err, (message, err)
    assert not dst.exists()


def test_refuses_planted_pickle(tmp_path, capsys):
    marker = tmp_path / 'MARKER'
    ckpt, _, _ = _original()
    ckpt['args'] = PickleBomb(marker)
    src, dst = tmp_path / 'evil.pth', tmp_path / 'out.pth'
    torch.save(ckpt, src)
    assert main([str(src), str(dst)]) == 1
    err = capsys.readouterr().err
    assert 'UnsafeCheckpointError' in err and 'evil.pth' in err
    assert 'posix.system' in err or 'nt.system' in err
    assert not marker.exists()
    assert not dst.exists()


def test_trust_source_loads_foreign_globals(tmp_path, capsys):
    ckpt, vit, _ = _original()
    ckpt['args'] = argparse.Namespace(lr=5e-5)  # not in the allowlist
    src, dst = tmp_path / 'foreign.pth', tmp_path / 'out.pth'
    torch.save(ckpt, src)
    assert main([str(src), str(dst)]) == 1
    assert 'argparse.Namespace' in capsys.readouterr().err
    assert not dst.exists()
    assert main([str(src), str(dst), '--trust-source']) == 0
    assert list_checkpoint_globals(str(dst)) == []
    sd = torch.load(dst, weights_only=True)['state_dict']
    assert torch.equal(sd['backbone.vit.pos_embed'], vit.pos_embed)


def test_cli_help_and_missing_input(tmp_path):
    proc = run_tool([TOOL, '--help'], timeout=120)
    assert 'IN' in proc.stdout and '--trust-source' in proc.stdout
    proc = run_tool(
        [TOOL, str(tmp_path / 'nope.pth'), str(tmp_path / 'o.pth')],
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert 'FileNotFoundError' in proc.output and 'nope.pth' in proc.output
