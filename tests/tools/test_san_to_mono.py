"""tools/model_converters/san_to_mono.py: upstream SAN / fork -> plugin keys.

The upstream checkpoints are generated here from small ``nn.Module`` trees
that mirror the attribute names of hszhao/SAN ``model/san.py`` and the fork's
``model/hybrid.py`` / ``model/resnet.py`` / ``model/nl.py`` (structure only,
no forward), written from those files and the spec, not from the plugin.
"""

from __future__ import annotations

import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from torch import nn

import projects.san  # noqa: F401  (registers the SAN models)
from projects.san.models.sbir_model import SANSBIRModel
from shared.registry import MODELS
from shared.utils.checkpoint import list_checkpoint_globals
from shared.utils.compat import apply_patches
from tests.conftest import PickleBomb, load_tool, run_tool

TOOL = 'tools/model_converters/san_to_mono.py'
SAN10_CONFIG = 'configs/san/san10-pairwise_8xb32_in1k.py'

tool = load_tool(TOOL)
main = tool.main

# A small fork structure that has every stage kind: res stem; res stage
# with a projection; res + NL (R, NL, R); san + NL (S, NL, S); nl; res with
# q = n (T, NL, R); final BN.
MIXED = dict(
    layer_types=['res', 'res', 'san', 'nl', 'res'],
    layers=[1, 2, 2, 1, 1],
    widths=[32, 64, 64, 32, 64],
    added_nl_blocks=[0, 1, 1, 0, 1],
    sa_type='pairwise',
)
# SAN stem, patchwise, NL-only stage, NL,S,NL,S interleave.
MIXED_SAN_STEM = dict(
    layer_types=['san', 'nl', 'san'],
    layers=[1, 1, 2],
    widths=[32, 32, 64],
    added_nl_blocks=[0, 0, 2],
    sa_type='patchwise',
)


# ------------------------------------------------------- upstream mirrors
def _bn(c):
    return nn.BatchNorm2d(c)


def _up_sam(sa_type: str, c: int, k: int) -> nn.Module:
    """hszhao/SAN ``SAM(sa_type, c, c/16, c/4, 8, k)``."""
    r, m = c // 16, c // 4
    cw = m // 8
    sam = nn.Module()
    sam.conv1 = nn.Conv2d(c, r, 1)
    sam.conv2 = nn.Conv2d(c, r, 1)
    sam.conv3 = nn.Conv2d(c, m, 1)
    if sa_type == 'pairwise':
        sam.conv_w = nn.Sequential(
            _bn(r + 2),
            nn.ReLU(),
            nn.Conv2d(r + 2, r, 1, bias=False),
            _bn(r),
            nn.ReLU(),
            nn.Conv2d(r, cw, 1),
        )
        sam.conv_p = nn.Conv2d(2, 2, 1)
    else:
        sam.conv_w = nn.Sequential(
            _bn(r * (k * k + 1)),
            nn.ReLU(),
            nn.Conv2d(r * (k * k + 1), cw, 1, bias=False),
            _bn(cw),
            nn.ReLU(),
            nn.Conv2d(cw, k * k * cw, 1),
        )
    return sam


def _up_san_block(sa_type: str, c: int, k: int) -> nn.Module:
    block = nn.Module()
    block.bn1 = _bn(c)
    block.sam = _up_sam(sa_type, c, k)
    block.bn2 = _bn(c // 4)
    block.conv = nn.Conv2d(c // 4, c, 1)
    return block


def _up_san(sa_type: str, layers, kernels, classes: int) -> nn.Module:
    """hszhao/SAN ``SAN``: conv_in, bn_in, conv{s}, bn{s}, layer{s}, fc."""
    net = nn.Module()
    net.conv_in = nn.Conv2d(3, 64, 1, bias=False)
    net.bn_in = _bn(64)
    cin = 64
    for s, c in enumerate((64, 256, 512, 1024, 2048)):
        setattr(net, f'conv{s}', nn.Conv2d(cin, c, 1, bias=False))
        setattr(net, f'bn{s}', _bn(c))
        blocks = [
            _up_san_block(sa_type, c, kernels[s]) for _ in range(layers[s])
        ]
        setattr(net, f'layer{s}', nn.Sequential(*blocks))
        cin = c
    net.fc = nn.Linear(2048, classes)
    return net


def _up_res_block(cin: int, cout: int, stride: int = 1) -> nn.Module:
    """Fork ``resnet.Bottleneck`` (pre-activation, stride on the 3x3)."""
    w = cout // 4
    block = nn.Module()
    block.bn1 = _bn(cin)
    block.conv1 = nn.Conv2d(cin, w, 1, bias=False)
    block.bn2 = _bn(w)
    block.conv2 = nn.Conv2d(w, w, 3, stride, 1, bias=False)
    block.bn3 = _bn(w)
    block.conv3 = nn.Conv2d(w, cout, 1, bias=False)
    if stride != 1 or cin != cout:
        block.downsample = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout)
        )
    return block


