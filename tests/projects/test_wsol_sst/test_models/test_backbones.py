"""SSTVGG16 / SSTInceptionV3: structure, shapes and local torchvision weights.

``wsol_sst.md`` §3.1, §3.2, §3.8 (the VGG backbone has exactly
``vgg16().features``' parameters), §11 (weights and too-small inputs) and
§12 items 1, 2 and 14. Every weight file is a random torchvision model saved
in ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from mmengine.model import BaseModule
from torch import nn

from projects.wsol_sst.models.backbones import (
    INCEPTION_V3_FILE,
    SSTVGG16,
    VGG16_FILE,
    VGG16_STAGES,
    SSTInceptionV3,
)
from shared.registry import MODELS
from shared.utils.checkpoint import UnsafeCheckpointError
from shared.utils.state_dict import StateDictMismatchError
from tests.conftest import PickleBomb

#: Parameters of torchvision's ``vgg16().features`` (13 convs with bias).
VGG16_PARAMS = 14_714_688
#: Parameters of torchvision's InceptionV3 from Conv2d_1a_3x3 to Mixed_6e.
INCEPTION_PARAMS = 8_965_856
#: torchvision InceptionV3 children that SSTInceptionV3 does not build.
INCEPTION_NOT_BUILT = (
    'AuxLogits',
    'Mixed_7a',
    'Mixed_7b',
    'Mixed_7c',
    'avgpool',
    'dropout',
    'fc',
)
#: Blocks whose torchvision definition is used unchanged.
INCEPTION_UNCHANGED = (
    'Conv2d_2a_3x3',
    'Conv2d_2b_3x3',
    'Conv2d_3b_1x1',
    'Conv2d_4a_3x3',
    'Mixed_5b',
    'Mixed_5c',
    'Mixed_5d',
    'Mixed_6b',
    'Mixed_6c',
    'Mixed_6d',
    'Mixed_6e',
)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def pretrained(path) -> dict:
    return dict(init_cfg=dict(type='Pretrained', checkpoint=str(path)))


def randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BN affine parameters and running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                shape = m.running_mean.shape
                m.running_mean.copy_(torch.randn(shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(shape, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(shape, generator=gen) * 0.1)
                m.num_batches_tracked.fill_(7)


@pytest.fixture(scope='module')
def tv_vgg() -> nn.Module:
    """torchvision's ``vgg16()``, built on the meta device (structure only)."""
    with torch.device('meta'):
        return torchvision.models.vgg16(weights=None)


@pytest.fixture(scope='module')
def tv_features() -> nn.Sequential:
    """A random ``vgg16().features``: torchvision builds it this way."""
    torch.manual_seed(1)
    cfg = torchvision.models.vgg.cfgs['D']
    return torchvision.models.vgg.make_layers(cfg, batch_norm=False).eval()


def vgg_file_state(features: nn.Sequential) -> dict:
    """A torchvision-format VGG16 state dict.

    The classifier's two large matrices (25088×4096, 4096×4096) are left
    out to keep the file small; every ``classifier.*`` key is dropped by
    name, whatever its shape.
    """
    state = {f'features.{k}': v for k, v in features.state_dict().items()}
    state['classifier.0.bias'] = torch.randn(4096)
    state['classifier.3.bias'] = torch.randn(4096)
    state['classifier.6.weight'] = torch.randn(1000, 4096)
    state['classifier.6.bias'] = torch.randn(1000)
    return state


@pytest.fixture(scope='module')
def tv_vgg_file(tv_features, tmp_path_factory):
    path = tmp_path_factory.mktemp('vgg') / VGG16_FILE
    torch.save(vgg_file_state(tv_features), path)
    return path


@pytest.fixture(scope='module')
def tv_inception() -> nn.Module:
    torch.manual_seed(2)
    model = torchvision.models.inception_v3(
        weights=None, aux_logits=True, init_weights=False
    )
    randomise_bn(model, seed=3)
    return model.eval()


@pytest.fixture(scope='module')
def tv_inception_file(tv_inception, tmp_path_factory):
    path = tmp_path_factory.mktemp('inception') / INCEPTION_V3_FILE
    torch.save(tv_inception.state_dict(), path)
    return path


@pytest.fixture(scope='module')
def inception() -> SSTInceptionV3:
    torch.manual_seed(0)
    return SSTInceptionV3().eval()


@pytest.fixture(scope='module')
def loaded_inception(tv_inception_file) -> SSTInceptionV3:
    model = SSTInceptionV3(**pretrained(tv_inception_file))
    model.init_weights()
    return model.eval()


