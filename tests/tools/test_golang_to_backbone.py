"""tools/model_converters/golang_to_backbone.py: GAELLE/SwAV -> trunk."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from mmengine.logging import HistoryBuffer
from mmpretrain.models import ResNet
from torch import nn

from shared.utils.checkpoint import list_checkpoint_globals, save_state_dict
from tests.conftest import PickleBomb, load_tool, run_tool

TOOL = 'tools/model_converters/golang_to_backbone.py'


tool = load_tool(TOOL)
main, convert, ConversionError = tool.main, tool.convert, tool.ConversionError
#: Small head sizes (the converter reads them from the file): hid, d, d_l,
#: K, K_l.
HID, D, D_L, K, K_L = 32, 16, 8, 30, 20
PLUGIN_BANKS = ('prototypes', 'local_prototypes', 'l2g_prototypes')


@pytest.fixture(scope='module')
def trunk() -> dict[str, torch.Tensor]:
    """A ResNet-50 trunk state dict with every tensor distinct."""
    torch.manual_seed(0)
    net = ResNet(depth=50)
    state = {}
    for i, (key, value) in enumerate(net.state_dict().items()):
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(100 + i)
        elif 'running_var' in key:
            state[key] = torch.rand(value.shape) + 0.5
        elif value.dim() == 1:  # BN affine and running mean: not 1 / 0
            state[key] = torch.randn(value.shape) * 0.1 + (
                1.0 if key.endswith('weight') else 0.0
            )
        else:
            state[key] = value.detach().clone()
    return state


def _projection(out: int) -> dict[str, torch.Tensor]:
    """Upstream ``Sequential(Linear(2048, hid), BN1d, ReLU, Linear)``."""
    return {
        '0.weight': torch.randn(HID, 2048),
        '0.bias': torch.randn(HID),
        '1.weight': torch.randn(HID),
        '1.bias': torch.randn(HID),
        '1.running_mean': torch.randn(HID),
        '1.running_var': torch.rand(HID),
        '1.num_batches_tracked': torch.tensor(7),
        '3.weight': torch.randn(out, HID),
        '3.bias': torch.randn(out),
    }


@pytest.fixture(scope='module')
def heads() -> dict[str, torch.Tensor]:
    """GAELLE's heads under the upstream names (``src/resnet50.py``)."""
    torch.manual_seed(1)
    out = {f'projection_head.{k}': v for k, v in _projection(D).items()}
    out['prototypes.weight'] = torch.randn(K, D)
    out |= {
        f'local_projection_head.{k}': v for k, v in _projection(D_L).items()
    }
    out['local_prototypes.weight'] = torch.randn(K_L, D_L)
    out['l2g_prototypes.weight'] = torch.randn(K, D_L)
    return out


def _swav_heads(heads: dict) -> dict:
    return {k: v for k, v in heads.items() if k.startswith(('proj', 'proto'))}


def _gaelle_ckpt(trunk: dict, heads: dict) -> dict:
    """What GAELLE's ``main.py`` saves from its DDP model."""
    state = {'module.' + k: v for k, v in (trunk | heads).items()}
    return {
        'epoch': 400,
        'state_dict': state,
        'optimizer': {
            'state': {0: {'momentum_buffer': torch.zeros(3)}},
            'param_groups': [{'lr': 0.6, 'momentum': 0.9, 'params': [0]}],
        },
        'scaler': {
            'scale': 65536.0,
            'growth_factor': 2.0,
            'backoff_factor': 0.5,
            'growth_interval': 2000,
            '_growth_tracker': 12,
        },
    }


def _to_plugin(key: str) -> str:
    """The plugin name of an upstream GAELLE key (written independently)."""
    for upstream, plugin in (
        ('local_projection_head.', 'neck.local_proj.'),
        ('projection_head.', 'neck.global_proj.'),
    ):
        if key.startswith(upstream):
            return plugin + key[len(upstream) :]
    if key.split('.')[0] in PLUGIN_BANKS:
        return 'head.loss_module.' + key
    return 'backbone.' + key


