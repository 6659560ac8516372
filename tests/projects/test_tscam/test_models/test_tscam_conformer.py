"""TSCAMConformer: Conformer-S structure, official key names, attention,
local weight loading, initialisation and bad input.

``tscam.md`` §3.7, §9 and §10 items 1, 2, 4, 7, 8 and 12. The official
architecture is written out below from §3.7 (key names and shapes, and a
closed-form parameter count); mmpretrain's independent port of the same
network (``mmpretrain.models.backbones.Conformer``, other key names) serves
as a numerical reference.
"""

from __future__ import annotations

import copy
import logging
import math
import re

import pytest
import torch
from mmpretrain.models.backbones import Conformer as MMPretrainConformer
from timm.layers import DropPath
from torch import nn

from projects.tscam.models import TSCAMConformer
from shared.registry import MODELS
from shared.utils.state_dict import StateDictMismatchError
from tests.shared.datasets.logs import captured_log

from .tscam_helpers import samples

D = 384
GRID = 14
DEPTH = 12
PRETRAINED = 'conformer_small_patch16.pth'
#: Pinned parameter counts (backbone alone; backbone + TSCAMHead conv).
#: The official Conformer-S (37.7M in the paper) is 37,673,424 with its
#: Linear trans_cls_head at C=1000; here that head is the 3×3 head conv.
#: CLASSIFIER_PARAMS equal upstream TS-CAM's ``conformer_tscam_small_patch16``
#: (checked once against vasgaowei/TS-CAM ``lib/models/conformer.py``).
BACKBONE_PARAMS = {200: 36_468_424, 1000: 37_288_424}
CLASSIFIER_PARAMS = {200: 37_159_824, 1000: 40_745_424}


# -- the official architecture, written out from tscam.md §3.7 ---------------
def _bn(prefix: str, c: int) -> dict[str, tuple]:
    return {
        f'{prefix}.weight': (c,),
        f'{prefix}.bias': (c,),
        f'{prefix}.running_mean': (c,),
        f'{prefix}.running_var': (c,),
        f'{prefix}.num_batches_tracked': (),
    }


def _ln(prefix: str, c: int) -> dict[str, tuple]:
    return {f'{prefix}.weight': (c,), f'{prefix}.bias': (c,)}


def _conv_block(prefix: str, cin: int, cout: int, res: bool) -> dict:
    mid = cout // 4
    keys = {f'{prefix}.conv1.weight': (mid, cin, 1, 1)}
    keys |= _bn(f'{prefix}.bn1', mid)
    keys[f'{prefix}.conv2.weight'] = (mid, mid, 3, 3)
    keys |= _bn(f'{prefix}.bn2', mid)
    keys[f'{prefix}.conv3.weight'] = (cout, mid, 1, 1)
    keys |= _bn(f'{prefix}.bn3', cout)
    if res:
        keys[f'{prefix}.residual_conv.weight'] = (cout, cin, 1, 1)
        keys |= _bn(f'{prefix}.residual_bn', cout)
    return keys


def _trans_block(prefix: str) -> dict:
    keys = _ln(f'{prefix}.norm1', D)
    keys |= {
        f'{prefix}.attn.qkv.weight': (3 * D, D),
        f'{prefix}.attn.qkv.bias': (3 * D,),
        f'{prefix}.attn.proj.weight': (D, D),
        f'{prefix}.attn.proj.bias': (D,),
    }
    keys |= _ln(f'{prefix}.norm2', D)
    keys |= {
        f'{prefix}.mlp.fc1.weight': (4 * D, D),
        f'{prefix}.mlp.fc1.bias': (4 * D,),
        f'{prefix}.mlp.fc2.weight': (D, 4 * D),
        f'{prefix}.mlp.fc2.bias': (D,),
    }
    return keys