def output_hooks(model: nn.Module, names: list[str]) -> dict:
    """Record the outputs of the named submodules in the next forward."""
    out = {}
    for name in names:
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, y, name=name: out.__setitem__(name, y)
        )
    return out


# -- registry and structure
def test_registered_and_built_from_config():
    with torch.device('meta'):
        vgg = MODELS.build(dict(type='SSTVGG16'))
        inception = MODELS.build(dict(type='SSTInceptionV3', init_cfg=None))
    assert isinstance(vgg, SSTVGG16) and isinstance(inception, SSTInceptionV3)
    assert (vgg.out_channels, vgg.f4_channels) == (512, 512)
    assert (inception.out_channels, inception.f4_channels) == (768, 288)


def test_vgg_stages_are_torchvision_features_slices(tv_vgg):
    with torch.device('meta'):
        vgg = SSTVGG16()
    slices = {'conv1_2': (0, 10), 'conv3': (10, 17), 'conv4': (17, 24)}
    slices['conv5'] = (24, 30)
    assert [name for name, _ in vgg.named_children()] == list(slices)
    for name, (start, end) in slices.items():
        stage = getattr(vgg, name)
        expected = [repr(m) for m in tv_vgg.features[start:end]]
        assert [repr(m) for m in stage] == expected, name
    convs = [m for m in vgg.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    assert all(
        c.kernel_size == (3, 3)
        and c.padding == (1, 1)
        and c.dilation == (1, 1)
        for c in convs
    )
    assert not any(isinstance(m, nn.BatchNorm2d) for m in vgg.modules())
    # conv4 ends in its pool; the pool after conv5_3 is not built.
    assert isinstance(vgg.conv4[-1], nn.MaxPool2d)
    assert isinstance(vgg.conv5[-1], nn.ReLU)
    assert not any(isinstance(m, nn.MaxPool2d) for m in vgg.conv5)
    assert isinstance(tv_vgg.features[30], nn.MaxPool2d)
    assert n_params(vgg) == n_params(tv_vgg.features) == VGG16_PARAMS


def test_inception_structure_and_param_count(inception, tv_inception):
    kept = [
        name
        for name, _ in tv_inception.named_children()
        if name not in INCEPTION_NOT_BUILT
    ]
    assert [name for name, _ in inception.named_children()] == kept
    tv_kept = sum(n_params(getattr(tv_inception, name)) for name in kept)
    assert n_params(inception) == tv_kept == INCEPTION_PARAMS
    # Same keys and shapes as torchvision minus the parts not built.
    tv_state = {
        k: tuple(v.shape)
        for k, v in tv_inception.state_dict().items()
        if k.split('.')[0] in kept
    }
    own = {k: tuple(v.shape) for k, v in inception.state_dict().items()}
    assert own == tv_state
    for name in INCEPTION_NOT_BUILT:
        assert not hasattr(inception, name)
    assert not hasattr(inception, 'transform_input')
    bns = [m for m in inception.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(type(m) is nn.BatchNorm2d for m in bns)
    assert all(m.eps == 1e-3 for m in bns)
    assert inception.Conv2d_1a_3x3.conv.padding == (1, 1)
    assert inception.Conv2d_1a_3x3.conv.stride == (2, 2)
    for pool in (inception.maxpool1, inception.maxpool2):
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
        assert pool.ceil_mode
    mixed_6a = inception.Mixed_6a
    for conv in (mixed_6a.branch3x3.conv, mixed_6a.branch3x3dbl_3.conv):
        assert conv.stride == (1, 1) and conv.padding == (1, 1)


# -- shapes
def test_vgg_shapes_square_and_non_square():
    torch.manual_seed(0)
    vgg = SSTVGG16().eval()
    stages = output_hooks(vgg, ['conv1_2', 'conv3'])
    with torch.no_grad():
        f4, f5 = vgg(torch.randn(2, 3, 224, 288))
    assert stages['conv1_2'].shape == (2, 128, 56, 72)
    assert stages['conv3'].shape == (2, 256, 28, 36)
    assert f4.shape == f5.shape == (2, 512, 14, 18)
    assert f5.min() >= 0  # F5 is taken after the ReLU
    with torch.device('meta'):
        meta = SSTVGG16()
        stages = output_hooks(meta, ['conv1_2', 'conv3'])
        f4, f5 = meta(torch.empty(1, 3, 224, 224))
    assert stages['conv1_2'].shape == (1, 128, 56, 56)
    assert stages['conv3'].shape == (1, 256, 28, 28)
    assert f4.shape == f5.shape == (1, 512, 14, 14)
    assert vgg.grid_size(224, 288) == (14, 18)


def test_inception_shapes_at_224(inception):
    stages, handles = {}, []
    for name in ('maxpool1', 'maxpool2'):
        handles.append(
            getattr(inception, name).register_forward_hook(
                lambda _m, _i, y, name=name: stages.__setitem__(name, y)
            )
        )
    try:
        with torch.no_grad():
            f4, f5 = inception(torch.randn(1, 3, 224, 224))
    finally:
        for handle in handles:
            handle.remove()
    assert stages['maxpool1'].shape == (1, 64, 56, 56)
    assert stages['maxpool2'].shape == (1, 192, 28, 28)
    assert f4.shape == (1, 288, 28, 28)
    assert f5.shape == (1, 768, 28, 28)
    assert f4.min() >= 0 and f5.min() >= 0
    assert inception.grid_size(224, 224) == (28, 28)


@pytest.mark.parametrize(
    'size, grid',
    [((256, 256), (32, 32)), ((320, 320), (40, 40)), ((224, 288), (28, 36))],
)
def test_inception_grid_at_other_sizes(size, grid):
    with torch.device('meta'):
        model = SSTInceptionV3()
        f4, f5 = model(torch.empty(2, 3, *size))
    assert f4.shape == (2, 288, *grid)
    assert f5.shape == (2, 768, *grid)
    assert model.grid_size(*size) == grid


def test_grid_size_matches_the_forward_for_many_sizes():
    with torch.device('meta'):
        inception = SSTInceptionV3().eval()
        vgg = SSTVGG16()
        for side in [15, 16, 17, 30, 31, 32, 33, 63, 64, 65, 97, 299]:
            _, f5 = inception(torch.empty(1, 3, side, side + 1))
            assert tuple(f5.shape[-2:]) == inception.grid_size(
                side, side + 1
            ), side
            if side >= 32:
                _, f5 = vgg(torch.empty(1, 3, side, side + 1))
                assert tuple(f5.shape[-2:]) == vgg.grid_size(side, side + 1)


# -- bad input
@pytest.mark.parametrize(
    'cls, size, grid',
    [
        (SSTVGG16, (31, 64), (1, 4)),
        (SSTVGG16, (64, 16), (4, 1)),
        (SSTInceptionV3, (14, 224), (1, 28)),
        (SSTInceptionV3, (224, 5), (28, 0)),
    ],
)
def test_too_small_input_names_size_and_grid(cls, size, grid):
    with torch.device('meta'):
        model = cls()
        with pytest.raises(ValueError) as err:
            model(torch.empty(1, 3, *size))
    message = str(err.value)
    assert f'input {size[0]}x{size[1]}' in message
    assert f'{grid[0]}x{grid[1]} feature grid' in message
    assert '2x2' in message


def test_smallest_inputs_give_a_2x2_grid(inception):
    torch.manual_seed(0)
    with torch.no_grad():
        f4, f5 = SSTVGG16()(torch.randn(1, 3, 32, 32))
        assert f4.shape[-2:] == f5.shape[-2:] == (2, 2)
        f4, f5 = inception(torch.randn(1, 3, 15, 15))
        assert f4.shape[-2:] == f5.shape[-2:] == (2, 2)


def test_non_batched_input_is_refused():
    with torch.device('meta'):
        with pytest.raises(ValueError, match=r'\(B, 3, H, W\).*\(3, 64, 64\)'):
            SSTVGG16()(torch.empty(3, 64, 64))


# -- weights: VGG16
def test_vgg_loads_torchvision_weights_and_reproduces_features(
    tv_features, tv_vgg_file
):
    vgg = SSTVGG16(**pretrained(tv_vgg_file))
    before = vgg.conv5[4].weight.clone()
    vgg.init_weights()
    assert not torch.equal(vgg.conv5[4].weight, before)
    tv_state = tv_features.state_dict()
    loaded = 0
    for name, start, _ in VGG16_STAGES:
        for key, value in getattr(vgg, name).state_dict().items():
            index, rest = key.split('.', 1)
            tv_key = f'{int(index) + start}.{rest}'
            assert torch.equal(value, tv_state[tv_key]), tv_key
            loaded += 1
    assert loaded == len(tv_state) == 26
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        f4, f5 = vgg(x)
        torch.testing.assert_close(f4, tv_features[:24](x))
        torch.testing.assert_close(f5, tv_features[:30](x))
    assert f5.shape == (2, 512, 4, 6)


def test_vgg_loads_wrapped_and_prefixed_files(tv_features, tmp_path):
    state = {
        f'module.features.{k}': v for k, v in tv_features.state_dict().items()
    }
    path = tmp_path / 'wrapped.pth'
    torch.save({'state_dict': state, 'epoch': 3}, path)
    vgg = SSTVGG16()
    assert vgg.load_pretrained(str(path)) == 26  # 13 weights + 13 biases
    assert torch.equal(vgg.conv1_2[0].weight, tv_features[0].weight)
    assert torch.equal(vgg.conv5[4].bias, tv_features[28].bias)


def test_vgg_key_problems_are_all_listed(tv_features, tmp_path):
    state = vgg_file_state(tv_features)
    del state['features.28.bias']
    state['features.0.weight'] = torch.zeros(64, 3, 5, 5)
    state['features.30.weight'] = torch.zeros(2)
    torch.save(state, tmp_path / 'bad.pth')
    vgg = SSTVGG16(**pretrained(tmp_path / 'bad.pth'))
    before = {k: v.clone() for k, v in vgg.state_dict().items()}
    with pytest.raises(StateDictMismatchError) as err:
        vgg.init_weights()
    message = str(err.value)
    assert 'bad.pth does not fit SSTVGG16' in message
    assert '3 problems' in message
    assert 'missing features.28.bias (512,)' in message
    assert (
        'shape mismatch features.0.weight: model (64, 3, 3, 3) vs file '
        '(64, 3, 5, 5)'
    ) in message
    assert 'unexpected features.30.weight (2,)' in message
    assert 'classifier' not in message  # dropped, not reported
    # Nothing was loaded from the rejected file.
    assert all(torch.equal(v, before[k]) for k, v in vgg.state_dict().items())


def test_vgg_bn_variant_is_refused(tmp_path):
    features = torchvision.models.vgg.make_layers(
        torchvision.models.vgg.cfgs['D'], batch_norm=True
    )
    torch.save(
        {f'features.{k}': v for k, v in features.state_dict().items()},
        tmp_path / 'vgg16_bn.pth',
    )
    with pytest.raises(StateDictMismatchError) as err:
        SSTVGG16().load_pretrained(str(tmp_path / 'vgg16_bn.pth'))
    message = str(err.value)
    assert 'unexpected features.1.running_mean (64,)' in message
    assert 'missing features.2.weight (64, 64, 3, 3)' in message
    assert (
        'shape mismatch features.7.weight: model (128, 128, 3, 3) vs file '
        '(128, 64, 3, 3)'
    ) in message
    assert VGG16_FILE in message


# -- weights: InceptionV3
def test_inception_loads_every_kept_tensor(loaded_inception, tv_inception):
    tv_state = tv_inception.state_dict()
    own = loaded_inception.state_dict()
    assert len(own) > 0
    for key, value in own.items():
        assert torch.equal(value, tv_state[key]), key


def test_inception_unchanged_blocks_match_torchvision(
    loaded_inception, tv_inception
):
    torch.manual_seed(0)
    for name in INCEPTION_UNCHANGED:
        ours = getattr(loaded_inception, name)
        theirs = getattr(tv_inception, name)
        first = next(m for m in theirs.modules() if isinstance(m, nn.Conv2d))
        x = torch.randn(1, first.in_channels, 9, 11)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), msg=name)