def _mmengine_ckpt(trunk: dict, heads: dict) -> dict:
    """This plugin's MMEngine training checkpoint."""
    return {
        'meta': {'epoch': 7, 'iter': 70, 'seed': 0},
        'state_dict': {_to_plugin(k): v for k, v in (trunk | heads).items()},
        'message_hub': {
            'log_scalars': {'train/loss': HistoryBuffer([8.0, 7.9], [1, 1])},
            'runtime_info': {'iter': np.int64(70)},
        },
    }


def _assert_trunk(state: dict, trunk: dict) -> None:
    assert list(state) == list(trunk)  # exact keys, in ResNet order
    for key, value in trunk.items():
        expected_dtype = torch.int64 if value.dim() == 0 else torch.float32
        assert state[key].dtype == expected_dtype, key
        assert torch.equal(state[key], value.to(expected_dtype)), key


def test_gaelle_checkpoint_cli_loads_into_torchvision(tmp_path, trunk, heads):
    src, dst = tmp_path / 'ckp-399.pth', tmp_path / 'out' / 'trunk.pth'
    save_state_dict(_gaelle_ckpt(trunk, heads), str(src))
    proc = run_tool([TOOL, str(src), str(dst)], timeout=300)
    assert 'source format: gaelle' in proc.stdout
    assert (
        'dropped 21 head tensors: projection_head.* (9), prototypes.* (1), '
        'local_projection_head.* (9), local_prototypes.* (1), '
        'l2g_prototypes.* (1)'
    ) in proc.stdout
    assert 'tensors written: 318\nepoch: 400\n' in proc.stdout

    # A clean, flat {name: tensor} file.
    assert list_checkpoint_globals(str(dst)) == []
    state = torch.load(dst, weights_only=True)
    _assert_trunk(state, trunk)

    net = torchvision.models.resnet50()
    result = net.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ['fc.bias', 'fc.weight']
    assert result.unexpected_keys == []
    for key, value in net.state_dict().items():
        if not key.startswith('fc.'):
            assert torch.equal(value, trunk[key]), key

    # What the probe configs do with it: Pretrained init of mmpretrain's
    # ResNet (through the patched, weights_only checkpoint loader).
    probe = ResNet(
        depth=50, init_cfg=dict(type='Pretrained', checkpoint=str(dst))
    )
    probe.init_weights()
    for key, value in probe.state_dict().items():
        assert torch.equal(value, trunk[key]), key


def _torchvision(trunk, heads):
    return trunk | {
        'fc.weight': torch.randn(1000, 2048),
        'fc.bias': torch.randn(1000),
    }


def _swav_ckpt(trunk, heads):
    ckpt = _gaelle_ckpt(trunk, _swav_heads(heads))
    del ckpt['scaler']
    return ckpt


def _swav_released(trunk, heads):
    """The released ``swav_800ep_pretrain.pth.tar``: flat ``module.*``."""
    return {'module.' + k: v for k, v in (trunk | _swav_heads(heads)).items()}


def _swav_multibank(trunk, heads):
    """SwAV with ``--nmb_prototypes`` a list (``MultiPrototypes``)."""
    state = dict(_swav_released(trunk, heads))
    del state['module.prototypes.weight']
    state['module.prototypes.prototypes0.weight'] = torch.randn(K, D)
    state['module.prototypes.prototypes1.weight'] = torch.randn(K_L, D)
    return state


def _mmengine(trunk, heads):
    return _mmengine_ckpt(trunk, heads)


def _mmengine_probe(trunk, heads):
    """A linear-probe ``ImageClassifier`` checkpoint (plugin names)."""
    state = {'backbone.' + k: v for k, v in trunk.items()}
    state['head.fc.weight'] = torch.randn(80, 2048)
    state['head.fc.bias'] = torch.randn(80)
    return {'meta': {}, 'state_dict': state}


