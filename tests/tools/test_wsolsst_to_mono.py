"""tools/model_converters/wsolsst_to_mono.py: upstream WSOL-SST -> plugin."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.runner import load_checkpoint
from torch import nn

from projects.wsol_sst.models import (
    SSTVGG16,
    SSTConvHead,
    SSTEdgeSelfAttention,
    SSTInceptionV3,
)
from shared.utils.checkpoint import list_checkpoint_globals, save_state_dict
from shared.utils.compat import apply_patches
from tests.conftest import PickleBomb, load_tool, run_tool

TOOL = 'tools/model_converters/wsolsst_to_mono.py'


tool = load_tool(TOOL)
main, convert, ConversionError = tool.main, tool.convert, tool.ConversionError
CLASSES = 5  # small C keeps the cls head's last conv tiny


class _Localizer(nn.Module):
    """The attribute layout of ``SSTLocalizer`` built from our classes."""

    def __init__(
        self,
        backbone: nn.Module,
        classes: int = CLASSES,
        sos: bool = True,
        sa: bool = True,
    ) -> None:
        super().__init__()
        channels = backbone.out_channels
        self.backbone = backbone
        self.cls_head = SSTConvHead(channels, 1024, classes)
        if sos:
            self.sos_head = SSTConvHead(channels, 1024, 1)
        if sa:
            self.sa = SSTEdgeSelfAttention(channels, num_heads=8)


def _to_upstream(key: str, inception_names: bool = False) -> str:
    """Upstream name of a plugin key (the inverse of the table in §8)."""
    part, rest = key.split('.', 1)
    if part == 'backbone':
        return rest
    if part in ('cls_head', 'sos_head'):
        layers, index, param = rest.split('.')
        assert layers == 'layers', key
        if part == 'cls_head' and inception_names:
            # upstream inceptionv3_sst.py: cls_fc6/cls_fc7 Sequential(conv,
            # ReLU) and a bare cls_fc8 conv
            return {
                '0': f'cls_fc6.0.{param}',
                '2': f'cls_fc7.0.{param}',
                '4': f'cls_fc8.{param}',
            }[index]
        return f'{part[:3]}.{index}.{param}'
    assert part == 'sa', key
    return ('sdpa.' if inception_names else 'sa.') + rest


def _upstream_ckpt(
    model: nn.Module,
    *,
    inception_names: bool = False,
    wrapped: bool = True,
    extras: bool = True,
) -> dict:
    """A checkpoint as upstream ``exper/train_sst.py`` saves it."""
    prefix = 'module.' if wrapped else ''
    state = {
        prefix + _to_upstream(k, inception_names): v
        for k, v in model.state_dict().items()
    }
    if not extras:
        return state
    # SPA's unused conv5_add layer, saved by older upstream models
    state[prefix + 'conv5_add.0.weight'] = torch.randn(4, 512, 3, 3)
    state[prefix + 'conv5_add.0.bias'] = torch.randn(4)
    params = list(model.parameters())
    optimizer = torch.optim.SGD(
        params, lr=1e-3, momentum=0.9, weight_decay=5e-4, nesterov=True
    ).state_dict()
    optimizer['state'][len(params) - 1] = {
        'momentum_buffer': torch.randn(params[-1].shape)
    }
    return {
        'epoch': 100,
        'arch': 'vgg_sst',
        'global_counter': np.int64(18700),
        'state_dict': state,
        'optimizer': optimizer,
    }


@pytest.fixture(scope='module')
def vgg_full() -> _Localizer:
    """VGG16 with cls (C=5), SOS and SA: the sos+sa_v3 layout."""
    torch.manual_seed(0)
    model = _Localizer(SSTVGG16())
    with torch.no_grad():  # non-zero biases: a swapped tensor shows
        for name, param in model.named_parameters():
            if name.endswith('bias'):
                param.normal_()
    return model.eval()


@pytest.fixture(scope='module')
def vgg_spa() -> _Localizer:
    """VGG16 with only the cls head: the spa (stage-0) layout."""
    torch.manual_seed(1)
    return _Localizer(SSTVGG16(), sos=False, sa=False).eval()


def _save(tmp_path: Path, ckpt, name: str = 'cub_epoch_100.pth.tar'):
    src = tmp_path / name
    save_state_dict(ckpt, str(src))
    return src


def _assert_same(state: dict, model: nn.Module) -> None:
    own = model.state_dict()
    assert set(state) == set(own)
    for key, value in own.items():
        assert torch.equal(state[key], value), key


def test_converts_and_loads_strict(tmp_path, capsys, vgg_full):
    src = _save(tmp_path, _upstream_ckpt(vgg_full))
    dst = tmp_path / 'out' / 'converted.pth'
    assert main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'dropped 2 conv5_add.* tensors' in out
    assert 'conv5_add.0.bias, conv5_add.0.weight' in out
    assert 'backbone: SSTVGG16' in out
    assert f'num_classes: {CLASSES}' in out
    assert 'modules: backbone, cls_head, sos_head, sa' in out
    assert 'likely mode: sos+sa_v1/v2/v3 (upstream trains sos+sa_v3)' in out
    n = len(vgg_full.state_dict())
    assert f'tensors converted: {n}\n' in out
    assert 'epoch: 100' in out and 'global_counter: 18700' in out

    # Clean output: no pickle globals, loads with weights_only=True.
    assert list_checkpoint_globals(str(dst)) == []
    loaded = torch.load(dst, weights_only=True)
    assert set(loaded) == {'state_dict', 'meta'}
    assert loaded['meta'] == {
        'backbone': 'SSTVGG16',
        'num_classes': CLASSES,
        'modules': ['backbone', 'cls_head', 'sos_head', 'sa'],
        'mode_family': 'sos+sa',
        'dropped': ['conv5_add.0.bias', 'conv5_add.0.weight'],
        'converted_from': 'cub_epoch_100.pth.tar',
        'epoch': 100,
        'global_counter': 18700,
        'upstream_arch': 'vgg_sst',
    }
    assert type(loaded['meta']['global_counter']) is int
    state = loaded['state_dict']
    assert not any(k.startswith(('module.', 'conv5_add')) for k in state)

    fresh = _Localizer(SSTVGG16())
    fresh.load_state_dict(state, strict=True)
    _assert_same(state, vgg_full)
    _assert_same(fresh.state_dict(), vgg_full)

    # What tools/test.py does with the file (load_from through safe_load).
    apply_patches()
    again = _Localizer(SSTVGG16())
    load_checkpoint(again, str(dst), map_location='cpu', strict=True)
    _assert_same(again.state_dict(), vgg_full)


def test_round_trip_spa_stage0(tmp_path, capsys, vgg_spa):
    ckpt = _upstream_ckpt(vgg_spa)
    ckpt['arch'] = 'vgg_spa'
    src = _save(tmp_path, ckpt, 'ilsvrc_epoch_20.pth.tar')
    dst = tmp_path / 'stage0.pth'
    assert main([str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert 'modules: backbone, cls_head\n' in out
    assert 'likely mode: spa\n' in out
    loaded = torch.load(dst, weights_only=True)
    assert loaded['meta']['mode_family'] == 'spa'
    back = loaded['state_dict']
    assert list(back) == list(vgg_spa.state_dict())
    # Back to upstream names: exactly the file's tensors, conv5_add aside.
    upstream = {'module.' + _to_upstream(k): v for k, v in back.items()}
    original = {
        k: v
        for k, v in ckpt['state_dict'].items()
        if not k.startswith('module.conv5_add.')
    }
    assert set(upstream) == set(original)
    for key, value in original.items():
        assert torch.equal(upstream[key], value), key


@pytest.mark.parametrize(
    ('sos', 'sa', 'family'),
    [(False, True, 'spa+sa'), (True, False, 'sos')],
)
def test_mode_families_in_memory(vgg_full, sos, sa, family):
    ckpt = _upstream_ckpt(vgg_full, extras=False)
    drop = ('module.sos.',) if not sos else ('module.sa.',)
    ckpt = {k: v for k, v in ckpt.items() if not k.startswith(drop)}
    state, meta = convert(ckpt, name='bare.pth')
    assert meta['mode_family'] == family
    assert meta['dropped'] == []
    assert 'epoch' not in meta  # a bare state dict has no training info
    container = _Localizer(SSTVGG16(), sos=sos, sa=sa)
    container.load_state_dict(state, strict=True)
    for key, value in state.items():
        assert torch.equal(value, vgg_full.state_dict()[key]), key


def test_inception_upstream_names():
    """Upstream InceptionV3 layout: cls_fc6/7/8 and sdpa; BN counters."""
    torch.manual_seed(2)
    model = _Localizer(SSTInceptionV3(), classes=3, sos=False, sa=True)
    ckpt = _upstream_ckpt(model, inception_names=True, wrapped=False)
    ckpt['arch'] = 'inceptionv3_sst'
    state, meta = convert(ckpt, name='inc.pth.tar')
    assert meta['backbone'] == 'SSTInceptionV3'
    assert meta['num_classes'] == 3
    assert meta['mode_family'] == 'spa+sa'
    assert meta['upstream_arch'] == 'inceptionv3_sst'
    _assert_same(state, model)
    model.load_state_dict(state, strict=True)

    # torch < 0.4.1 saved no BN num_batches_tracked: filled with 0.
    old = {
        k: v
        for k, v in ckpt['state_dict'].items()
        if not k.endswith('num_batches_tracked')
    }
    state, _ = convert(old, name='old.pth.tar')
    counters = [k for k in state if k.endswith('num_batches_tracked')]
    assert counters and all(int(state[k]) == 0 for k in counters)
    model.load_state_dict(state, strict=True)


def test_map_key_and_mode_family():
    assert tool.map_key('conv5.4.weight') == 'backbone.conv5.4.weight'
    assert (
        tool.map_key('Mixed_6e.branch_pool.bn.running_var')
        == 'backbone.Mixed_6e.branch_pool.bn.running_var'
    )
    assert tool.map_key('cls.4.bias') == 'cls_head.layers.4.bias'
    assert tool.map_key('sos.2.weight') == 'sos_head.layers.2.weight'
    assert tool.map_key('cls_fc7.0.weight') == 'cls_head.layers.2.weight'
    assert tool.map_key('cls_fc8.bias') == 'cls_head.layers.4.bias'
    assert tool.map_key('sdpa.fc_o.weight') == 'sa.fc_o.weight'
    assert tool.map_key('sa.fc_k.bias') == 'sa.fc_k.bias'
    for key in ('cls.1.weight', 'conv5_add.0.weight', 'sa.dropout.p', 'fc'):
        assert tool.map_key(key) is None, key
    assert tool.mode_family(set()) == 'spa'
    assert tool.mode_family({'sa'}) == 'spa+sa'
    assert tool.mode_family({'sos_head'}) == 'sos'
    assert tool.mode_family(['sa', 'sos_head', 'cls_head']) == 'sos+sa'


def _edited(model: nn.Module, fn) -> dict:
    state = dict(_upstream_ckpt(model, extras=False))
    fn(state)
    return state


def _unknown(sd):
    sd['module.extra.weight'] = torch.zeros(2)
    sd['module.conv5.6.weight'] = torch.zeros(3)
    sd['module.mc_sos.0.weight'] = torch.zeros(1)


def _misshaped_cls(sd):
    sd['module.cls.0.weight'] = torch.zeros(1024, 256, 3, 3)


def _misshaped_backbone_and_missing(sd):
    sd['module.conv3.0.bias'] = torch.zeros(255)
    del sd['module.sos.2.bias']


def _sa_four_heads(sd):
    sd['module.sa.fc_q.weight'] = torch.zeros(4 * 512, 512)


def _duplicate_alias(sd):
    sd['module.cls_fc8.bias'] = sd['module.cls.4.bias']


def _no_cls(sd):
    for key in [k for k in sd if k.startswith('module.cls.')]:
        del sd[key]


def _linear_cls(sd):
    sd['module.cls.4.weight'] = torch.zeros(CLASSES, 1024)


def _torchvision_file(sd):
    sd.clear()
    sd['features.0.weight'] = torch.zeros(64, 3, 3, 3)
    sd['classifier.6.bias'] = torch.zeros(1000)


def _both_backbones(sd):
    sd['module.Mixed_5b.branch1x1.conv.weight'] = torch.zeros(1)


@pytest.mark.parametrize(
    ('fn', 'messages'),
    [
        (
            _unknown,
            [
                'unknown extra.weight (2,)',
                'unknown conv5.6.weight (3,)',
                'unknown mc_sos.0.weight (1,)',
                'historical upstream modes',
            ],
        ),
        (
            _misshaped_cls,
            [
                'shape mismatch cls.0.weight -> cls_head.layers.0.weight: '
                'model (1024, 512, 3, 3) vs file (1024, 256, 3, 3)'
            ],
        ),
        (
            _misshaped_backbone_and_missing,
            [
                'shape mismatch conv3.0.bias -> backbone.conv3.0.bias: '
                'model (256,) vs file (255,)',
                'missing sos_head.layers.2.bias (1024,)',
                '2 problems',
            ],
        ),
        (
            _sa_four_heads,
            [
                'shape mismatch sa.fc_q.weight -> sa.fc_q.weight: model '
                '(4096, 512) vs file (2048, 512)',
                "the file's SA has 4 heads",
            ],
        ),
        (
            _duplicate_alias,
            [
                'duplicate cls_head.layers.4.bias: from cls.4.bias and '
                'cls_fc8.bias'
            ],
        ),
        (_no_cls, ['no cls head', 'cls.4.weight']),
        (_linear_cls, ['4-D 1x1 conv', f'({CLASSES}, 1024)']),
        (_torchvision_file, ['no WSOL-SST backbone', 'torchvision ImageNet']),
        (_both_backbones, ['mixes VGG16', 'InceptionV3']),
    ],
    ids=[
        'unknown',
        'misshaped-head',
        'misshaped-missing',
        'sa-heads',
        'duplicate-alias',
        'no-cls',
        'linear-cls',
        'torchvision-file',
        'two-backbones',
    ],
)
def test_errors_in_memory(vgg_full, fn, messages):
    with pytest.raises(ConversionError) as info:
        convert(_edited(vgg_full, fn), name='bad.pth.tar')
    for message in messages:
        assert message in str(info.value), (message, str(info.value))


@pytest.mark.parametrize(
    ('ckpt', 'messages'),
    [
        ([torch.ones(2)], ['not a checkpoint dict', 'list']),
        ({'epoch': 1, 'arch': 'vgg_sst'}, ['no tensors']),
        (
            {'state_dict': {'module.unknown.weight': torch.zeros(2)}},
            ['no WSOL-SST backbone', 'unknown.weight'],
        ),
    ],
    ids=['not-dict', 'no-tensors', 'no-backbone'],
)
def test_cli_errors_write_nothing(tmp_path, capsys, ckpt, messages):
    src = _save(tmp_path, ckpt, 'bad.pth.tar')
    dst = tmp_path / 'out.pth'
    assert main([str(src), str(dst)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('ConversionError: '), err
    for message in messages:
        assert message in err, (message, err)
    assert not dst.exists()


def test_refuses_planted_pickle(tmp_path, capsys):
    marker = tmp_path / 'MARKER'
    ckpt = {
        'epoch': 1,
        'state_dict': {'module.conv5.0.weight': torch.zeros(2)},
        'args': PickleBomb(marker),
    }
    src, dst = tmp_path / 'evil.pth.tar', tmp_path / 'out.pth'
    torch.save(ckpt, src)
    assert main([str(src), str(dst)]) == 1
    err = capsys.readouterr().err
    assert 'UnsafeCheckpointError' in err and 'evil.pth.tar' in err
    assert 'posix.system' in err or 'nt.system' in err
    assert not marker.exists()
    assert not dst.exists()


def test_trust_source_loads_foreign_globals(tmp_path, capsys, vgg_spa):
    ckpt = _upstream_ckpt(vgg_spa)
    ckpt['args'] = argparse.Namespace(lr=1e-3)  # not in the allowlist
    src, dst = tmp_path / 'foreign.pth.tar', tmp_path / 'out.pth'
    torch.save(ckpt, src)
    assert main([str(src), str(dst)]) == 1
    err = capsys.readouterr().err
    assert 'argparse.Namespace' in err and '--trust-source' in err
    assert not dst.exists()
    assert main([str(src), str(dst), '--trust-source']) == 0
    assert list_checkpoint_globals(str(dst)) == []
    state = torch.load(dst, weights_only=True)['state_dict']
    _assert_same(state, vgg_spa)


def test_cli_help_and_missing_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(['--help'])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert 'IN' in out and '--trust-source' in out
    # The script itself, as users run it (one subprocess: ~6 s of imports).
    proc = run_tool(
        [TOOL, str(tmp_path / 'nope.pth.tar'), str(tmp_path / 'o.pth')],
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert 'FileNotFoundError' in proc.output and 'nope.pth.tar' in proc.output