def reference_inception(tv: nn.Module, x: torch.Tensor):
    """torchvision's blocks, with §3.2's changes applied by hand."""

    def conv_bn_relu(block, x, stride, padding):
        y = F.conv2d(x, block.conv.weight, None, stride, padding)
        return F.relu(block.bn(y))

    x = conv_bn_relu(tv.Conv2d_1a_3x3, x, stride=2, padding=1)
    x = tv.Conv2d_2b_3x3(tv.Conv2d_2a_3x3(x))
    x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
    x = tv.Conv2d_4a_3x3(tv.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
    f4 = tv.Mixed_5d(tv.Mixed_5c(tv.Mixed_5b(x)))
    m = tv.Mixed_6a
    branch3x3 = conv_bn_relu(m.branch3x3, f4, stride=1, padding=1)
    dbl = m.branch3x3dbl_2(m.branch3x3dbl_1(f4))
    dbl = conv_bn_relu(m.branch3x3dbl_3, dbl, stride=1, padding=1)
    pool = F.max_pool2d(f4, 3, stride=1, padding=1)
    x = torch.cat([branch3x3, dbl, pool], 1)
    f5 = tv.Mixed_6e(tv.Mixed_6d(tv.Mixed_6c(tv.Mixed_6b(x))))
    return f4, f5


def test_inception_reproduces_torchvision_with_the_changes(
    loaded_inception, tv_inception
):
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        f4, f5 = loaded_inception(x)
        ref4, ref5 = reference_inception(tv_inception, x)
    assert f4.shape == (2, 288, 12, 10) and f5.shape == (2, 768, 12, 10)
    torch.testing.assert_close(f4, ref4)
    torch.testing.assert_close(f5, ref5)
    # The changes matter: the stock Mixed_6a halves the grid.
    with torch.no_grad():
        assert tv_inception.Mixed_6a(f4).shape[-2:] == (5, 4)


def test_inception_tolerates_missing_bn_counters(
    inception, tv_inception, tmp_path
):
    state = {
        k: v
        for k, v in tv_inception.state_dict().items()
        if not k.endswith('num_batches_tracked')
        and not k.startswith(('Mixed_7b.', 'Mixed_7c.'))  # smaller file
    }
    torch.save(state, tmp_path / 'old.pth')
    model = copy.deepcopy(inception)
    model.load_pretrained(str(tmp_path / 'old.pth'))
    assert model.Mixed_5b.branch1x1.bn.num_batches_tracked.item() == 0
    torch.testing.assert_close(
        model.Mixed_6e.branch_pool.bn.running_var,
        tv_inception.Mixed_6e.branch_pool.bn.running_var,
    )


def test_inception_key_problems_are_all_listed(tv_inception, tmp_path):
    state = dict(tv_inception.state_dict())
    del state['Mixed_6e.branch_pool.conv.weight']
    state['Mixed_5b.branch1x1.bn.bias'] = torch.zeros(65)
    state['Mixed_6f.conv.weight'] = torch.zeros(3, 3)
    torch.save(state, tmp_path / 'bad.pth')
    with torch.device('meta'), pytest.raises(StateDictMismatchError) as err:
        SSTInceptionV3().load_pretrained(str(tmp_path / 'bad.pth'))
    message = str(err.value)
    assert 'bad.pth does not fit SSTInceptionV3' in message
    assert '3 problems' in message
    assert (
        'missing Mixed_6e.branch_pool.conv.weight (192, 768, 1, 1)' in message
    )
    assert (
        'shape mismatch Mixed_5b.branch1x1.bn.bias: model (64,) vs file (65,)'
    ) in message
    assert 'unexpected Mixed_6f.conv.weight (3, 3)' in message
    for dropped in ('AuxLogits', 'Mixed_7', 'fc.'):
        assert dropped not in message


# -- weights: files
@pytest.mark.parametrize(
    'cls, upstream',
    [(SSTVGG16, VGG16_FILE), (SSTInceptionV3, INCEPTION_V3_FILE)],
)
def test_missing_file_names_path_and_upstream_file(cls, upstream, tmp_path):
    path = tmp_path / 'checkpoints' / 'absent.pth'
    with torch.device('meta'):
        model = cls(**pretrained(path))
    with pytest.raises(FileNotFoundError) as err:
        model.init_weights()
    message = str(err.value)
    assert str(path) in message
    assert upstream in message
    assert 'nothing is downloaded' in message


@pytest.mark.parametrize('legacy', [False, True])
def test_planted_pickle_never_runs(tv_features, tmp_path, legacy):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(
        {'state_dict': vgg_file_state(tv_features), 'x': PickleBomb(marker)},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    with pytest.raises(UnsafeCheckpointError) as err:
        SSTVGG16(**pretrained(path)).init_weights()
    assert 'evil.pth' in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    'init_cfg', [None, dict(type='Pretrained', checkpoint=None)]
)
@pytest.mark.parametrize('cls', [SSTVGG16, SSTInceptionV3])
def test_no_checkpoint_keeps_the_random_init(cls, init_cfg, inception):
    model = copy.deepcopy(inception) if cls is SSTInceptionV3 else SSTVGG16()
    model.init_cfg = init_cfg
    model._is_init = False
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    assert model.is_init
    assert all(
        torch.equal(v, before[k]) for k, v in model.state_dict().items()
    )


def test_inception_random_init_follows_torchvision(inception):
    convs = [m for m in inception.modules() if isinstance(m, nn.Conv2d)]
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.std().item() - 0.1) < 1e-3
    assert abs(weights.mean().item()) < 1e-3
    bns = [m for m in inception.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(
        torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns
    )


def test_parent_init_weights_loads_the_backbone(tv_features, tv_vgg_file):
    """The localizer's ``init_weights`` reaches the local loader."""

    class Parent(BaseModule):
        def __init__(self, backbone: dict) -> None:
            super().__init__()
            self.backbone = MODELS.build(backbone)

    parent = Parent(dict(type='SSTVGG16', **pretrained(tv_vgg_file)))
    parent.init_weights()
    assert parent.backbone.is_init
    assert torch.equal(parent.backbone.conv5[4].weight, tv_features[28].weight)