@pytest.mark.parametrize(
    ('build', 'fmt', 'dropped', 'epoch'),
    [
        (_torchvision, 'torchvision', {'fc.': 2}, None),
        (_swav_ckpt, 'swav', {'projection_head.': 9, 'prototypes.': 1}, 400),
        (
            _swav_released,
            'swav',
            {'projection_head.': 9, 'prototypes.': 1},
            None,
        ),
        (
            _swav_multibank,
            'swav',
            {'projection_head.': 9, 'prototypes.': 2},
            None,
        ),
        (
            _mmengine,
            'mmengine',
            {
                'neck.global_proj.': 9,
                'head.loss_module.prototypes.': 1,
                'neck.local_proj.': 9,
                'head.loss_module.local_prototypes.': 1,
                'head.loss_module.l2g_prototypes.': 1,
            },
            7,
        ),
        (_mmengine_probe, 'mmengine', {'head.': 2}, None),
    ],
    ids=[
        'torchvision',
        'swav',
        'swav-released',
        'swav-multibank',
        'mmengine',
        'probe',
    ],
)
def test_formats_map_to_the_exact_trunk(
    trunk, heads, build, fmt, dropped, epoch
):
    ckpt = build(trunk, heads)
    state, meta = convert(ckpt, name='in.pth')
    _assert_trunk(state, trunk)
    assert meta['format'] == fmt
    assert meta['dropped'] == dropped
    assert meta.get('epoch') == epoch
    assert meta['filled_bn_counters'] == meta['cast_to_fp32'] == 0
    forced, forced_meta = convert(ckpt, name='in.pth', src_format=fmt)
    assert list(forced) == list(state) and forced_meta == meta


def test_mmengine_file_through_the_allowlist(tmp_path, capsys, trunk, heads):
    """(a) holds HistoryBuffer/numpy objects: read via the allowlist."""
    src, dst = tmp_path / 'epoch_7.pth', tmp_path / 'trunk.pth'
    torch.save(_mmengine_ckpt(trunk, heads), src)
    assert list_checkpoint_globals(str(src))  # really holds globals
    assert main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'source format: mmengine' in out and 'epoch: 7' in out
    _assert_trunk(torch.load(dst, weights_only=True), trunk)


def test_fp16_input_is_written_fp32(trunk):
    half = {
        k: v.half() if v.is_floating_point() else v for k, v in trunk.items()
    }
    state, meta = convert(half, name='half.pth')
    floats = sum(v.is_floating_point() for v in trunk.values())
    assert meta['cast_to_fp32'] == floats == 318 - 53
    assert list(state) == list(trunk)
    for key, value in half.items():
        assert state[key].dtype == (
            torch.float32 if value.is_floating_point() else torch.int64
        )
        assert torch.equal(state[key], value.to(state[key].dtype)), key


def test_swav_stem_equals_mmpretrain_resnet(trunk):
    """ConstantPad2d(1) + conv padding 2 (SwAV/GAELLE) == padding 3."""
    state, _ = convert(trunk, name='t.pth')
    net = ResNet(depth=50, out_indices=(3,))
    net.load_state_dict(state, strict=True)
    net.eval()
    swav = torchvision.models.resnet50()
    swav.load_state_dict(state, strict=False)
    swav.conv1.padding = (2, 2)  # upstream src/resnet50.py
    swav.eval()
    pad = nn.ConstantPad2d(1, 0.0)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 97, 96)
    with torch.no_grad():
        ref = net.maxpool(net.relu(net.norm1(net.conv1(x))))
        stem = swav.maxpool(swav.relu(swav.bn1(swav.conv1(pad(x)))))
        assert stem.shape == ref.shape == (2, 64, 25, 24)
        assert torch.equal(stem, ref)
        trunk_out = swav.layer4(swav.layer3(swav.layer2(swav.layer1(stem))))
        assert torch.equal(trunk_out, net(x)[0])


def _upstream(state: dict) -> dict:
    return state['state_dict'] if 'state_dict' in state else state