def official_shapes(num_classes: int) -> dict[str, tuple]:
    """Every state-dict key of the official Conformer-S with its shape,
    without ``trans_cls_head`` (TS-CAM's is the head conv)."""
    keys = {'cls_token': (1, 1, D)}
    keys |= _ln('trans_norm', D)
    keys |= {
        'conv_cls_head.weight': (num_classes, 1024),
        'conv_cls_head.bias': (num_classes,),
        'conv1.weight': (64, 3, 7, 7),
    }
    keys |= _bn('bn1', 64)
    keys |= _conv_block('conv_1', 64, 256, res=True)
    keys |= {
        'trans_patch_conv.weight': (D, 64, 4, 4),
        'trans_patch_conv.bias': (D,),
    }
    keys |= _trans_block('trans_1')
    cin = 256
    for i in range(2, 13):
        cout = 256 if i <= 4 else 512 if i <= 8 else 1024
        p = f'conv_trans_{i}'
        keys |= _conv_block(f'{p}.cnn_block', cin, cout, res=i in (5, 9))
        keys |= _conv_block(f'{p}.fusion_block', cout, cout, res=i == 12)
        keys |= {
            f'{p}.squeeze_block.conv_project.weight': (D, cout // 4, 1, 1),
            f'{p}.squeeze_block.conv_project.bias': (D,),
        }
        keys |= _ln(f'{p}.squeeze_block.ln', D)
        keys |= {
            f'{p}.expand_block.conv_project.weight': (cout // 4, D, 1, 1),
            f'{p}.expand_block.conv_project.bias': (cout // 4,),
        }
        keys |= _bn(f'{p}.expand_block.bn', cout // 4)
        keys |= _trans_block(f'{p}.trans_block')
        cin = cout
    return keys


def analytic_param_count(num_classes: int) -> int:
    """Closed-form parameter count of the §3.7 description (no buffers)."""

    def conv(cin, cout, k, bias=False):
        return cin * cout * k * k + (cout if bias else 0)

    def bn(c):  # also LayerNorm: weight + bias
        return 2 * c

    def bottleneck(cin, cout, res):
        mid = cout // 4
        n = conv(cin, mid, 1) + conv(mid, mid, 3) + conv(mid, cout, 1)
        n += bn(mid) * 2 + bn(cout)
        return n + (conv(cin, cout, 1) + bn(cout) if res else 0)

    block = 2 * bn(D) + (D * 3 * D + 3 * D) + (D * D + D)
    block += (D * 4 * D + 4 * D) + (4 * D * D + D)
    total = conv(3, 64, 7) + bn(64) + bottleneck(64, 256, True)
    total += conv(64, D, 4, bias=True) + D + block  # patch conv, cls, trans_1
    for cin, cout, blocks in [(256, 256, 3), (256, 512, 4), (512, 1024, 4)]:
        for j in range(blocks):
            first_in = cin if j == 0 else cout
            total += bottleneck(first_in, cout, res=j == 0 and cin != cout)
            total += bottleneck(cout, cout, res=False)
            total += conv(cout // 4, D, 1, bias=True) + bn(D)  # FCU-down
            total += conv(D, cout // 4, 1, bias=True) + bn(cout // 4)  # up
            total += block
    # Block 12's fusion block has a strided conv residual.
    total += conv(1024, 1024, 1) + bn(1024)
    return total + bn(D) + 1024 * num_classes + num_classes


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- helpers
def build(num_classes: int = 200, seed: int = 0, **kwargs) -> TSCAMConformer:
    torch.manual_seed(seed)
    return TSCAMConformer(num_classes=num_classes, **kwargs).eval()


def randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters (eval mode)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)


def sharpen(model: TSCAMConformer, scale: float = 8.0) -> None:
    """Far-from-uniform attention (the init gives near-uniform rows)."""
    with torch.no_grad():
        for blk in model.trans_blocks:
            blk.attn.qkv.weight.mul_(scale)
            blk.attn.qkv.bias.normal_(0, 0.5)


def with_checkpoint(model: TSCAMConformer, path) -> TSCAMConformer:
    """A copy of ``model`` whose ``init_cfg`` loads ``path``."""
    model = copy.deepcopy(model)
    model.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    return model


@pytest.fixture(scope='module')
def pristine() -> TSCAMConformer:
    """C=200, seed 0, as constructed; tests must not modify it."""
    return build(200)


@pytest.fixture(scope='module')
def varied() -> TSCAMConformer:
    """C=200, seed 1, with random BN statistics and sharp attention."""
    model = build(200, seed=1)
    randomize_bn(model)
    sharpen(model)
    return model


@pytest.fixture(scope='module')
def mmpretrain_conformer() -> nn.Module:
    """mmpretrain's independent Conformer-S port (no heads)."""
    model = MMPretrainConformer(arch='small')
    model.eval()  # BaseBackbone.train() returns None: no chaining
    return model


@pytest.fixture(scope='module')
def image() -> torch.Tensor:
    return torch.randn(
        1, 3, 224, 224, generator=torch.Generator().manual_seed(1)
    )


# -- build, shapes, registry
def test_attributes(pristine):
    assert pristine.embed_dims == 384 and pristine.img_size == 224
    assert pristine.num_classes == 200
    assert pristine.pretrained_file == PRETRAINED


def test_forward_shapes_and_collection_gating(pristine, image):
    # CNN map side after each conv_trans block: 56 / 28 / 14, then 7.
    sizes = []
    hooks = [
        b.register_forward_hook(lambda m, i, o: sizes.append(o[0].shape[-1]))
        for b in pristine.conv_trans_blocks
    ]
    try:
        with torch.no_grad():
            with pristine.collect_attention() as collector:
                feat_c, m_star, logits_c = pristine(image)
            feat_map, cls_attn, conv_logits = pristine(image)
    finally:
        for h in hooks:
            h.remove()
    assert sizes[:11] == [56] * 3 + [28] * 4 + [14] * 3 + [7]
    assert feat_map.shape == (1, D, GRID, GRID)
    assert cls_attn is None
    assert conv_logits.shape == (1, 200)
    assert m_star.shape == (1, GRID, GRID)
    assert collector.calls == DEPTH
    # Collection only reads: the outputs are identical with and without.
    assert torch.equal(feat_c, feat_map) and torch.equal(logits_c, conv_logits)
    # Every layer's row sums to < 1 (cls->cls dropped), summed over 12.
    total = m_star.sum(dim=(1, 2))
    assert torch.all(total > 0) and torch.all(total < DEPTH)
    # Outside collect() the hooks stay idle.
    assert collector.calls == DEPTH and not pristine.attention.active


def test_structure_settings(pristine):
    blocks = pristine.trans_blocks
    assert len(blocks) == DEPTH
    assert blocks[0] is pristine.trans_1
    assert [
        pristine.get_submodule(f'conv_trans_{i}.trans_block')
        for i in range(2, 13)
    ] == blocks[1:]
    for blk in blocks:
        assert blk.attn.num_heads == 6 and blk.attn.head_dim == 64
        assert blk.attn.qkv.bias is not None
        assert blk.norm1.eps == 1e-6 and blk.norm2.eps == 1e-6
        assert blk.mlp.fc1.out_features == 4 * D
    assert pristine.trans_norm.eps == 1e-5
    assert pristine.bn1.eps == 1e-5
    assert pristine.conv_1.bn1.eps == 1e-6
    assert pristine.conv_trans_2.expand_block.bn.eps == 1e-6
    assert pristine.conv_trans_2.squeeze_block.ln.eps == 1e-6
    # FCU strides 4 / 2 / 1 (CNN map side / 14).
    strides = [b.fcu_stride for b in pristine.conv_trans_blocks]
    assert strides == [4] * 3 + [2] * 4 + [1] * 4
    assert not hasattr(pristine, 'pos_embed')
    assert not hasattr(pristine, 'trans_cls_head')


def test_drop_path_on_transformer_blocks_only(pristine):
    model = pristine  # the default drop_path_rate=0.1
    expected = torch.linspace(0, 0.1, DEPTH).tolist()
    for blk, rate in zip(model.trans_blocks, expected):
        for dp in (blk.drop_path1, blk.drop_path2):
            if rate == 0:
                assert isinstance(dp, nn.Identity)
            else:
                assert isinstance(dp, DropPath)
                assert dp.drop_prob == pytest.approx(rate)
    trans = {id(m) for blk in model.trans_blocks for m in blk.modules()}
    outside = [
        n
        for n, m in model.named_modules()
        if isinstance(m, DropPath) and id(m) not in trans
    ]
    assert outside == []


def test_classifier_predict_and_loss():
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='TSCAMClassifier',
            backbone=dict(type='TSCAMConformer', num_classes=200),
            head=dict(type='TSCAMHead', num_classes=200, in_channels=384),
        )
    )
    assert type(model.backbone) is TSCAMConformer
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    feats = []
    handle = model.backbone.register_forward_hook(
        lambda m, i, o: feats.append(o)
    )
    with torch.no_grad():  # as in the runner's test_step
        out = model.predict(x, samples([7, 199]))
    handle.remove()
    feat_map, m_star, conv_logits = feats[0]
    assert m_star.shape == (2, GRID, GRID)
    with torch.no_grad():
        semantic = model.head.conv(feat_map)
    logits = semantic.mean(dim=(2, 3)) + conv_logits
    for i, sample in enumerate(out):
        assert sample.loc_maps.shape == (6, GRID, GRID)
        assert sample.loc_labels.shape == (6,)
        assert sample.loc_labels[-1] == [7, 199][i]
        # Logits = GAP(S) + conv_cls_head(GAP(cnn)) (issue #20).
        torch.testing.assert_close(
            sample.pred_score, logits[i].softmax(0), rtol=0, atol=1e-6
        )
        top5 = logits[i].topk(5).indices
        assert torch.equal(sample.loc_labels[:5], top5)
        label = int(sample.loc_labels[0])
        coupled = m_star[i] * semantic[i, label]
        torch.testing.assert_close(sample.loc_maps[0], coupled)
    model.train()
    losses = model.loss(x[:1], samples([7]))
    assert set(losses) == {'loss'}
    assert torch.isfinite(losses['loss'])


# -- parameter counts and key names
@pytest.fixture(scope='module')
def c1000() -> TSCAMConformer:
    return build(1000, seed=3)


@pytest.mark.parametrize('num_classes', [200, 1000])
def test_parameter_counts(num_classes, pristine, c1000, mmpretrain_conformer):
    model = pristine if num_classes == 200 else c1000
    n = param_count(model)
    assert n == BACKBONE_PARAMS[num_classes]
    assert n == analytic_param_count(num_classes)
    shapes = official_shapes(num_classes)
    buffers = {k for k, _ in model.named_buffers()}
    assert n == sum(
        math.prod(s) for k, s in shapes.items() if k not in buffers
    )
    # mmpretrain's port has no classifier heads.
    heads = 1024 * num_classes + num_classes
    assert n == param_count(mmpretrain_conformer) + heads
    head_conv = D * num_classes * 9 + num_classes
    assert n + head_conv == CLASSIFIER_PARAMS[num_classes]


def test_state_dict_equals_official_keys_and_shapes(pristine):
    ours = {k: tuple(v.shape) for k, v in pristine.state_dict().items()}
    expected = official_shapes(200)
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert ours == expected


def _mmpretrain_key(key: str) -> str:
    """Our (official) key -> mmpretrain's Conformer key."""
    key = re.sub(r'\.norm([12])\.', r'.ln\1.', key)
    key = key.replace('.mlp.fc1.', '.ffn.layers.0.0.')
    return key.replace('.mlp.fc2.', '.ffn.layers.1.')


def test_forward_matches_mmpretrain_conformer(
    image, varied, mmpretrain_conformer
):
    """Same network as mmpretrain's independent port, weight for weight."""
    ours, ref = varied, mmpretrain_conformer
    own = {
        k: v for k, v in ours.state_dict().items() if 'conv_cls_head' not in k
    }
    mapped = {_mmpretrain_key(k): v for k, v in own.items()}
    assert set(mapped) == set(ref.state_dict())
    ref.load_state_dict(mapped, strict=True)
    tokens = []
    handle = ref.trans_norm.register_forward_hook(
        lambda m, i, o: tokens.append(o)
    )
    with torch.no_grad():
        ((pooled, _),) = ref(image)
        feat_map, _, conv_logits = ours(image)
    handle.remove()
    ref_map = tokens[-1][:, 1:].transpose(1, 2).reshape(1, D, GRID, GRID)
    torch.testing.assert_close(feat_map, ref_map, rtol=1e-4, atol=1e-4)
    ref_logits = ours.conv_cls_head(pooled)
    scale = ref_logits.abs().max().item()
    torch.testing.assert_close(
        conv_logits, ref_logits, rtol=1e-4, atol=1e-4 * scale
    )


# -- attention
def test_class_rows_equal_reference_path_in_every_block(image, varied):
    model = varied
    probs: list[torch.Tensor] = []
    handles = []
    for blk in model.trans_blocks:
        blk.attn.fused_attn = False
        handles.append(
            blk.attn.attn_drop.register_forward_pre_hook(
                lambda m, args: probs.append(args[0].detach().double())
            )
        )
    try:
        with torch.no_grad(), model.collect_attention(return_layers=True) as c:
            _, m_star, _ = model(image)
    finally:
        for h in handles:
            h.remove()
        for blk in model.trans_blocks:
            blk.attn.fused_attn = True
    assert len(probs) == DEPTH and len(c.layer_rows) == DEPTH
    rows = [p.mean(dim=1)[:, 0, 1:] for p in probs]
    for layer, (ours, ref, full) in enumerate(zip(c.layer_rows, rows, probs)):
        torch.testing.assert_close(
            ours.double(), ref, rtol=0, atol=1e-6, msg=f'layer {layer}'
        )
        ones = torch.ones_like(full.sum(-1))
        torch.testing.assert_close(full.sum(-1), ones, rtol=0, atol=1e-5)
    # Sharpened attention: a wrong layer or row would show.
    assert max(r.max().item() for r in rows) > 5 / (GRID * GRID)
    torch.testing.assert_close(
        m_star.reshape(1, -1).double(), sum(rows), rtol=0, atol=1e-5
    )


def test_attention_options_reach_the_collector():
    model = TSCAMConformer(
        num_classes=2, attn_layers=[0, 11], attn_reduce='mean'
    )
    assert model.attention.selected == {0, 11}
    assert model.attention.reduce == 'mean'
    with pytest.raises(ValueError, match='attn_layers'):
        TSCAMConformer(num_classes=2, attn_layers=[12])


# -- weights
def _official_style_file(path, source: TSCAMConformer, conv_classes: int):
    state = dict(source.state_dict())
    state['trans_cls_head.weight'] = torch.randn(1000, D)  # official Linear
    state['trans_cls_head.bias'] = torch.randn(1000)
    state['conv_cls_head.weight'] = torch.randn(conv_classes, 1024)
    state['conv_cls_head.bias'] = torch.randn(conv_classes)
    torch.save({'model': state}, path)
    return state


def test_official_weights_load_with_new_heads_dropped(
    tmp_path, varied, pristine
):
    path = tmp_path / PRETRAINED
    state = _official_style_file(path, varied, conv_classes=1000)
    target = with_checkpoint(pristine, path)
    head_before = {
        k: v.clone()
        for k, v in target.state_dict().items()
        if k.startswith('conv_cls_head')
    }
    with captured_log(logging.INFO) as records:
        target.init_weights()
    loaded = target.state_dict()
    for key, value in loaded.items():
        if key.startswith('conv_cls_head'):
            assert torch.equal(value, head_before[key]), key
        else:
            assert torch.equal(value, state[key]), key
    text = '\n'.join(r.getMessage() for r in records)
    for key in (
        'trans_cls_head.weight',
        'trans_cls_head.bias',
        'conv_cls_head.weight',
        'conv_cls_head.bias',
    ):
        assert key in text
    n_loaded = len(loaded) - 2
    assert f'loaded {n_loaded} pretrained tensors' in text


def test_official_weights_keep_the_cnn_head_at_1000_classes(
    tmp_path, varied, c1000
):
    path = tmp_path / PRETRAINED
    state = _official_style_file(path, varied, conv_classes=1000)
    target = c1000
    target.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    target.init_weights()
    loaded = target.state_dict()
    assert torch.equal(
        loaded['conv_cls_head.weight'], state['conv_cls_head.weight']
    )
    assert all(torch.equal(v, state[k]) for k, v in loaded.items())


def test_weight_mismatch_names_the_key(tmp_path, pristine):
    state = dict(pristine.state_dict())
    del state['conv_trans_7.squeeze_block.ln.bias']
    state['conv_trans_3.trans_block.attn.qkv.weight'] = torch.zeros(5, D)
    path = tmp_path / 'broken.pth'
    torch.save(state, path)
    model = with_checkpoint(pristine, path)
    with pytest.raises(StateDictMismatchError) as err:
        model.init_weights()
    assert 'conv_trans_7.squeeze_block.ln.bias' in str(err.value)
    assert 'conv_trans_3.trans_block.attn.qkv.weight' in str(err.value)


def test_missing_weight_file_names_the_official_file(tmp_path, pristine):
    model = with_checkpoint(pristine, tmp_path / 'nowhere.pth')
    with pytest.raises(FileNotFoundError, match=PRETRAINED):
        model.init_weights()


@pytest.mark.parametrize(
    'init_cfg', [None, dict(type='Pretrained', checkpoint=None)]
)
def test_init_weights_without_checkpoint_keeps_the_init(pristine, init_cfg):
    model = copy.deepcopy(pristine)
    model.init_cfg = init_cfg
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    assert all(
        torch.equal(v, before[k]) for k, v in model.state_dict().items()
    )


# -- initialisation
def test_init_statistics(pristine):
    m = pristine
    fc1 = m.conv_trans_9.trans_block.mlp.fc1
    assert fc1.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert torch.all(fc1.bias == 0)
    qkv = m.trans_1.attn.qkv
    assert qkv.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert torch.all(qkv.bias == 0)
    assert m.conv_cls_head.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert torch.all(m.conv_cls_head.bias == 0)
    assert m.cls_token.std().item() == pytest.approx(0.02, rel=0.25)
    for norm in (
        m.trans_norm,
        m.conv_trans_4.squeeze_block.ln,
        m.trans_1.norm2,
    ):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    for bn in (
        m.bn1,
        m.conv_trans_5.cnn_block.residual_bn,
        m.conv_trans_12.expand_block.bn,
    ):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    # Kaiming-normal, fan_out, relu: std = sqrt(2 / (out·k·k)).
    for conv in (
        m.conv1,
        m.conv_trans_12.cnn_block.conv1,
        m.conv_trans_6.fusion_block.conv2,
        m.trans_patch_conv,
    ):
        out, _, kh, kw = conv.weight.shape
        expected = math.sqrt(2.0 / (out * kh * kw))
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
        assert abs(conv.weight.mean().item()) < 0.1 * expected
    # Conv biases keep PyTorch's default U(±1/sqrt(fan_in)).
    for conv in (
        m.trans_patch_conv,
        m.conv_trans_8.squeeze_block.conv_project,
    ):
        fan_in = conv.weight[0].numel()
        bound = 1 / math.sqrt(fan_in)
        assert conv.bias.abs().max().item() <= bound
        assert conv.bias.std().item() == pytest.approx(
            bound / math.sqrt(3), rel=0.3
        )


# -- bad input
@pytest.mark.parametrize(
    'arch', ['base', 'tiny', dict(embed_dims=384, depth=12, num_heads=6)]
)
def test_unknown_arch_lists_small(arch):
    with pytest.raises(ValueError, match="'small'"):
        TSCAMConformer(num_classes=10, arch=arch)


def test_num_classes_must_be_positive():
    with pytest.raises(ValueError, match='num_classes'):
        TSCAMConformer(num_classes=0)


@pytest.mark.parametrize(
    'shape', [(1, 3, 256, 256), (3, 224, 224), (1, 3, 224, 192)]
)
def test_wrong_input_shape_names_img_size(pristine, shape):
    with pytest.raises(ValueError, match='img_size=224') as err:
        pristine(torch.zeros(shape))
    assert str(tuple(shape)) in str(err.value)


def test_weights_without_bn_counters_load(tmp_path, varied, pristine):
    """Files saved before PyTorch 0.4.1 have no num_batches_tracked; the
    model keeps its own counters and every other tensor loads."""
    state = {
        k: v
        for k, v in varied.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    assert len(state) < len(varied.state_dict())
    path = tmp_path / PRETRAINED
    torch.save(state, path)
    target = with_checkpoint(pristine, path)
    target.init_weights()
    loaded = target.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_head_conv_kaiming_init_for_the_conformer():
    """The Conformer's _init_weights gives the trans_cls_head conv
    kaiming-normal (fan_out, relu) weights and leaves PyTorch's bias."""
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='TSCAMClassifier',
            backbone=dict(type='TSCAMConformer', num_classes=200),
            head=dict(
                type='TSCAMHead',
                num_classes=200,
                in_channels=D,
                conv_init='kaiming',
            ),
        )
    )
    weight, bias = model.head.conv.weight, model.head.conv.bias
    fan_out = 200 * 9
    assert weight.std().item() == pytest.approx(
        math.sqrt(2 / fan_out), rel=0.02
    )
    bound = 1 / math.sqrt(9 * D)  # PyTorch's default bias init
    assert bias.abs().max().item() <= bound
    assert bias.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.3)
    with pytest.raises(ValueError, match='conv_init'):
        MODELS.build(
            dict(
                type='TSCAMHead',
                num_classes=2,
                in_channels=D,
                conv_init='xavier',
            )
        )


def test_backbone_and_head_class_counts_must_agree():
    with pytest.raises(ValueError, match='num_classes=1000.*200'):
        MODELS.build(
            dict(
                type='TSCAMClassifier',
                backbone=dict(type='TSCAMConformer', num_classes=1000),
                head=dict(type='TSCAMHead', num_classes=200, in_channels=D),
            )
        )
