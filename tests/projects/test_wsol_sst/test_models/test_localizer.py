"""SSTLocalizer: modes, parameter counts, wiring, gates, losses, predict.

``wsol_sst.md`` §2, §3.6–3.8, §4, §6.1, §9, §11 and §12 items 1–3, 9, 12, 16.
References are built in the tests from the (separately tested) functional
core and from torch/cv2 primitives. Most tests use VGG16 at 64×64 input
(4×4 grid), small heads and a handful of classes to stay fast on a CPU.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample
from torchvision.models import vgg16

import projects.wsol_sst.models.localizer as localizer_module
from projects.wsol_sst.models.data_preprocessor import SSTDataPreprocessor
from projects.wsol_sst.models.functional import (
    edge_code,
    fuse_correlation,
    pseudo_mask,
    ra_loss,
    scg_v1,
    scg_v2,
    self_correlation,
    sparse_loss,
)
from projects.wsol_sst.models.localizer import (
    HISTORICAL_MODES,
    MODES,
    SSTLocalizer,
)
from shared.registry import MODELS
from shared.utils.state_dict import StateDictMismatchError

NUM_CLASSES = 7
MID = 32  # head width for the functional tests
SA_MODES = ('spa+sa', 'sos+sa_v1', 'sos+sa_v2', 'sos+sa_v3')
SOS_MODES = ('sos', 'sos+sa_v1', 'sos+sa_v2', 'sos+sa_v3')


def build(mode: str = 'sos+sa_v3', **kwargs) -> SSTLocalizer:
    """A small model: narrow heads, SA without dropout, seeded."""
    torch.manual_seed(0)
    cfg = dict(
        mode=mode,
        num_classes=NUM_CLASSES,
        cls_head=dict(mid_channels=MID),
        sos_head=dict(mid_channels=MID),
        sa=dict(attn_drop=0.0),
    )
    cfg.update(kwargs)
    return SSTLocalizer(**cfg)


def samples(*labels: int) -> list[DataSample]:
    return [DataSample().set_gt_label(int(y)) for y in labels]


def images(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class Capture:
    """Forward hooks recording the inputs and outputs of named submodules."""

    def __init__(self, model: SSTLocalizer, *names: str) -> None:
        self.inputs: dict[str, list] = {n: [] for n in names}
        self.outputs: dict[str, list] = {n: [] for n in names}
        self.handles = []
        for name in names:
            module = getattr(model, name)
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, args, output):
            self.inputs[name].append(args)
            self.outputs[name].append(output)

        return hook

    def calls(self, name: str) -> int:
        return len(self.outputs[name])

    def out(self, name: str):
        (value,) = self.outputs[name]
        return value

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- §12.1 build and shapes ---------------------------------------------------


@pytest.mark.parametrize('mode', MODES)
def test_shapes_per_mode_non_square(mode):
    """F4, F5, cls_map, SOS, FO/SO and every loc_maps* on a 4×5 grid."""
    model = build(mode, gates=dict(sa_start=0, ram_start=0)).eval()
    cap = Capture(model, 'backbone', 'cls_head')
    if model.with_sos:
        sos_cap = Capture(model, 'sos_head')
    out = model.predict(images(2, 2, 3, 64, 80), samples(1, 4))
    f4, f5 = cap.out('backbone')
    assert f4.shape == (4, 512, 4, 5) and f5.shape == (4, 512, 4, 5)
    assert cap.out('cls_head').shape == (4, NUM_CLASSES, 4, 5)
    if model.with_sos:
        assert sos_cap.out('sos_head').shape == (4, 1, 4, 5)
    fo, so = model._hsc(f4, f5, 0.2, 1.0)[0]
    assert fo.shape == so.shape == (4, 20, 20)
    keys = {'loc_maps', 'loc_maps_cam', 'loc_maps_scg'}
    if model.with_sos:
        keys.add('loc_maps_sos')
    for sample in out:
        assert sample.pred_score.shape == (NUM_CLASSES,)
        assert sample.loc_labels.shape == (6,)
        for key in keys:
            value = sample.get(key)
            assert value.shape == (6, 4, 5) and value.dtype == torch.float32
        assert ('loc_maps_sos' in sample.keys()) == model.with_sos


@pytest.mark.parametrize(
    'backbone, size, grid',
    [
        ('SSTVGG16', (224, 224), (14, 14)),
        ('SSTVGG16', (224, 288), (14, 18)),
        ('SSTInceptionV3', (224, 224), (28, 28)),
        ('SSTInceptionV3', (256, 256), (32, 32)),
    ],
)
def test_shapes_full_size(backbone, size, grid):
    model = build(backbone=dict(type=backbone)).eval()
    channels = 512 if backbone == 'SSTVGG16' else 768
    f4_channels = 512 if backbone == 'SSTVGG16' else 288
    cap = Capture(model, 'backbone', 'cls_head', 'sos_head')
    (out,) = model.predict(images(1, 3, *size), samples(2))
    f4, f5 = cap.out('backbone')
    assert f4.shape == (1, f4_channels, *grid)
    assert f5.shape == (1, channels, *grid)
    assert cap.out('cls_head').shape == (1, NUM_CLASSES, *grid)
    assert cap.out('sos_head').shape == (1, 1, *grid)
    n = grid[0] * grid[1]
    pairs = model._hsc(f4, f5, 0.2, 1.0)
    assert [tuple(m.shape) for pair in pairs for m in pair] == [(1, n, n)] * 4
    for key in ('loc_maps', 'loc_maps_cam', 'loc_maps_scg', 'loc_maps_sos'):
        assert out.get(key).shape == (6, *grid)


def test_registered_and_builds_from_config():
    model = MODELS.build(
        dict(
            type='SSTLocalizer',
            mode='sos',
            num_classes=3,
            data_preprocessor=dict(
                type='SSTDataPreprocessor',
                mean=[123.675, 116.28, 103.53],
                std=[58.395, 57.12, 57.375],
                to_rgb=True,
            ),
            backbone=dict(type='SSTVGG16', init_cfg=None),
            cls_head=dict(type='SSTConvHead', in_channels=512, mid_channels=8),
            sos_head=dict(type='SSTConvHead', mid_channels=8, out_channels=1),
        )
    )
    assert isinstance(model, SSTLocalizer)
    assert isinstance(model.data_preprocessor, SSTDataPreprocessor)
    assert (
        model.cls_head.out_channels == 3 and model.sos_head.out_channels == 1
    )
    assert model.current_epoch == math.inf
    assert SSTLocalizer.returns_loc_maps is True


# -- §12.2 parameter counts and modules ---------------------------------------

#: Pinned from the built models. The VGG16 rows follow upstream's
#: ``models/vgg/vgg_sst.py`` layer for layer: features[:-1] (last pool
#: dropped), cls/sos heads Cin→1024→1024→Cout, and SA with
#: d_model = d_k = d_v = C and 8 heads (SPA's unused ``conv5_add`` is not
#: built, §3.1).
PINNED_PARAMS = {
    ('SSTVGG16', 200): {
        'spa': 29_077_512,
        'spa+sa': 37_478_920,
        'sos': 43_236_361,
        'sos+sa_v1': 51_637_769,
        'sos+sa_v2': 51_637_769,
        'sos+sa_v3': 51_637_769,
    },
    ('SSTVGG16', 1000): {
        'spa': 29_897_512,
        'spa+sa': 38_298_920,
        'sos': 44_056_361,
        'sos+sa_v1': 52_457_769,
        'sos+sa_v2': 52_457_769,
        'sos+sa_v3': 52_457_769,
    },
    ('SSTInceptionV3', 200): {
        'spa': 25_687_976,
        'spa+sa': 44_581_544,
        'sos': 42_206_121,
        'sos+sa_v1': 61_099_689,
        'sos+sa_v2': 61_099_689,
        'sos+sa_v3': 61_099_689,
    },
}
MODULES = {
    'spa': {'backbone', 'cls_head'},
    'spa+sa': {'backbone', 'cls_head', 'sa'},
    'sos': {'backbone', 'cls_head', 'sos_head'},
    'sos+sa_v1': {'backbone', 'cls_head', 'sos_head', 'sa'},
    'sos+sa_v2': {'backbone', 'cls_head', 'sos_head', 'sa'},
    'sos+sa_v3': {'backbone', 'cls_head', 'sos_head', 'sa'},
}


def head_params(cin: int, cout: int, mid: int = 1024) -> int:
    return (cin * mid * 9 + mid) + (mid * mid * 9 + mid) + (mid * cout + cout)


def sa_params(c: int, heads: int = 8) -> int:
    return 3 * (c * heads * c + heads * c) + heads * c * c + c


@pytest.mark.parametrize('backbone, num_classes', list(PINNED_PARAMS))
def test_parameter_counts(backbone, num_classes):
    channels = 512 if backbone == 'SSTVGG16' else 768
    counts = {}
    with torch.device('meta'):  # structure only, no initialisation cost
        for mode in MODES:
            model = SSTLocalizer(
                mode=mode,
                num_classes=num_classes,
                backbone=dict(type=backbone),
            )
            children = {name for name, _ in model.named_children()} - {
                'data_preprocessor'
            }
            assert children == MODULES[mode], mode
            counts[mode] = n_params(model)
            if model.with_sa:
                assert n_params(model.sa) == sa_params(channels)
            assert n_params(model.cls_head) == head_params(
                channels, num_classes
            )
            if model.with_sos:
                assert n_params(model.sos_head) == head_params(channels, 1)
                # The heads differ only in their last 1×1 conv.
                assert n_params(model.cls_head) - n_params(
                    model.cls_head.layers[4]
                ) == n_params(model.sos_head) - n_params(
                    model.sos_head.layers[4]
                )
        if backbone == 'SSTVGG16':
            assert n_params(model.backbone) == n_params(vgg16().features)
    assert counts == PINNED_PARAMS[(backbone, num_classes)]
    sa_size = sa_params(channels)
    assert counts['spa+sa'] - counts['spa'] == sa_size
    for variant in ('sos+sa_v1', 'sos+sa_v2', 'sos+sa_v3'):
        assert counts[variant] - counts['sos'] == sa_size
    assert counts['sos+sa_v1'] == counts['sos+sa_v2'] == counts['sos+sa_v3']


def test_irrelevant_settings_logged_once(capsys):
    build('spa', sos_cfg=dict(loss='mse'))
    logged = capsys.readouterr().out
    lines = [ln for ln in logged.splitlines() if 'irrelevant' in ln]
    assert len(lines) == 1
    assert 'sos_head' in lines[0] and 'sos_cfg' in lines[0]
    assert "'sa'" in lines[0]


def test_channels_derived_from_backbone():
    with torch.device('meta'):
        model = SSTLocalizer(
            mode='sos+sa_v3',
            num_classes=3,
            backbone=dict(type='SSTInceptionV3'),
        )
    assert model.sa.embed_dims == 768
    assert model.cls_head.in_channels == model.sos_head.in_channels == 768


def test_default_sos_loss_per_mode():
    expected = {
        'sos': 'bce',
        'sos+sa_v1': 'mse',
        'sos+sa_v2': 'mse',
        'sos+sa_v3': 'bce',
    }
    with torch.device('meta'):
        for mode, loss in expected.items():
            assert SSTLocalizer(mode=mode).sos_cfg['loss'] == loss
            model = SSTLocalizer(mode=mode, sos_cfg=dict(loss='bce'))
            assert model.sos_cfg['loss'] == 'bce'


# -- §12.3 wiring -------------------------------------------------------------


def perturb_sa(model: SSTLocalizer) -> None:
    with torch.no_grad():
        model.sa.fc_o.bias.add_(1.0)


def train_outputs(model: SSTLocalizer, x, ds):
    """cls_map and SOS output of the training path (``loss``)."""
    cap = Capture(model, *(['cls_head', 'sos_head'][: 1 + model.with_sos]))
    model.loss(x, ds)
    cap.remove()
    sos = cap.out('sos_head') if model.with_sos else None
    return cap.out('cls_head'), sos


@pytest.mark.parametrize(
    'mode, cls_changes, sos_changes',
    [
        ('spa+sa', True, None),
        ('sos+sa_v1', True, False),
        ('sos+sa_v2', False, True),
        ('sos+sa_v3', True, True),
    ],
)
def test_wiring_perturbing_sa(mode, cls_changes, sos_changes):
    x, ds = images(2, 3, 64, 64), samples(0, 3)
    model = build(mode, gates=dict(sa_start=1, sos_start=0, ram_start=0))
    # Before sa_start SA has no influence (and is not called).
    model.current_epoch = 0
    cls_a, sos_a = train_outputs(model, x, ds)
    perturb_sa(model)
    cls_b, sos_b = train_outputs(model, x, ds)
    assert torch.equal(cls_a, cls_b)
    if sos_a is not None:
        assert torch.equal(sos_a, sos_b)
    # From sa_start on, the routing of the mode table applies.
    model.current_epoch = 1
    cls_a, sos_a = train_outputs(model, x, ds)
    perturb_sa(model)
    cls_b, sos_b = train_outputs(model, x, ds)
    assert (not torch.allclose(cls_a, cls_b)) == cls_changes
    if sos_changes is not None:
        assert (not torch.allclose(sos_a, sos_b)) == sos_changes


def test_v3_heads_share_one_sa_tensor():
    model = build('sos+sa_v3')
    cap = Capture(model, 'sa', 'cls_head', 'sos_head')
    model.loss(images(1, 3, 64, 64), samples(2))
    assert cap.calls('sa') == 1
    assert cap.inputs['cls_head'][0][0] is cap.out('sa')
    assert cap.inputs['sos_head'][0][0] is cap.out('sa')


def test_sa_always_applied_at_test_time():
    model = build('sos+sa_v3', gates=dict(sa_start=50)).eval()
    model.current_epoch = 0  # a training epoch before sa_start
    x = images(1, 2, 3, 64, 64)
    before = model.predict(x, samples(1))[0]
    perturb_sa(model)
    after = model.predict(x, samples(1))[0]
    assert not torch.allclose(before.pred_score, after.pred_score)
    assert not torch.allclose(before.loc_maps_sos, after.loc_maps_sos)


# -- §12.9 gates and §4 losses ------------------------------------------------


def count_hsc(monkeypatch) -> list:
    calls = []

    def spy(feat, fo_thr=0.2, so_thr=1.0):
        calls.append((tuple(feat.shape), fo_thr, so_thr))
        return self_correlation(feat, fo_thr, so_thr)

    monkeypatch.setattr(localizer_module, 'self_correlation', spy)
    return calls


def test_gates_switch_terms_on_at_their_epochs(monkeypatch):
    model = build(
        'sos+sa_v3',
        gates=dict(sos_start=1, sa_start=2, ram_start=3, sparse_start=4),
        sparse_cfg=dict(loss_weight=0.01),
    )
    calls = count_hsc(monkeypatch)
    x, ds = images(2, 3, 64, 64), samples(1, 5)
    expected = {
        0: {'loss_cls'},
        1: {'loss_cls', 'loss_sos', 'raw_sos'},
        2: {'loss_cls', 'loss_sos', 'raw_sos'},
        3: {'loss_cls', 'loss_sos', 'raw_sos', 'loss_ra', 'raw_ra'},
        4: {
            'loss_cls',
            *('loss_sos', 'raw_sos', 'loss_ra', 'raw_ra'),
            *('loss_sparse', 'raw_sparse'),
        },
    }
    for epoch, keys in expected.items():
        model.current_epoch = float(epoch)
        cap = Capture(model, 'sa')
        calls.clear()
        losses = model.loss(x, ds)
        cap.remove()
        assert set(losses) == keys, epoch
        assert cap.calls('sa') == (epoch >= 2), epoch
        # HSC once per forward (one call per stage), only when needed.
        assert len(calls) == (2 if epoch >= 1 else 0), epoch


def test_no_hsc_without_sa_edge_or_sos(monkeypatch):
    calls = count_hsc(monkeypatch)
    model = build('spa+sa', sa=dict(attn_drop=0.0, use_edge=False))
    model.loss(images(1, 3, 64, 64), samples(0))
    assert calls == []
    model = build('spa+sa')
    model.loss(images(1, 3, 64, 64), samples(0))
    assert len(calls) == 2  # F4 and F5, training thresholds
    assert {c[1:] for c in calls} == {(0.2, 1.0)}


@pytest.mark.parametrize('loss_type', ['bce', 'mse'])
def test_loss_values_match_formulas(loss_type):
    model = build(
        'sos+sa_v3',
        sos_cfg=dict(loss=loss_type, loss_weight=0.7),
        ra_cfg=dict(loss_weight=0.3, bg_thr=0.2, gap=0.1),
        sparse_cfg=dict(loss_weight=0.05),
        hsc_cfg=dict(edge_fo_thr=0.3, edge_so_thr=0.5),
        gates=dict(sa_start=0, sos_start=0, ram_start=0, sparse_start=0),
    )
    cap = Capture(model, 'backbone', 'cls_head', 'sos_head')
    labels = torch.tensor([2, 6])
    losses = model.loss(images(2, 3, 64, 64), samples(*labels.tolist()))
    f4, f5 = cap.out('backbone')
    cls_map = cap.out('cls_head')
    sos = cap.out('sos_head')[:, 0]
    logits = cls_map.mean(dim=(2, 3))
    torch.testing.assert_close(
        losses['loss_cls'], F.cross_entropy(logits, labels)
    )
    pairs = [self_correlation(f, 0.3, 0.5) for f in (f4, f5)]
    target = pseudo_mask(
        cls_map[torch.arange(2), labels], fuse_correlation(pairs), 0.2, 0.1
    )
    if loss_type == 'bce':
        sos_ref = F.binary_cross_entropy_with_logits(sos, target)
    else:
        sos_ref = F.mse_loss(sos, target)
    torch.testing.assert_close(losses['raw_sos'], sos_ref)
    torch.testing.assert_close(losses['loss_sos'], 0.7 * sos_ref)
    ra_ref = ra_loss(cls_map, labels, 0.2, 0.1)
    torch.testing.assert_close(losses['raw_ra'], ra_ref)
    torch.testing.assert_close(losses['loss_ra'], 0.3 * ra_ref)
    sp_ref = sparse_loss(cls_map, labels)
    torch.testing.assert_close(losses['loss_sparse'], 0.05 * sp_ref)
    for key in ('raw_sos', 'raw_ra', 'raw_sparse'):
        assert not losses[key].requires_grad and 'loss' not in key
    total = sum(v for k, v in losses.items() if k.startswith('loss'))
    total.backward()
    assert model.sa.fc_q.weight.grad is not None
    assert model.sos_head.layers[0].weight.grad.abs().sum() > 0


def test_sparse_term_off_at_zero_weight():
    model = build('spa')  # default sparse weight 0
    losses = model.loss(images(1, 3, 64, 64), samples(3))
    assert set(losses) == {'loss_cls', 'loss_ra', 'raw_ra'}
    model = build('spa', ra_cfg=dict(enable=False))
    assert set(model.loss(images(1, 3, 64, 64), samples(3))) == {'loss_cls'}
    assert model.ra_enabled is False


def test_batch_size_one_keeps_sos_batch_dim():
    model = build('sos')
    cap = Capture(model, 'sos_head')
    losses = model.loss(images(1, 3, 64, 64), samples(3))
    assert cap.out('sos_head').shape == (1, 1, 4, 4)
    assert losses['raw_sos'].dim() == 0


# -- §12.12 predict -----------------------------------------------------------


@pytest.fixture(scope='module')
def predicted():
    """sos+sa_v3 on 2 images × 11 views, with captured internals."""
    model = build('sos+sa_v3').eval()
    cap = Capture(model, 'backbone', 'cls_head', 'sos_head')
    x = images(2, 11, 3, 64, 64, seed=3)
    out = model.predict(x, samples(4, 0))
    cap.remove()
    return model, x, out, cap


def test_predict_one_backbone_forward(predicted):
    _, x, _, cap = predicted
    assert cap.calls('backbone') == 1
    assert cap.inputs['backbone'][0][0].shape == (22, 3, 64, 64)


def test_predict_scores_are_mean_softmax_of_cls_views(predicted):
    model, x, out, cap = predicted
    logits = cap.out('cls_head').mean(dim=(2, 3)).view(2, 11, -1)
    expected = logits[:, :10].softmax(dim=2).mean(dim=1)
    for i, sample in enumerate(out):
        torch.testing.assert_close(sample.pred_score, expected[i])
        assert int(sample.pred_label) == int(expected[i].argmax())
    # Tensor mode gives the per-view logits of the same network.
    torch.testing.assert_close(model(x, mode='tensor'), logits)


def test_predict_loc_labels_top5_then_gt(predicted):
    _, _, out, _ = predicted
    for sample, gt in zip(out, (4, 0)):
        order = torch.argsort(sample.pred_score, descending=True)[:5]
        assert sample.loc_labels.tolist() == order.tolist() + [gt]


def test_predict_maps(predicted):
    model, x, out, cap = predicted
    f4, f5 = cap.out('backbone')
    loc = torch.tensor([10, 21])  # the last view of each image
    cls_loc = cap.out('cls_head')[loc]
    sos_loc = cap.out('sos_head')[loc, 0]
    pairs = [self_correlation(f[loc]) for f in (f4, f5)]
    structure = fuse_correlation(pairs)
    for i, sample in enumerate(out):
        labels = sample.loc_labels
        cam = F.relu(cls_loc[i, labels])
        torch.testing.assert_close(sample.loc_maps_cam, cam)
        assert (sample.loc_maps_cam >= 0).all()
        # Not normalised: the raw ReLU values, whose maximum is not 1.
        assert not math.isclose(float(sample.loc_maps_cam.max()), 1.0)
        scg = scg_v2(cam[None], structure[i : i + 1])[0]
        torch.testing.assert_close(sample.loc_maps_scg, scg)
        sos = sample.loc_maps_sos
        assert all(torch.equal(sos[k], sos[0]) for k in range(len(labels)))
        torch.testing.assert_close(sos[0], torch.sigmoid(sos_loc[i]))
        assert torch.equal(sample.loc_maps, sample.loc_maps_sos)  # 'auto'


def test_predict_single_view_and_4d_input():
    model = build('spa').eval()
    cap = Capture(model, 'cls_head')
    x = images(2, 3, 64, 64)
    out = model.predict(x, samples(1, 2))
    logits = cap.out('cls_head').mean(dim=(2, 3))
    for i, sample in enumerate(out):
        torch.testing.assert_close(sample.pred_score, logits[i].softmax(0))
        # spa: 'auto' picks SCG, and there is no SOS field.
        assert torch.equal(sample.loc_maps, sample.loc_maps_scg)
        assert 'loc_maps_sos' not in sample.keys()
    again = model.predict(x[:, None], samples(1, 2))
    torch.testing.assert_close(again[0].loc_maps, out[0].loc_maps)


def test_predict_without_gt_and_explicit_map_choice():
    model = build('sos', test_cfg=dict(loc_map='cam')).eval()
    out = model.predict(images(1, 2, 3, 64, 64))
    assert out[0].loc_labels.shape == (5,)
    assert torch.equal(out[0].loc_maps, out[0].loc_maps_cam)


def test_predict_mse_sos_map_is_relu():
    model = build('sos+sa_v1').eval()  # MSE by default
    cap = Capture(model, 'sos_head')
    (out,) = model.predict(images(1, 1, 3, 64, 64), samples(0))
    torch.testing.assert_close(
        out.loc_maps_sos[0], F.relu(cap.out('sos_head')[0, 0])
    )


def test_predict_scg_v1_and_sources():
    model = build(
        'spa',
        test_cfg=dict(
            scg_version='v1',
            scg_source='fo',
            scg_fo_thr=0.1,
            scg_so_thr=0.5,
            scgv1_fg_thr=0.1,
            scgv1_bg_thr=0.02,
        ),
    ).eval()
    cap = Capture(model, 'backbone', 'cls_head')
    (out,) = model.predict(images(1, 1, 3, 64, 64), samples(3))
    f4, f5 = cap.out('backbone')
    pairs = [self_correlation(f, 0.1, 0.5) for f in (f4, f5)]
    cam = F.relu(cap.out('cls_head')[0, out.loc_labels])
    expected = scg_v1(cam[None], fuse_correlation(pairs, 'fo'), 0.1, 0.02)
    torch.testing.assert_close(out.loc_maps_scg, expected[0])


def test_scg_gt_resample():
    # 72×88 gives a 4×5 grid, so the resize factors (18, 17.6) are not the
    # output stride and the round trip visibly changes the map.
    x = images(1, 1, 3, 72, 88)
    default = build('spa').eval()
    resample = build('spa', test_cfg=dict(scg_gt_resample=True)).eval()
    # Shift the GT class map so that about half of it is positive (a random
    # network's map may be negative everywhere, giving an all-zero SCG).
    with torch.no_grad():
        cam = default.cls_head(default.backbone(x[:, 0])[1])[0, 5]
        for model in (default, resample):
            model.cls_head.layers[4].bias[5] -= cam.median()
    cap = Capture(default, 'backbone', 'cls_head')
    (out,) = default.predict(x, samples(5))
    labels = out.loc_labels.tolist()
    # Default: the GT entry equals the top-k entry of the same class.
    if 5 in labels[:5]:
        k = labels.index(5)
        torch.testing.assert_close(out.loc_maps_scg[-1], out.loc_maps_scg[k])
    (res,) = resample.predict(x, samples(5))
    torch.testing.assert_close(res.loc_maps_scg[:5], out.loc_maps_scg[:5])
    # Reference: cv2 INTER_LINEAR to the input size (w, h) and back.
    cam = F.relu(cap.out('cls_head')[0, 5]).numpy()
    up = cv2.resize(cam, (88, 72), interpolation=cv2.INTER_LINEAR)
    down = cv2.resize(up, (5, 4), interpolation=cv2.INTER_LINEAR)
    f4, f5 = cap.out('backbone')
    structure = fuse_correlation([self_correlation(f) for f in (f4, f5)])
    expected = scg_v2(
        torch.from_numpy(np.ascontiguousarray(down))[None, None], structure
    )
    torch.testing.assert_close(res.loc_maps_scg[-1], expected[0, 0])
    change = (res.loc_maps_scg[-1] - out.loc_maps_scg[-1]).abs().max()
    assert change > 1e-3 * out.loc_maps_scg[-1].abs().max()


def test_edge_code_uses_training_thresholds_unless_following_scg():
    x = images(1, 2, 3, 64, 64)
    test_cfg = dict(scg_fo_thr=0.95, scg_so_thr=3.0)
    outputs = []
    for cfg in (
        {},
        test_cfg,
        dict(test_cfg, edge_thr_follow_scg=True),
    ):
        model = build('sos+sa_v3', test_cfg=cfg).eval()
        cap = Capture(model, 'backbone', 'sa')
        (out,) = model.predict(x, samples(1))
        outputs.append((model, cap, out))
    (_, base_cap, base), (_, fixed_cap, fixed), (follow, cap, up) = outputs
    # Test SCG thresholds leave the network output alone (the §9 fix) ...
    assert torch.equal(fixed_cap.out('sa'), base_cap.out('sa'))
    torch.testing.assert_close(fixed.pred_score, base.pred_score)
    torch.testing.assert_close(fixed.loc_maps_sos, base.loc_maps_sos)
    assert not torch.allclose(fixed.loc_maps_scg, base.loc_maps_scg)
    # ... unless edge_thr_follow_scg reproduces upstream.
    sa_base, sa_follow = base_cap.out('sa'), cap.out('sa')
    assert (sa_follow - sa_base).abs().max() > 1e-3 * sa_base.abs().max()
    f4, f5 = cap.out('backbone')
    edge = edge_code([self_correlation(f, 0.95, 3.0) for f in (f4, f5)])
    torch.testing.assert_close(sa_follow, follow.sa(f5, edge))


# -- §12.16 bad input ---------------------------------------------------------


def test_unknown_mode_lists_modes_and_historical():
    with pytest.raises(ValueError) as info:
        SSTLocalizer(mode='mc_sos')
    message = str(info.value)
    assert all(repr(m) in message for m in MODES)
    assert all(h in message for h in HISTORICAL_MODES)
    assert 'not supported' in message


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(sa=dict(embed_dims=256)), r'sa.embed_dims=256 .*512'),
        (dict(cls_head=dict(in_channels=768)), r'cls_head.in_channels=768'),
        (dict(sos_head=dict(in_channels=256)), r'sos_head.in_channels=256'),
        (dict(cls_head=dict(out_channels=9)), r'out_channels=9.*num_classes'),
        (dict(sos_head=dict(out_channels=2)), r'sos_head.out_channels=2'),
        (dict(sa=dict(num_heads=0)), r'num_heads must be >= 1, got 0'),
        (dict(sa=dict(attn_drop=1.0)), r'attn_drop must be in \[0, 1\)'),
        (
            dict(mode='sos+sa_v2', gates=dict(sos_start=5, sa_start=3)),
            r'sos_start <= sa_start.*5.0.*3.0',
        ),
        (
            dict(sos_cfg=dict(fg_thr=0.1, bg_thr=0.1)),
            r'fg_thr > bg_thr.*0.1.*0.1',
        ),
        (dict(sos_cfg=dict(fg_thr=1.5)), r'sos_cfg.fg_thr .*\[0, 1\].*1.5'),
        (dict(hsc_cfg=dict(edge_fo_thr=-0.1)), r'edge_fo_thr.*-0.1'),
        (dict(hsc_cfg=dict(edge_so_thr=-1)), r'edge_so_thr .*>= 0.*-1'),
        (dict(test_cfg=dict(scg_so_thr=-2)), r'scg_so_thr .*>= 0'),
        (dict(test_cfg=dict(scg_fo_thr=2)), r'scg_fo_thr .*\[0, 1\]'),
        (dict(ra_cfg=dict(bg_thr=1.2)), r'ra_cfg.bg_thr .*1.2'),
        (dict(hsc_cfg=dict(stages=(3, 4))), r'stages .*subset.*\(3, 4\)'),
        (dict(hsc_cfg=dict(stages=())), r'stages .*non-empty'),
        (
            dict(sos_cfg=dict(target='raw', loss='bce')),
            r"target='raw' needs loss='mse'",
        ),
        (dict(num_classes=1), r'RA loss needs num_classes >= 2.*1'),
        (dict(sos_cfg=dict(fgthr=0.3)), r"unknown sos_cfg keys \['fgthr'\]"),
        (dict(mode='spa', test_cfg=dict(loc_map='sos')), r"loc_map='sos'"),
        (dict(test_cfg=dict(scg_version='v3')), r'scg_version .*v3'),
        (dict(sos_cfg=dict(norm='batch')), r'sos_cfg.norm'),
    ],
)
def test_configuration_errors(kwargs, match):
    with torch.device('meta'), pytest.raises(ValueError, match=match):
        SSTLocalizer(**kwargs)


def test_raw_target_with_mse_and_single_class_without_ra_build():
    with torch.device('meta'):
        SSTLocalizer(sos_cfg=dict(target='raw', loss='mse'))
        SSTLocalizer(num_classes=1, ra_cfg=dict(enable=False))


def test_per_image_norm_is_flagged(capsys):
    build('sos', sos_cfg=dict(norm='per_image'))
    assert 'deviation' in capsys.readouterr().out


def test_input_errors():
    model = build('sos+sa_v3')
    with pytest.raises(ValueError, match=r'16x16 gives a 1x1 feature grid'):
        model.loss(images(1, 3, 16, 16), samples(0))
    with pytest.raises(ValueError, match=r'one view per image, got 3'):
        model.loss(images(1, 3, 3, 64, 64), samples(0))
    bad = samples(0, NUM_CLASSES)
    bad[1].set_metainfo(dict(sample_idx=17))
    with pytest.raises(ValueError, match=r'sample_idx=17.*\[7\]'):
        model.loss(images(2, 3, 64, 64), bad)
    with pytest.raises(ValueError, match=r'one data sample per image'):
        model.loss(images(2, 3, 64, 64), samples(0))
    model.eval()
    with pytest.raises(ValueError, match=r'sample_idx=17'):
        model.predict(images(2, 1, 3, 64, 64), bad)
    packed = samples(1)
    packed[0].set_metainfo(dict(num_views=11))
    with pytest.raises(ValueError, match=r'num_views=11 .*V=2'):
        model.predict(images(1, 2, 3, 64, 64), packed)


def test_non_finite_loss_and_maps_are_named():
    model = build('sos+sa_v3', gates=dict(sa_start=0, ram_start=0))
    with torch.no_grad():
        model.sos_head.layers[4].bias.fill_(float('nan'))
    with pytest.raises(FloatingPointError, match=r"\['loss_sos', 'raw_sos'\]"):
        model.loss(images(1, 3, 64, 64), samples(0))
    model.eval()
    ds = samples(0)
    ds[0].set_metainfo(dict(sample_idx=3))
    with pytest.raises(
        FloatingPointError, match=r'loc_maps_sos of sample_idx=3'
    ):
        model.predict(images(1, 1, 3, 64, 64), ds)


# -- whole-model Pretrained (ILSVRC stage 0 -> stage 1, §5.2)
def test_stage0_checkpoint_loads_backbone_and_cls_head(tmp_path):
    stage0 = build('spa')
    with torch.no_grad():  # differ from the seeded init of `model`
        for param in stage0.parameters():
            param.add_(torch.randn_like(param))
    path = tmp_path / 'stage0.pth'
    torch.save({'state_dict': stage0.state_dict(), 'meta': {}}, path)
    model = build(
        'sos+sa_v3', init_cfg=dict(type='Pretrained', checkpoint=str(path))
    )
    fresh = {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.startswith(('sos_head.', 'sa.'))
    }
    model.init_weights()
    loaded = model.state_dict()
    for key, value in stage0.state_dict().items():
        assert torch.equal(loaded[key], value), key
    # SOS head and SA keep their construction-time init (xavier / N(0,
    # 1e-3^2)), untouched by the file.
    for key, value in fresh.items():
        assert torch.equal(loaded[key], value), key


def test_stage0_checkpoint_errors(tmp_path):
    stage0 = build('spa')
    state = dict(stage0.state_dict())
    state['cls_head.layers.4.weight'] = torch.zeros(5, 1024, 1, 1)
    del state['backbone.conv5.0.bias']
    state['foo.bar'] = torch.zeros(1)
    path = tmp_path / 'bad.pth'
    torch.save(state, path)
    model = build(
        'sos+sa_v3', init_cfg=dict(type='Pretrained', checkpoint=str(path))
    )
    with pytest.raises(StateDictMismatchError) as err:
        model.init_weights()
    text = str(err.value)
    for key in (
        'cls_head.layers.4.weight',
        'backbone.conv5.0.bias',
        'foo.bar',
    ):
        assert key in text
    missing = build(
        'sos+sa_v3',
        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'no.pth')),
    )
    with pytest.raises(FileNotFoundError, match='ilsvrc_epoch_20.pth.tar'):
        missing.init_weights()


def test_raw_target_defaults_to_mse():
    model = build('sos+sa_v3', sos_cfg=dict(target='raw'))
    assert model.sos_cfg['loss'] == 'mse'
    with pytest.raises(ValueError, match="target='raw' needs loss='mse'"):
        build('sos+sa_v3', sos_cfg=dict(target='raw', loss='bce'))