@pytest.mark.parametrize(
    'edit, messages',
    [
        (
            lambda s: s.update(
                {
                    f'module.extra{i}.weight': torch.zeros(i + 1)
                    for i in range(12)
                }
            ),
            [
                'unknown extra0.weight (1,)',
                'unknown extra9.weight (10,)',
                '... and 2 more unknown keys',
            ],
        ),
        (
            lambda s: s.update(
                {'module.layer5.0.conv1.weight': torch.zeros(1)}
            ),
            ['unknown layer5.0.conv1.weight (1,)'],
        ),
        (
            lambda s: s.pop('module.layer3.2.conv2.weight'),
            ['missing layer3.2.conv2.weight (256, 256, 3, 3)'],
        ),
        (
            lambda s: s.update(
                {'module.layer4.0.bn3.weight': torch.zeros(1024)}
            ),
            [
                'shape mismatch layer4.0.bn3.weight: model (2048,) vs file '
                '(1024,)'
            ],
        ),
        (
            lambda s: s.update({'conv1.weight': torch.zeros(64, 3, 7, 7)}),
            ['both with and without the module. prefix', 'conv1.weight'],
        ),
    ],
    ids=[
        'unknown-capped',
        'extra-layer',
        'missing',
        'misshaped',
        'prefix-clash',
    ],
)
def test_bad_trunk_raises(trunk, heads, edit, messages):
    ckpt = _gaelle_ckpt(trunk, heads)
    state = dict(ckpt['state_dict'])
    edit(state)
    with pytest.raises(ConversionError) as info:
        convert({**ckpt, 'state_dict': state}, name='bad.pth')
    for message in messages:
        assert message in str(info.value), (message, str(info.value))
    assert 'extra10' not in str(info.value)  # at most 10 listed


@pytest.mark.parametrize(
    ('build', 'kwargs', 'messages'),
    [
        (
            _torchvision,
            dict(src_format='swav'),
            ['unknown fc.weight (1000, 2048)'],
        ),
        (
            lambda t, h: t | _swav_heads(h),
            dict(src_format='torchvision'),
            [
                'unknown projection_head.0.weight (32, 2048)',
                'note: the keys look like a swav file',
            ],
        ),
        (
            _gaelle_ckpt,
            dict(src_format='swav'),
            [
                'unknown local_projection_head.0.weight (32, 2048)',
                'unknown local_prototypes.weight (20, 8)',
                '... and 1 more unknown keys',
                'note: the keys look like a gaelle file',
            ],
        ),
        (
            _mmengine,
            dict(src_format='gaelle'),
            [
                'no ResNet trunk keys (conv1/bn1/layer1..4)',
                'backbone.bn1.bias',
            ],
        ),
        (_torchvision, dict(full=True), ['--full maps', 'no heads']),
        (_mmengine, dict(full=True), ['use it with load_from']),
        (
            _swav_multibank,
            dict(full=True),
            ['unknown prototypes.prototypes0.weight'],
        ),
        (lambda t, h: [t], {}, ['not a checkpoint dict', 'list']),
        (lambda t, h: {'epoch': 1}, {}, ['no tensors']),
        (_torchvision, dict(src_format='timm'), ["'timm' is not one of"]),
    ],
    ids=[
        'fc-as-swav',
        'heads-as-torchvision',
        'gaelle-as-swav',
        'mmengine-as-gaelle',
        'full-torchvision',
        'full-mmengine',
        'full-multibank',
        'not-dict',
        'no-tensors',
        'bad-format',
    ],
)
def test_wrong_input_raises(trunk, heads, build, kwargs, messages):
    with pytest.raises(ConversionError) as info:
        convert(build(trunk, heads), name='bad.pth', **kwargs)
    for message in messages:
        assert message in str(info.value), (message, str(info.value))


