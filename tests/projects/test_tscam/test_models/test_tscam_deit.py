"""TSCAMDeiT: variants, shapes, timm key names, drop-path, bad input.

``tscam.md`` §3.1–3.2, §9 and §10 items 1, 2, 8 and 12.
"""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import DropPath
from torch import nn

from projects.tscam.models import TSCAMDeiT

from .tscam_helpers import MICRO, build_classifier, samples

#: (arch, img_size) -> (D, H, grid, tokens) of the spec's variant table.
VARIANTS = {
    ('tiny', 224): (192, 3, 14, 197),
    ('small', 224): (384, 6, 14, 197),
    ('base', 224): (768, 12, 14, 197),
    ('base', 384): (768, 12, 24, 577),
}


@pytest.mark.parametrize(
    'arch, img_size, batch',
    [
        ('tiny', 224, 1),
        ('small', 224, 1),
        ('base', 224, 1),
        ('base', 384, 1),
        (MICRO, 224, 2),
        (MICRO, 64, 2),  # the demo config's size
    ],
    ids=['tiny', 'small', 'base', 'base-384', 'micro', 'micro-64'],
)
def test_shapes(arch, img_size, batch):
    num_classes = 200
    model = build_classifier(
        arch, num_classes, img_size, sharp=False, init=isinstance(arch, dict)
    )
    if isinstance(arch, dict):
        width, heads, depth = MICRO['embed_dims'], MICRO['num_heads'], 2
        grid = img_size // 16
        tokens = grid * grid + 1
    else:
        width, heads, grid, tokens = VARIANTS[(arch, img_size)]
        depth = 12
    vit = model.backbone.vit
    assert len(vit.blocks) == depth
    assert vit.embed_dim == width
    assert all(blk.attn.num_heads == heads for blk in vit.blocks)
    assert vit.pos_embed.shape == (1, tokens, width)
    assert tuple(vit.patch_embed.grid_size) == (grid, grid)

    x = torch.randn(batch, 3, img_size, img_size)
    labels = list(range(batch))
    with torch.no_grad(), model.backbone.collect_attention():
        feats = model.extract_feat(x)
    feat_map, cls_attn = feats
    assert feat_map.shape == (batch, width, grid, grid)
    assert cls_attn.shape == (batch, grid, grid)
    with torch.no_grad():
        semantic = model.head.semantic_maps(feats)
        logits = model.head(feats)
    assert semantic.shape == (batch, num_classes, grid, grid)
    assert logits.shape == (batch, num_classes)
    out = model.head.predict(feats, samples(labels))
    for sample in out:
        assert sample.pred_score.shape == (num_classes,)
        assert sample.loc_labels.shape == (6,)
        assert sample.loc_maps.shape == (6, grid, grid)
        assert sample.loc_maps.dtype == torch.float32


def test_micro_loss_mode_returns_only_cross_entropy():
    model = build_classifier(MICRO, num_classes=4, img_size=64).train()
    x = torch.randn(3, 3, 64, 64)
    data = samples([0, 3, 1])
    losses = model.loss(x, data)
    assert set(losses) == {'loss'}
    with torch.no_grad():
        model.eval()  # no drop-path: the logits are deterministic
        expected = nn.functional.cross_entropy(
            model.head(model.extract_feat(x)), torch.tensor([0, 3, 1])
        )
        eval_loss = model.loss(x, data)['loss']
    torch.testing.assert_close(eval_loss, expected)


def test_feat_map_is_row_major_final_normed_patch_tokens():
    model = build_classifier(MICRO, num_classes=3, img_size=96)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        tokens = model.backbone.vit.forward_features(x)
        feat_map, cls_attn = model.backbone(x)
    assert cls_attn is None  # collection is off outside predict
    grid = 6
    for row in range(grid):
        for col in range(grid):
            torch.testing.assert_close(
                feat_map[:, :, row, col], tokens[:, 1 + grid * row + col]
            )
    # Final-normed: LayerNorm output per token has mean 0 over D (affine
    # weight 1, bias 0 at init).
    torch.testing.assert_close(
        feat_map.mean(dim=1), torch.zeros(2, grid, grid), atol=1e-5, rtol=0
    )