def _up_nl(c: int) -> nn.Module:
    """Fork ``nl.NLBlock(c, mode='dot')`` with sub-sampling."""
    inter, gc = max(c // 8, 1), max(c // 4, 1)
    block = nn.Module()
    block.bn = _bn(c)
    block.g = nn.Sequential(nn.Conv2d(c, gc, 1), nn.MaxPool2d(2))
    block.theta = nn.Conv2d(c, inter, 1)
    block.phi = nn.Sequential(nn.Conv2d(c, inter, 1), nn.MaxPool2d(2))
    block.W_z = nn.Sequential(_bn(gc), nn.ReLU(), nn.Conv2d(gc, c, 1))
    return block


def _up_transition(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        _bn(cin),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(cin, cout, 1, bias=False),
    )


def _up_stage(i, kind, n, q, cin, cout, sa_type, last) -> nn.Sequential:
    """One entry of the fork's ``_make_backbone`` list."""
    if kind == 'nl':
        layer = [
            _up_transition(cin, cout),
            nn.Sequential(*[_up_nl(cout) for _ in range(n)]),
        ]
    elif kind == 'san':
        k = 3 if i == 0 else 7
        s = 'S'
        if q == 0:
            order = [s] * n
        elif 2 * q <= n:
            order = [s] * (n - 2 * q + 1) + ['NL', s, s] * (q - 1) + ['NL', s]
        else:
            order = [s] * (n - q) + ['NL', s] * q
        blocks = [
            _up_nl(cout) if o == 'NL' else _up_san_block(sa_type, cout, k)
            for o in order
        ]
        layer = [_up_transition(cin, cout), nn.Sequential(*blocks)]
    else:
        stride = 1 if i == 0 else 2
        if q == n:
            blocks = [_up_transition(cin, cout)]
            for _ in range(q):
                blocks += [_up_nl(cout), _up_res_block(cout, cout)]
        else:
            blocks = [_up_res_block(cin, cout, stride)]
            if q == 0:
                rest = ['R'] * (n - 1)
            elif 2 * q <= n:
                rest = ['R'] * (n - 2 * q) + ['NL', 'R', 'R'] * (q - 1)
                rest += ['NL', 'R']
            else:
                rest = ['R'] * (n - q - 1) + ['NL', 'R'] * q
            blocks += [
                _up_nl(cout) if o == 'NL' else _up_res_block(cout, cout)
                for o in rest
            ]
        layer = [nn.Sequential(*blocks)]
    if last:
        layer += [_bn(cout), nn.ReLU()]
    return nn.Sequential(*layer)


def _up_stem(kind: str) -> nn.Module:
    if kind == 'res':
        return nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1)
        )
    return nn.Conv2d(3, 64, 1, bias=False)


def _up_stages(structure: dict, indices) -> nn.Sequential:
    types, layers, widths = (
        structure['layer_types'],
        structure['layers'],
        structure['widths'],
    )
    added = structure.get('added_nl_blocks') or [0] * len(layers)
    cins = [64] + list(widths[:-1])
    last = len(layers) - 1
    return nn.Sequential(
        *[
            _up_stage(
                i,
                types[i],
                layers[i],
                added[i],
                cins[i],
                widths[i],
                structure.get('sa_type'),
                i == last,
            )
            for i in indices
        ]
    )


def _up_mixed(structure: dict, classes: int) -> nn.Module:
    """Fork ``MixedModel``: stem, backbone.{i}, fc."""
    net = nn.Module()
    net.stem = _up_stem(structure['layer_types'][0])
    net.backbone = _up_stages(structure, range(len(structure['layers'])))
    net.fc = nn.Linear(structure['widths'][-1], classes)
    return net