def test_missing_bn_counters(trunk, heads):
    old = {
        k: v
        for k, v in _swav_released(trunk, heads).items()
        if not k.endswith('num_batches_tracked')
    }
    with pytest.raises(ConversionError) as info:
        convert(old, name='old.pth')
    assert 'note: 53 of the missing keys are BN' in str(info.value)
    assert '--allow-missing-bn-counters' in str(info.value)
    assert '... and 43 more missing keys' in str(info.value)

    with pytest.warns(UserWarning, match='53 BN num_batches_tracked'):
        state, meta = convert(
            old, name='old.pth', allow_missing_bn_counters=True
        )
    assert meta['filled_bn_counters'] == 53
    assert list(state) == list(trunk)
    for key, value in trunk.items():
        if key.endswith('num_batches_tracked'):
            assert state[key].dtype == torch.int64 and int(state[key]) == 0
        else:
            assert torch.equal(state[key], value), key
    # Only the counters are filled: another missing key still raises.
    del old['module.bn1.weight']
    with pytest.raises(ConversionError, match=r'missing bn1\.weight \(64,\)'):
        convert(old, name='old.pth', allow_missing_bn_counters=True)
    # A complete file never warns.
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        convert(_swav_released(trunk, heads), name='new.pth')


def _expected_plugin_shapes(trunk: dict, with_local: bool) -> dict:
    """The plugin's documented key set and shapes (§4.2, §4.3)."""
    shapes = {'backbone.' + k: tuple(v.shape) for k, v in trunk.items()}
    branches = [('global_proj', D)] + (
        [('local_proj', D_L)] if with_local else []
    )
    for branch, out in branches:
        shapes |= {
            f'neck.{branch}.0.weight': (HID, 2048),
            f'neck.{branch}.0.bias': (HID,),
            f'neck.{branch}.1.weight': (HID,),
            f'neck.{branch}.1.bias': (HID,),
            f'neck.{branch}.1.running_mean': (HID,),
            f'neck.{branch}.1.running_var': (HID,),
            f'neck.{branch}.1.num_batches_tracked': (),
            f'neck.{branch}.3.weight': (out, HID),
            f'neck.{branch}.3.bias': (out,),
        }
    shapes['head.loss_module.prototypes.weight'] = (K, D)
    if with_local:
        shapes['head.loss_module.local_prototypes.weight'] = (K_L, D_L)
        shapes['head.loss_module.l2g_prototypes.weight'] = (K, D_L)
    return shapes


def test_full_round_trip(tmp_path, capsys, trunk, heads):
    ckpt = _gaelle_ckpt(trunk, heads)
    src, dst = tmp_path / 'checkpoint.pth.tar', tmp_path / 'full.pth'
    save_state_dict(ckpt, str(src))
    assert main([str(src), str(dst), '--full']) == 0
    out = capsys.readouterr().out
    assert (
        f'plugin state dict (with_local=True): hid_channels={HID}, '
        f'feat_dim={D}, local_feat_dim={D_L}, num_prototypes={K}, '
        f'num_local_prototypes={K_L}'
    ) in out
    assert 'dropped' not in out and 'tensors written: 339' in out

    loaded = torch.load(dst, weights_only=True)
    assert set(loaded) == {'state_dict', 'meta'}
    assert loaded['meta']['with_local'] is True
    full = loaded['state_dict']
    expected = _expected_plugin_shapes(trunk, with_local=True)
    assert set(full) == set(expected)
    assert {k: tuple(v.shape) for k, v in full.items()} == expected
    # Back to upstream names: exactly the file's tensors.
    upstream = {'module.' + k: v for k, v in (trunk | heads).items()}
    assert {_to_plugin(k[len('module.') :]) for k in upstream} == set(full)
    for key, value in upstream.items():
        assert torch.equal(full[_to_plugin(key[len('module.') :])], value), key

    # The --full file is a plugin (a) checkpoint: its trunk export equals
    # the direct export of the GAELLE file.
    again = tmp_path / 'trunk.pth'
    assert main([str(dst), str(again)]) == 0
    assert 'source format: mmengine' in capsys.readouterr().out
    _assert_trunk(torch.load(again, weights_only=True), trunk)