def test_fixed_settings():
    vit = TSCAMDeiT(arch='tiny').vit
    assert vit.num_prefix_tokens == 1 and vit.cls_token is not None
    assert getattr(vit, 'dist_token', None) is None
    assert isinstance(vit.head, nn.Identity) and vit.num_classes == 0
    assert vit.patch_embed.proj.kernel_size == (16, 16)
    assert vit.patch_embed.proj.stride == (16, 16)
    assert not vit.no_embed_class  # pos_embed covers the class token too
    norms = [m for m in vit.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 12 + 1 and all(m.eps == 1e-6 for m in norms)
    for blk in vit.blocks:
        assert blk.attn.qkv.bias is not None
        assert blk.attn.head_dim == 64
        assert blk.mlp.fc1.out_features == 4 * 192
        assert blk.attn.attn_drop.p == 0 and blk.attn.proj_drop.p == 0
        assert isinstance(blk.attn.q_norm, nn.Identity)
    assert vit.pos_drop.p == 0


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_vit_keys_equal_timm_deit(arch):
    with torch.device('meta'):
        ours = TSCAMDeiT(arch=arch).vit.state_dict()
        ref = timm.create_model(
            f'deit_{arch}_patch16_224', pretrained=False, num_classes=0
        ).state_dict()
    assert list(ours) == list(ref)
    assert {k: v.shape for k, v in ours.items()} == {
        k: v.shape for k, v in ref.items()
    }


def test_base_384_keys_equal_timm_deit_384():
    with torch.device('meta'):
        ours = TSCAMDeiT(arch='base', img_size=384).vit.state_dict()
        ref = timm.create_model(
            'deit_base_patch16_384', pretrained=False, num_classes=0
        ).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {
        k: v.shape for k, v in ref.items()
    }


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base'])
def test_drop_path_is_linear_from_identity_to_0_1(arch):
    with torch.device('meta'):
        blocks = TSCAMDeiT(arch=arch).vit.blocks
    assert len(blocks) == 12
    for name in ('drop_path1', 'drop_path2'):
        assert isinstance(getattr(blocks[0], name), nn.Identity)
        for i in range(1, 12):
            module = getattr(blocks[i], name)
            assert isinstance(module, DropPath), (i, name)
            assert module.drop_prob == pytest.approx(0.1 * i / 11, abs=1e-7)
    assert blocks[11].drop_path1.drop_prob == pytest.approx(0.1)


def test_pretrained_file_names():
    with torch.device('meta'):
        names = {
            key: TSCAMDeiT(arch=key[0], img_size=key[1]).pretrained_file
            for key in VARIANTS
        }
        micro = TSCAMDeiT(arch=MICRO).pretrained_file
    assert names == {
        ('tiny', 224): 'deit_tiny_patch16_224-a1311bcf.pth',
        ('small', 224): 'deit_small_patch16_224-cd65a155.pth',
        ('base', 224): 'deit_base_patch16_224-b5f2ef4d.pth',
        ('base', 384): 'deit_base_patch16_384-8de9b5d1.pth',
    }
    assert micro is None


def test_init_weights_without_a_checkpoint_keeps_the_random_init():
    torch.manual_seed(0)
    for init_cfg in (None, dict(type='Pretrained', checkpoint=None)):
        backbone = TSCAMDeiT(arch=MICRO, img_size=64, init_cfg=init_cfg)
        before = {k: v.clone() for k, v in backbone.state_dict().items()}
        backbone.init_weights()
        after = backbone.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)


# -- bad input (§9) ---------------------------------------------------------
def test_unknown_arch_lists_the_names():
    with pytest.raises(ValueError) as err:
        TSCAMDeiT(arch='huge')
    message = str(err.value)
    assert "'huge'" in message
    for name in ('tiny', 'small', 'base'):
        assert name in message


@pytest.mark.parametrize(
    'arch, words',
    [
        (dict(embed_dims=64, depth=2), ['missing', 'num_heads']),
        (dict(embed_dims=64, depth=2, num_heads=2, mlp_ratio=2), ['extra']),
        (dict(embed_dims=64, depth=2, num_heads=3), ['not divisible']),
        (dict(embed_dims=64, depth=0, num_heads=2), ['positive']),
        (['small'], ['name or a dict']),
    ],
    ids=['missing', 'extra', 'indivisible', 'zero-depth', 'list'],
)
def test_bad_arch_dict(arch, words):
    with pytest.raises(ValueError) as err:
        TSCAMDeiT(arch=arch)
    for word in words:
        assert word in str(err.value)
    if isinstance(arch, dict) and 'mlp_ratio' in arch:
        assert 'mlp_ratio' in str(err.value)


def test_img_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match='img_size=200'):
        TSCAMDeiT(arch=MICRO, img_size=200)


@pytest.mark.parametrize(
    'shape', [(3, 64, 64), (1, 3, 96, 96), (1, 3, 64, 80)], ids=str
)
def test_wrong_input_shape_names_img_size(shape):
    backbone = TSCAMDeiT(arch=MICRO, img_size=64).eval()
    with pytest.raises(ValueError) as err:
        backbone(torch.zeros(shape))
    message = str(err.value)
    assert 'img_size=64' in message
    assert str(tuple(shape)) in message  # received
    assert '(B, 3, 64, 64)' in message  # expected
    assert 'resize' in message  # points at the test pipeline