def _up_bimodal(structure: dict, share: int, classes: int) -> nn.Module:
    """Fork ``MixedBiModal``."""
    num = len(structure['layers'])
    net = nn.Module()
    net.sketchStem = _up_stem(structure['layer_types'][0])
    net.imageStem = _up_stem(structure['layer_types'][0])
    net.sketchBackbone = _up_stages(structure, range(num - share))
    net.imageBackbone = _up_stages(structure, range(num - share))
    net.shareBackbone = _up_stages(structure, range(num - share, num))
    net.shareFc = nn.Linear(structure['widths'][-1], 1024)
    net.bn = nn.BatchNorm1d(1024)
    net.shareFeatVecFc = nn.Linear(1024, 1024)
    net.classifier = nn.Linear(1024, classes)
    return net


def _randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics (so that eval mode uses them)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith('num_batches_tracked'):
                t.fill_(int(torch.randint(1, 1000, (), generator=gen)))
            elif name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.dim() > 1:  # conv / linear weights, fan-in scaled
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen) / fan_in**0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
    return net


def _upstream_ckpt(net: nn.Module, **extra) -> dict:
    """The upstream file: DDP keys inside {'epoch', 'state_dict', ...}."""
    sd = {f'module.{k}': v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    return dict(epoch=7, state_dict=sd, optimizer=opt.state_dict(), **extra)


def _convert(tmp_path, ckpt, arch: str, *extra: str, cli: bool = False):
    src, dst = tmp_path / 'model_best.pth', tmp_path / 'out' / 'conv.pth'
    torch.save(ckpt, src)
    args = [str(src), str(dst), '--arch', arch, *extra]
    if cli:
        proc = run_tool([TOOL, *args], check=False)
        return proc.returncode, dst, proc.output
    return main(args), dst, ''


def _same_outputs(a: nn.Module, b: nn.Module, fn) -> None:
    with torch.no_grad():
        out_a, out_b = fn(a.eval()), fn(b.eval())
    assert torch.isfinite(out_a).all()
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)


def _san10_classifier() -> nn.Module:
    model_cfg = Config.fromfile(SAN10_CONFIG).model
    return MODELS.build(model_cfg)


# ----------------------------------------------------------------- tests
def test_san10_pairwise_cli_converts_and_matches(tmp_path):
    up = _randomise(
        _up_san('pairwise', (2, 1, 2, 4, 1), (3, 7, 7, 7, 7), 1000)
    )
    ckpt = _upstream_ckpt(up, top1_val=0.749, top5_val=0.921)
    rc, dst, out = _convert(
        tmp_path, ckpt, 'san', '--verify-config', SAN10_CONFIG, cli=True
    )
    assert rc == 0, out
    assert 'model: SAN (--arch san)' in out
    assert 'loads strictly into the model of' in out
    assert list_checkpoint_globals(str(dst)) == []
    loaded = torch.load(dst, weights_only=True)
    assert set(loaded) == {'meta', 'state_dict'}
    meta = loaded['meta']
    assert meta['model'] == 'SAN' and meta['sa_type'] == 'pairwise'
    assert meta['layers'] == [2, 1, 2, 4, 1] and meta['num_classes'] == 1000
    assert meta['epoch'] == 7 and meta['top1_val'] == 0.749
    assert meta['converter'] == TOOL
    assert meta['converted_from'] == 'model_best.pth'

    # Reference: the spec's prefix rule applied by hand to the upstream keys.
    ref = _san10_classifier()
    ref.load_state_dict(
        {
            ('head.' + k if k.startswith('fc.') else 'backbone.' + k): v
            for k, v in up.state_dict().items()
        },
        strict=True,
    )
    # What tools/test.py does with the file (load_from through safe_load).
    apply_patches()
    ours = _san10_classifier()
    load_checkpoint(ours, str(dst), map_location='cpu', strict=True)
    assert list(loaded['state_dict']) == list(ours.state_dict())
    x = torch.randn(2, 3, 128, 128)
    _same_outputs(ref, ours, lambda m: m(x, mode='tensor'))


def test_san_patchwise_kernels_from_shapes_and_bare_dict(tmp_path, capsys):
    kernels = (3, 5, 7, 3, 7)
    up = _randomise(_up_san('patchwise', (1, 1, 1, 1, 1), kernels, 10))
    bare = up.state_dict()  # no wrapper, no module. prefix
    rc, dst, _ = _convert(tmp_path, bare, 'san')
    assert rc == 0
    assert 'kernels: [3, 5, 7, 3, 7]' in capsys.readouterr().out
    meta = torch.load(dst, weights_only=True)['meta']
    assert meta['sa_type'] == 'patchwise' and 'epoch' not in meta
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='SAN',
                sa_type='patchwise',
                layers=(1, 1, 1, 1, 1),
                kernels=kernels,
            ),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=2048),
        )
    )
    sd = torch.load(dst, weights_only=True)['state_dict']
    model.load_state_dict(sd, strict=True)
    for key, value in up.state_dict().items():
        target = 'head.' + key if key.startswith('fc.') else 'backbone.' + key
        assert torch.equal(sd[target], value), key