def test_full_swav_and_inconsistent_sizes(trunk, heads):
    state, meta = convert(_swav_ckpt(trunk, heads), name='swav.pth', full=True)
    assert meta['format'] == 'swav' and meta['with_local'] is False
    assert meta['sizes'] == dict(
        hid_channels=HID, feat_dim=D, num_prototypes=K
    )
    expected = _expected_plugin_shapes(trunk, with_local=False)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected

    def full_error(**replace):
        ckpt = _gaelle_ckpt(trunk, heads)
        ckpt['state_dict'] |= {'module.' + k: v for k, v in replace.items()}
        with pytest.raises(ConversionError) as info:
            convert(ckpt, name='bad.pth', full=True)
        return str(info.value)

    # prototypes must take d-dim embeddings; C_x is tied to K.
    assert (
        'shape mismatch head.loss_module.prototypes.weight: model (30, 16) '
        'vs file (30, 17)'
    ) in full_error(**{'prototypes.weight': torch.randn(K, D + 1)})
    assert (
        'shape mismatch head.loss_module.l2g_prototypes.weight: model '
        '(30, 8) vs file (31, 8)'
    ) in full_error(**{'l2g_prototypes.weight': torch.randn(K + 1, D_L)})
    # g and h share one hidden width.
    message = full_error(
        **{'local_projection_head.0.weight': torch.randn(HID + 1, 2048)}
    )
    assert (
        'shape mismatch neck.local_proj.0.weight: model (32, 2048)' in message
    )
    # A single-Linear projection head (upstream hidden_mlp=0) has no
    # plugin counterpart.
    ckpt = _gaelle_ckpt(trunk, heads)
    ckpt['state_dict'] = {
        k: v
        for k, v in ckpt['state_dict'].items()
        if not k.startswith('module.projection_head.')
    } | {'module.projection_head.weight': torch.randn(D, 2048)}
    with pytest.raises(ConversionError) as info:
        convert(ckpt, name='bad.pth', full=True)
    assert 'missing neck.global_proj.0.weight (2048, 2048)' in str(info.value)
    assert 'unknown neck.global_proj.weight (16, 2048)' in str(info.value)


def test_planted_pickle_does_not_run(tmp_path):
    marker = tmp_path / 'MARKER'
    ckpt = {
        'epoch': 1,
        'state_dict': {'module.conv1.weight': torch.zeros(2)},
        'args': PickleBomb(marker),
    }
    src, dst = tmp_path / 'evil.pth.tar', tmp_path / 'out.pth'
    torch.save(ckpt, src)
    proc = run_tool([TOOL, str(src), str(dst)], timeout=300, check=False)
    assert proc.returncode == 1
    assert (
        'UnsafeCheckpointError' in proc.stderr
        and 'evil.pth.tar' in proc.stderr
    )
    assert 'posix.system' in proc.stderr or 'nt.system' in proc.stderr
    assert not marker.exists()
    assert not dst.exists()


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(['--help'])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        '--src-format',
        'auto,mmengine,gaelle,swav,torchvision',
        '--full',
        '--allow-missing-bn-counters',
        '--trust-source',
    ):
        assert option in out, option


@pytest.mark.parametrize('with_local', [True, False])
def test_full_loads_strictly_into_the_plugin_model(trunk, heads, with_local):
    """The --full layout is the real GAELLE model's (not only a stand-in)."""
    import projects.golang_ssl  # noqa: F401
    from shared.registry import MODELS

    ckpt = (
        _gaelle_ckpt(trunk, heads) if with_local else _swav_ckpt(trunk, heads)
    )
    state, _ = convert(ckpt, name='ckpt.pth', full=True)
    model = MODELS.build(
        dict(
            type='GAELLE',
            backbone=dict(
                type='ResNet',
                depth=50,
                out_indices=(3,),
                norm_cfg=dict(type='BN'),
            ),
            neck=dict(
                type='GAELLENeck',
                hid_channels=HID,
                feat_dim=D,
                local_feat_dim=D_L,
                with_local=with_local,
                norm_cfg=dict(type='BN1d'),
            ),
            head=dict(
                type='GAELLEHead',
                loss=dict(
                    type='GAELLELoss',
                    feat_dim=D,
                    local_feat_dim=D_L,
                    num_prototypes=K,
                    num_local_prototypes=K_L,
                    with_local=with_local,
                    with_l2g=with_local,
                ),
            ),
        )
    )
    model.load_state_dict(state, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
