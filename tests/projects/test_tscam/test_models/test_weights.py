"""Local ImageNet weights: formats, checks, refusal of foreign pickles.

``tscam.md`` §3.6, §9 and §10 items 7 and 12. Every weight file is a random
model saved in ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import logging

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from projects.tscam.models import TSCAMDeiT
from projects.tscam.models.weights import load_vit_weights
from shared.registry import MODELS
from shared.utils.checkpoint import UnsafeCheckpointError
from shared.utils.state_dict import StateDictMismatchError, read_weight_file
from tests.conftest import PickleBomb
from tests.shared.datasets.logs import captured_log

from .tscam_helpers import MICRO, classifier_cfg


def pretrained(path, **kwargs) -> dict:
    return dict(
        init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs
    )


def micro_timm(img_size: int = 64, seed: int = 0) -> dict:
    """A random timm ViT of the micro shape, with a Linear head (5 classes)."""
    torch.manual_seed(seed)
    vit = VisionTransformer(
        img_size=img_size,
        patch_size=16,
        embed_dim=MICRO['embed_dims'],
        depth=MICRO['depth'],
        num_heads=MICRO['num_heads'],
        num_classes=5,
    )
    # Non-trivial norms and biases, so that a tensor left out would show.
    with torch.no_grad():
        for param in vit.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return vit.state_dict()


def load_micro(path, img_size: int = 64, **kwargs) -> TSCAMDeiT:
    backbone = TSCAMDeiT(
        arch=MICRO, img_size=img_size, **pretrained(path, **kwargs)
    )
    backbone.init_weights()
    return backbone


def assert_loaded(backbone: TSCAMDeiT, source: dict) -> None:
    ours = backbone.vit.state_dict()
    expected = {k: v for k, v in source.items() if not k.startswith('head.')}
    assert list(ours) == list(expected)
    for key, value in expected.items():
        assert torch.equal(ours[key], value), key


@pytest.fixture(scope='module')
def small_file(tmp_path_factory):
    """A random timm ``deit_small_patch16_224`` (with its ImageNet head)."""
    torch.manual_seed(0)
    model = timm.create_model('deit_small_patch16_224', pretrained=False)
    model.eval()
    path = tmp_path_factory.mktemp('weights') / 'deit_small.pth'
    torch.save(model.state_dict(), path)
    return path, model


def test_timm_deit_small_loads_and_features_match(small_file):
    path, reference = small_file
    assert 'head.weight' in torch.load(path, weights_only=True)
    backbone = TSCAMDeiT(arch='small', **pretrained(path))
    with captured_log(logging.INFO) as records:
        backbone.init_weights()
    backbone.eval()
    num_tensors = len(reference.state_dict()) - 2  # head.weight, head.bias
    assert any(
        f'loaded {num_tensors} pretrained tensors' in r.getMessage()
        for r in records
    )
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feat_map, _ = backbone(x)
        tokens = reference.forward_features(x)
    expected = tokens[:, 1:].transpose(1, 2).reshape(2, 384, 14, 14)
    torch.testing.assert_close(feat_map, expected, atol=1e-5, rtol=1e-5)


def test_deit_model_format_with_module_prefix_loads_identically(tmp_path):
    source = micro_timm()
    torch.save(source, tmp_path / 'plain.pth')
    torch.save(
        {'model': {f'module.{k}': v for k, v in source.items()}, 'epoch': 3},
        tmp_path / 'deit.pth',
    )
    torch.save({'state_dict': dict(source)}, tmp_path / 'mmengine.pth')
    plain = load_micro(tmp_path / 'plain.pth')
    assert_loaded(plain, source)
    for name in ('deit.pth', 'mmengine.pth'):
        other = load_micro(tmp_path / name)
        for key, value in plain.vit.state_dict().items():
            assert torch.equal(other.vit.state_dict()[key], value), (name, key)


def test_the_config_path_loads_through_the_classifier(tmp_path):
    source = micro_timm()
    torch.save(source, tmp_path / 'w.pth')
    cfg = classifier_cfg(MICRO, 4, 64)
    cfg['backbone']['init_cfg'] = dict(
        type='Pretrained', checkpoint=str(tmp_path / 'w.pth')
    )
    model = MODELS.build(cfg)
    head_before = model.head.conv.weight.detach().clone()
    model.init_weights()
    assert_loaded(model.backbone, source)
    assert torch.equal(model.head.conv.weight, head_before)


def test_missing_and_mismatched_keys_are_all_named(tmp_path):
    source = micro_timm()
    del source['blocks.1.mlp.fc2.bias']
    source['blocks.0.attn.qkv.weight'] = torch.zeros(192, 32)
    source['blocks.2.norm1.weight'] = torch.ones(64)
    torch.save(source, tmp_path / 'bad.pth')
    backbone = TSCAMDeiT(
        arch=MICRO, img_size=64, **pretrained(tmp_path / 'bad.pth')
    )
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with pytest.raises(StateDictMismatchError) as err:
        backbone.init_weights()
    message = str(err.value)
    assert 'bad.pth' in message and '3 problems' in message
    assert 'missing blocks.1.mlp.fc2.bias (64,)' in message
    assert (
        'shape mismatch blocks.0.attn.qkv.weight: model (192, 64) vs file '
        '(192, 32)' in message
    )
    assert 'unexpected blocks.2.norm1.weight (64,)' in message
    # Nothing was half-loaded.
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_wrong_shape_alone_fails_naming_the_key(tmp_path):
    source = micro_timm()
    source['norm.weight'] = torch.ones(32)
    torch.save(source, tmp_path / 'w.pth')
    with pytest.raises(
        ValueError, match=r'norm\.weight: model \(64,\) vs file \(32,\)'
    ):
        load_micro(tmp_path / 'w.pth')


def test_distilled_checkpoint_is_refused(tmp_path):
    source = micro_timm()
    source['dist_token'] = torch.zeros(1, 1, 64)
    source['head_dist.weight'] = torch.zeros(5, 64)
    source['head_dist.bias'] = torch.zeros(5)
    torch.save({'model': source}, tmp_path / 'distilled.pth')
    with pytest.raises(ValueError) as err:
        load_micro(tmp_path / 'distilled.pth')
    message = str(err.value)
    assert 'distilled' in message and 'distilled.pth' in message
    assert 'dist_token' in message and 'head_dist.weight' in message


def test_planted_pickle_never_runs(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'model': micro_timm(), 'args': PickleBomb(marker)}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_micro(path)
    assert 'evil.pth' in str(err.value)
    assert not marker.exists()


def test_missing_file_names_the_path_and_the_upstream_file(tmp_path):
    path = tmp_path / 'checkpoints' / 'nothing.pth'
    with torch.device('meta'):
        backbone = TSCAMDeiT(arch='small', **pretrained(path))
    with pytest.raises(FileNotFoundError) as err:
        backbone.init_weights()
    message = str(err.value)
    assert str(path) in message
    assert 'deit_small_patch16_224-cd65a155.pth' in message
    assert 'nothing is downloaded' in message
    # A custom arch has no upstream file to name.
    with pytest.raises(FileNotFoundError) as err:
        read_weight_file(str(path))
    assert 'expected upstream file' not in str(err.value)


def test_pos_embed_length_mismatch(tmp_path):
    source = micro_timm(img_size=96)  # 6x6 patches + class token
    torch.save(source, tmp_path / 'w96.pth')
    with pytest.raises(ValueError) as err:
        load_micro(tmp_path / 'w96.pth', img_size=64)
    message = str(err.value)
    assert 'pos_embed has 37 tokens, the model 17' in message
    assert 'interpolate_pos_embed=True' in message
    with captured_log(logging.WARNING) as records:
        backbone = load_micro(
            tmp_path / 'w96.pth', img_size=64, interpolate_pos_embed=True
        )
    assert any('resampled from 6x6 to 4x4' in r.getMessage() for r in records)
    expected = dict(source)
    expected['pos_embed'] = resample_abs_pos_embed(
        source['pos_embed'],
        new_size=[4, 4],
        old_size=[6, 6],
        num_prefix_tokens=1,
    )
    assert expected['pos_embed'].shape == (1, 17, 64)
    assert_loaded(backbone, expected)
    # The class token's position embedding is carried over unchanged.
    assert torch.equal(backbone.vit.pos_embed[:, 0], source['pos_embed'][:, 0])


def test_load_vit_weights_returns_the_count(tmp_path):
    source = micro_timm()
    torch.save(source, tmp_path / 'w.pth')
    vit = TSCAMDeiT(arch=MICRO, img_size=64).vit
    assert load_vit_weights(vit, str(tmp_path / 'w.pth')) == len(source) - 2