def _mixed_model(structure: dict, classes: int) -> nn.Module:
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='SANMixedNet', **structure),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=classes,
                in_channels=structure['widths'][-1],
            ),
        )
    )


def _fork_to_plugin(key: str) -> str:
    """The spec's fork prefix rule, written out for the reference."""
    head, _, rest = key.partition('.')
    if head == 'fc':
        return 'head.' + key
    if head == 'stem':
        return 'backbone.' + key
    assert head == 'backbone', key
    return 'backbone.stages.' + rest


def test_mixed_converts_and_matches(tmp_path):
    for n, structure in enumerate((MIXED, MIXED_SAN_STEM)):
        up = _randomise(_up_mixed(structure, 7), seed=n)
        rc, dst, _ = _convert(tmp_path, _upstream_ckpt(up), 'mixed')
        assert rc == 0
        loaded = torch.load(dst, weights_only=True)
        meta = loaded['meta']
        assert meta['model'] == 'SANMixedNet' and meta['preset'] is None
        for key in ('layer_types', 'layers', 'widths', 'sa_type'):
            assert meta[key] == structure[key], key
        assert meta['added_nl_blocks'] == structure['added_nl_blocks']

        ref = _mixed_model(structure, 7)
        ref.load_state_dict(
            {_fork_to_plugin(k): v for k, v in up.state_dict().items()},
            strict=True,
        )
        ours = _mixed_model(structure, 7)
        ours.load_state_dict(loaded['state_dict'], strict=True)
        side = ref.backbone.min_input_size()  # 121 / 56
        x = torch.randn(2, 3, side, side)
        _same_outputs(ref, ours, lambda m, x=x: m(x, mode='tensor'))


def test_mixed_resnet26_preset_in_process(tmp_path, capsys):
    from projects.san.models.mixed_net import ARCH_PRESETS

    structure = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in ARCH_PRESETS['resnet26'].items()
    }
    up = _randomise(_up_mixed(structure, 250))
    rc, dst, _ = _convert(tmp_path, _upstream_ckpt(up), 'mixed')
    assert rc == 0
    assert 'preset: resnet26' in capsys.readouterr().out
    sd = torch.load(dst, weights_only=True)['state_dict']
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='SANMixedNet', arch='resnet26'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=250, in_channels=2048),
        )
    )
    model.load_state_dict(sd, strict=True)
    for key, value in up.state_dict().items():
        assert torch.equal(sd[_fork_to_plugin(key)], value), key


def test_sbir_converts_and_matches(tmp_path):
    share = 2
    up = _randomise(_up_bimodal(MIXED, share, 5))
    rc, dst, out = _convert(
        tmp_path, _upstream_ckpt(up, mAP_val=0.5), 'sbir', cli=True
    )
    assert rc == 0, out
    loaded = torch.load(dst, weights_only=True)
    meta = loaded['meta']
    assert meta['model'] == 'SANSBIRModel' and meta['share'] == share
    assert meta['num_classes'] == 5 and meta['embed_dims'] == 1024
    assert meta['mAP_val'] == 0.5

    def build():
        return SANSBIRModel(share=share, num_classes=5, **MIXED)

    ref = build()
    ref.load_state_dict(up.state_dict(), strict=True)  # identity mapping
    ours = build()
    ours.load_state_dict(loaded['state_dict'], strict=True)
    x = torch.randn(2, 3, 128, 128)  # MIXED needs >= 121
    for modality in ('sketch', 'photo'):

        def run(m, modality=modality):
            return m.classifier(m.extract_feat(x, modality))

        _same_outputs(ref, ours, run)


def test_torchvision_layout_resnet26_to_san_resnet(tmp_path):
    from torchvision.models.resnet import Bottleneck, ResNet

    up = _randomise(ResNet(Bottleneck, [1, 2, 4, 1], num_classes=6))
    rc, dst, _ = _convert(tmp_path, _upstream_ckpt(up), 'san')
    assert rc == 0
    loaded = torch.load(dst, weights_only=True)
    assert loaded['meta']['model'] == 'SANResNet'
    assert loaded['meta']['depth'] == 26
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='SANResNet', depth=26),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=6, in_channels=2048),
        )
    )
    model.load_state_dict(loaded['state_dict'], strict=True)
    x = torch.randn(2, 3, 64, 64)
    _same_outputs(
        up, model, lambda m: m(x) if m is up else m(x, mode='tensor')
    )


def test_planted_pickle_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    ckpt = _upstream_ckpt(_up_mixed(MIXED_SAN_STEM, 3))
    ckpt['args'] = PickleBomb(marker)
    rc, dst, out = _convert(tmp_path, ckpt, 'mixed', cli=True)
    assert rc == 1
    assert 'UnsafeCheckpointError' in out
    assert not marker.exists()
    assert not dst.exists()


def test_unknown_keys_named_and_nothing_written(tmp_path, capsys):
    ckpt = _upstream_ckpt(_up_mixed(MIXED_SAN_STEM, 3))
    ckpt['state_dict']['module.extra.weight'] = torch.zeros(3)
    ckpt['state_dict']['module.backbone.1.1.0.gamma'] = torch.zeros(4)
    rc, dst, _ = _convert(tmp_path, ckpt, 'mixed')
    err = capsys.readouterr().err
    assert rc == 1 and not dst.exists()
    assert 'ConversionError' in err
    assert 'unknown extra.weight (3,)' in err
    assert 'unknown backbone.1.1.0.gamma (4,)' in err


def test_missing_and_misshaped_keys_listed(tmp_path, capsys):
    ckpt = _upstream_ckpt(_up_mixed(MIXED, 3))
    sd = ckpt['state_dict']
    del sd['module.backbone.2.1.0.sam.conv_p.weight']
    sd['module.fc.bias'] = torch.zeros(4)
    rc, dst, _ = _convert(tmp_path, ckpt, 'mixed')
    err = capsys.readouterr().err
    assert rc == 1 and not dst.exists()
    assert (
        'missing backbone.stages.2.1.0.sam.conv_p.weight (2, 2, 1, 1)' in err
    )
    assert (
        'shape mismatch fc.bias -> head.fc.bias: model (3,) vs file (4,)'
        in (err)
    )


def test_wrong_arch_names_keys_and_layout(tmp_path, capsys):
    up = _up_san('pairwise', (1, 1, 1, 1, 1), (3, 7, 7, 7, 7), 4)
    rc, dst, _ = _convert(tmp_path, _upstream_ckpt(up), 'mixed')
    err = capsys.readouterr().err
    assert rc == 1 and not dst.exists()
    assert 'unknown conv_in.weight (64, 3, 1, 1)' in err
    assert 'look like an --arch san checkpoint' in err

    fork = _up_mixed(MIXED_SAN_STEM, 3)
    rc, dst, _ = _convert(tmp_path, _upstream_ckpt(fork), 'sbir')
    err = capsys.readouterr().err
    assert rc == 1 and not dst.exists()
    assert 'unknown stem.weight (64, 3, 1, 1)' in err
    assert 'look like an --arch mixed checkpoint' in err

    rc, dst, _ = _convert(tmp_path, _upstream_ckpt(fork), 'san')
    err = capsys.readouterr().err
    assert rc == 1 and not dst.exists()
    assert 'neither a SAN (conv_in.weight) nor a ResNet' in err
    assert 'look like an --arch mixed checkpoint' in err


def test_verify_config_mismatch_refuses(tmp_path, capsys):
    up = _up_san('pairwise', (1, 1, 1, 1, 1), (3, 7, 7, 7, 7), 1000)
    rc, dst, _ = _convert(
        tmp_path,
        _upstream_ckpt(up),
        'san',
        '--verify-config',
        SAN10_CONFIG,
    )
    err = capsys.readouterr().err
    assert rc == 1 and not dst.exists()
    assert f'does not fit the model of {SAN10_CONFIG}' in err
    assert 'missing backbone.layer0.1.bn1.weight (64,)' in err


def test_bad_arch_choice_exits(tmp_path):
    proc = run_tool(
        [
            TOOL,
            str(tmp_path / 'a.pth'),
            str(tmp_path / 'b.pth'),
            '--arch',
            'x',
        ],
        check=False,
    )
    assert proc.returncode == 2
    assert "invalid choice: 'x'" in proc.output
