"""``SANSBIRModel`` (san.md §2.5, §3.3, §6 items 14, 17-18)."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

import projects.san.models.mixed_net  # noqa: F401  (registers SANMixedNet)
from projects.san.models.mixed_net import SANMixedNet
from projects.san.models.sbir_losses import sbir_contrastive_loss
from projects.san.models.sbir_model import SANSBIRModel
from shared.registry import MODELS
from shared.utils.checkpoint import UnsafeCheckpointError

TINY = dict(
    layers=(1, 1, 1, 1),
    layer_types=('res',) * 4,
    widths=(32, 64, 64, 128),
)
K = 5  # classes of the tiny models


def _tiny(**kw):
    kw = {**TINY, 'num_classes': K, 'embed_dims': 16, **kw}
    return SANSBIRModel(**kw)


def _images(n, seed, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def _samples(labels, photo_labels, neg_labels=None):
    out = []
    for i, (y, yp) in enumerate(zip(labels, photo_labels)):
        s = DataSample().set_gt_label(y)
        s.set_metainfo(dict(photo_label=yp))
        if neg_labels is not None:
            s.set_metainfo(dict(neg_label=neg_labels[i]))
        out.append(s)
    return out


# ------------------------------------------------------------------ structure


def test_fork_keys_resnet26_share2():
    """Keys/shapes of the fork's MixedBiModal(resnet26, share=2), listed by
    hand from model/hybrid.py: stages 0-1 per branch, stages 2-3 as
    shareBackbone.0-1 (local index), the last one ending with BN, ReLU."""
    sd = SANSBIRModel('resnet26', share=2).state_dict()
    expected = {
        'sketchStem.0.weight': (64, 3, 7, 7),
        'imageStem.0.weight': (64, 3, 7, 7),
        'sketchBackbone.0.0.0.conv1.weight': (64, 64, 1, 1),
        'sketchBackbone.0.0.0.downsample.0.weight': (256, 64, 1, 1),
        'sketchBackbone.0.0.0.downsample.1.running_var': (256,),
        'imageBackbone.1.0.1.conv3.weight': (512, 128, 1, 1),
        'imageBackbone.1.0.0.conv2.weight': (128, 128, 3, 3),
        'shareBackbone.0.0.0.bn1.weight': (512,),
        'shareBackbone.0.0.0.conv2.weight': (256, 256, 3, 3),
        'shareBackbone.0.0.3.conv1.weight': (256, 1024, 1, 1),
        'shareBackbone.1.0.0.downsample.0.weight': (2048, 1024, 1, 1),
        'shareBackbone.1.1.weight': (2048,),
        'shareBackbone.1.1.running_mean': (2048,),
        'shareFc.weight': (1024, 2048),
        'shareFc.bias': (1024,),
        'bn.weight': (1024,),
        'bn.num_batches_tracked': (),
        'shareFeatVecFc.weight': (1024, 1024),
        'classifier.weight': (250, 1024),
        'classifier.bias': (250,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert {k.split('.')[0] for k in sd} == {
        'sketchStem',
        'imageStem',
        'sketchBackbone',
        'imageBackbone',
        'shareBackbone',
        'shareFc',
        'bn',
        'shareFeatVecFc',
        'classifier',
    }
    for branch in ('sketchBackbone', 'imageBackbone', 'shareBackbone'):
        assert {k.split('.')[1] for k in sd if k.startswith(branch)} == {
            '0',
            '1',
        }
    assert not any(k.startswith('sketchBackbone.1.1') for k in sd)
    # Count of the fork's MixedBiModal(resnet26, 250 classes, share=2)
    # state_dict, checked once against the fork's code.
    assert len(sd) == 252


def test_fork_state_dict_loads_strictly_after_stripping_module():
    model = _tiny(share=2)
    fork = {
        f'module.{k}': v.clone() + 1 for k, v in model.state_dict().items()
    }
    stripped = {k[len('module.') :]: v for k, v in fork.items()}
    other = _tiny(share=2)
    other.load_state_dict(stripped, strict=True)
    torch.testing.assert_close(other.shareFc.weight, model.shareFc.weight + 1)


def test_shared_stages_keep_global_index_rules():
    model = _tiny(share=2)
    ref = SANMixedNet(**TINY)
    # shareBackbone.0 is global stage 2: strided first block (stage 0 is
    # the only unstrided res stage), input width widths[1].
    block = model.shareBackbone[0][0][0]
    assert block.conv2.stride == (2, 2)
    assert block.conv1.in_channels == 64
    assert model.sketchBackbone[0][0][0].conv2.stride == (1, 1)
    for k in range(2):
        assert [
            (n, tuple(p.shape))
            for n, p in model.shareBackbone[k].named_parameters()
        ] == [
            (n, tuple(p.shape))
            for n, p in ref.stages[2 + k].named_parameters()
        ]
    # The final BN + ReLU belongs to the last shared stage only.
    assert isinstance(model.shareBackbone[1][-2], torch.nn.BatchNorm2d)
    assert len(model.sketchBackbone) == 2


def test_share_range_and_arguments():
    for share in (0, 5):
        with pytest.raises(ValueError, match=r'share must be in \[1, 4\]'):
            _tiny(share=share)
    with pytest.raises(TypeError, match='share must be an int'):
        _tiny(share=True)
    full = _tiny(share=4)
    assert len(full.sketchBackbone) == 0 and len(full.shareBackbone) == 4
    with pytest.raises(ValueError, match='init_shared_from'):
        _tiny(init_shared_from='photo')
    with pytest.raises(ValueError, match='needs photo_checkpoint'):
        _tiny(init_shared_from='image')
    with pytest.raises(ValueError, match='total_epochs'):
        _tiny(contrastive_epochs=10, total_epochs=5)
    with pytest.raises(ValueError, match='margin must be > 0'):
        _tiny(margin=0.0)
    with pytest.raises(ValueError, match='unknown arch'):
        SANSBIRModel('resnet27')


def test_unshared_modules():
    model = _tiny(share=3)
    mods = model.unshared_modules()
    assert mods == [
        model.sketchStem,
        model.sketchBackbone,
        model.imageStem,
        model.imageBackbone,
    ]
    unshared = {id(p) for m in mods for p in m.parameters()}
    shared = {
        id(p)
        for name in (
            'shareBackbone',
            'shareFc',
            'bn',
            'shareFeatVecFc',
            'classifier',
        )
        for p in getattr(model, name).parameters()
    }
    all_params = {id(p) for p in model.parameters()}
    assert unshared.isdisjoint(shared) and unshared | shared == all_params


def test_built_from_registry_with_default_preprocessor():
    model = MODELS.build(dict(type='SANSBIRModel', **TINY, num_classes=3))
    assert type(model.data_preprocessor).__name__ == 'SANSBIRDataPreprocessor'
    assert model.classifier.out_features == 3


# --------------------------------------------------------------- checkpoints


def _classifier(seed, widths=TINY['widths']):
    torch.manual_seed(seed)
    clf = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='SANMixedNet', **{**TINY, 'widths': widths}),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=K,
                in_channels=widths[-1],
                init_cfg=None,
            ),
        )
    )
    # Distinct BN statistics so that loading them is visible.
    for m in clf.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    return clf


def _save(clf, path, drop=None, extra=None):
    sd = clf.state_dict()
    assert any(k.startswith('backbone.stages.') for k in sd)
    assert any(k.startswith('head.fc.') for k in sd)
    if drop:
        del sd[drop]
    sd.update(extra or {})
    torch.save({'meta': {'epoch': 50}, 'state_dict': sd}, path)
    return str(path)


def _assert_module_equals(module, state, prefix):
    for key, value in module.state_dict().items():
        torch.testing.assert_close(value, state[prefix + key], msg=key)


@pytest.mark.parametrize('init_shared_from', [None, 'sketch', 'image'])
def test_init_from_two_mixed_net_checkpoints(tmp_path, init_shared_from):
    sk_clf, ph_clf = _classifier(1), _classifier(2)
    sk = _save(sk_clf, tmp_path / 'sketch.pth')
    ph = _save(ph_clf, tmp_path / 'photo.pth')
    model = _tiny(
        share=2,
        sketch_checkpoint=sk,
        photo_checkpoint=ph,
        init_shared_from=init_shared_from,
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    s_sd, p_sd = sk_clf.state_dict(), ph_clf.state_dict()
    _assert_module_equals(model.sketchStem, s_sd, 'backbone.stem.')
    _assert_module_equals(model.imageStem, p_sd, 'backbone.stem.')
    for i in range(2):
        _assert_module_equals(
            model.sketchBackbone[i], s_sd, f'backbone.stages.{i}.'
        )
        _assert_module_equals(
            model.imageBackbone[i], p_sd, f'backbone.stages.{i}.'
        )
    after = model.state_dict()
    if init_shared_from is None:
        shared_src = None
    else:
        shared_src = s_sd if init_shared_from == 'sketch' else p_sd
    for k in range(2):
        if shared_src is None:
            for key, value in model.shareBackbone[k].state_dict().items():
                torch.testing.assert_close(
                    value, before[f'shareBackbone.{k}.{key}']
                )
        else:
            _assert_module_equals(
                model.shareBackbone[k],
                shared_src,
                f'backbone.stages.{2 + k}.',
            )
    # The head stays fresh (the classifiers' head.fc is not used).
    for name in ('shareFc', 'bn', 'shareFeatVecFc', 'classifier'):
        for key in getattr(model, name).state_dict():
            full = f'{name}.{key}'
            torch.testing.assert_close(after[full], before[full])


def test_init_loaded_sketch_branch_equals_the_classifier_backbone(tmp_path):
    clf = _classifier(3)
    sk = _save(clf, tmp_path / 'sketch.pth')
    model = _tiny(share=1, sketch_checkpoint=sk, init_shared_from='sketch')
    model.init_weights()
    model.eval()
    clf.eval()
    x = _images(2, 0)
    with torch.no_grad():
        feat = clf.backbone(x)[-1].mean(dim=(2, 3))
        expected = model.shareFeatVecFc(F.relu(model.bn(model.shareFc(feat))))
        torch.testing.assert_close(model.extract_feat(x, 'sketch'), expected)


def test_init_checkpoint_errors(tmp_path):
    clf = _classifier(4)
    missing = _save(
        clf,
        tmp_path / 'missing.pth',
        drop='backbone.stages.1.0.0.conv1.weight',
    )
    with pytest.raises(
        ValueError,
        match=r'missing keys.*sketchBackbone\.1\.0\.0\.conv1\.weight',
    ):
        _tiny(share=2, sketch_checkpoint=missing).init_weights()
    extra = _save(
        clf,
        tmp_path / 'extra.pth',
        extra={'backbone.stages.7.weight': torch.zeros(1)},
    )
    with pytest.raises(
        ValueError, match=r'unexpected keys.*backbone\.stages\.7\.weight'
    ):
        _tiny(share=2, photo_checkpoint=extra).init_weights()
    # A missing *shared* stage key matters only with init_shared_from.
    no_shared = _save(
        clf,
        tmp_path / 'noshared.pth',
        drop='backbone.stages.3.0.0.conv1.weight',
    )
    _tiny(share=2, sketch_checkpoint=no_shared).init_weights()
    with pytest.raises(ValueError, match='missing keys'):
        _tiny(
            share=2, sketch_checkpoint=no_shared, init_shared_from='sketch'
        ).init_weights()
    wide = _save(
        _classifier(5, widths=(32, 64, 128, 128)), tmp_path / 'wide.pth'
    )
    with pytest.raises(ValueError, match='shape mismatch'):
        _tiny(share=1, sketch_checkpoint=wide).init_weights()


def test_init_refuses_unsafe_pickles(tmp_path):
    path = tmp_path / 'evil.pth'
    sd = _classifier(6).state_dict()
    torch.save({'state_dict': sd, 'obj': pickle.PickleError()}, path)
    with pytest.raises(UnsafeCheckpointError):
        _tiny(sketch_checkpoint=str(path)).init_weights()


# ---------------------------------------------------------------------- loss


def smooth_ce(logits, labels, eps=0.1):
    """Upstream smooth_loss, written out."""
    k = logits.shape[1]
    q = torch.full_like(logits, eps / (k - 1))
    q[torch.arange(len(labels)), labels] = 1 - eps
    return -(q * logits.log_softmax(1)).sum(1).mean()


def test_phase_weights_follow_epoch():
    model = _tiny(contrastive_epochs=35, total_epochs=45)
    assert (model.phase, model.epoch) == ('contrastive', 0)
    assert model.loss_weights() == (0.0, 1.0)
    model.set_phase('contrastive', 7)
    w_m, w_c = model.loss_weights()
    assert w_m == 14.0
    assert w_c == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 35)))
    model.set_phase('triplet', 40)
    w_m, w_c = model.loss_weights()
    assert w_m == 80.0
    assert w_c == pytest.approx(0.5 * (1 + math.cos(math.pi * 40 / 45)))
    with pytest.raises(ValueError, match='phase must be one of'):
        model.set_phase('pair', 1)
    with pytest.raises(ValueError, match='epoch must be'):
        model.set_phase('triplet', -1)


def test_contrastive_loss_dict_equals_recomputation():
    torch.manual_seed(0)
    model = _tiny(contrastive_epochs=10, total_epochs=14)
    model.set_phase('contrastive', 3)
    s, p = _images(4, 1), _images(4, 2)
    ys, yp = [0, 1, 2, 3], [0, 4, 2, 1]
    losses = model([s, p], _samples(ys, yp), mode='loss')
    assert set(losses) == {
        'loss_con',
        'loss_cls_sketch',
        'loss_cls_photo',
        'w_metric',
        'w_cls',
    }
    with torch.no_grad():  # train-mode BN: batch statistics again
        fs, fp = (
            model.extract_feat(s, 'sketch'),
            model.extract_feat(p, 'photo'),
        )
        ys_t, yp_t = torch.tensor(ys), torch.tensor(yp)
        c = 0.5 * (1 + math.cos(math.pi * 3 / 10))
        expected = {
            'loss_con': 6.0
            * sbir_contrastive_loss(
                F.normalize(fs), F.normalize(fp), ys_t, yp_t, 0.7
            ),
            'loss_cls_sketch': c * 0.5 * smooth_ce(model.classifier(fs), ys_t),
            'loss_cls_photo': c * 0.5 * smooth_ce(model.classifier(fp), yp_t),
        }
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value.item(), rel=1e-5), key
    assert losses['w_metric'].item() == 6.0
    assert losses['w_cls'].item() == pytest.approx(c)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert model.sketchStem[0].weight.grad is not None
    assert model.imageStem[0].weight.grad is not None


def test_triplet_loss_dict_equals_recomputation():
    torch.manual_seed(0)
    model = _tiny(margin=0.5, label_smooth=0.2)
    model.set_phase('triplet', 40)
    s, p, n = _images(3, 3), _images(3, 4), _images(3, 5)
    ys, yn = [0, 1, 2], [3, 4, 0]
    losses = model([s, p, n], _samples(ys, ys, yn), mode='loss')
    assert set(losses) == {
        'loss_triplet',
        'loss_cls_sketch',
        'loss_cls_photo',
        'loss_cls_negative',
        'w_metric',
        'w_cls',
    }
    with torch.no_grad():
        fs = model.extract_feat(s, 'sketch')
        fp = model.extract_feat(p, 'photo')
        fn = model.extract_feat(n, 'photo')
        ys_t, yn_t = torch.tensor(ys), torch.tensor(yn)
        c = 0.5 * (1 + math.cos(math.pi * 40 / 45))
        a, pp, nn_ = F.normalize(fs), F.normalize(fp), F.normalize(fn)
        trip = torch.clamp(
            (a - pp + 1e-6).norm(dim=1) - (a - nn_ + 1e-6).norm(dim=1) + 0.5,
            min=0,
        ).mean()
        expected = {
            'loss_triplet': 80.0 * trip,
            'loss_cls_sketch': c
            * 0.5
            * smooth_ce(model.classifier(fs), ys_t, 0.2),
            'loss_cls_photo': c
            * 0.25
            * smooth_ce(model.classifier(fp), ys_t, 0.2),
            'loss_cls_negative': c
            * 0.25
            * smooth_ce(model.classifier(fn), yn_t, 0.2),
        }
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value.item(), rel=1e-5), key


def test_view_count_must_match_phase():
    model = _tiny()
    s = _images(2, 0)
    with pytest.raises(ValueError, match='contrastive phase needs 2 views'):
        model([s, s, s], _samples([0, 1], [0, 1], [1, 0]), mode='loss')
    model.set_phase('triplet', 36)
    with pytest.raises(ValueError, match='triplet phase needs 3 views'):
        model([s, s], _samples([0, 1], [0, 1]), mode='loss')
    with pytest.raises(ValueError, match="no 'neg_label'"):
        model([s, s, s], _samples([0, 1], [0, 1]), mode='loss')


# ----------------------------------------------------------- predict / tensor


def test_tensor_and_predict_modes():
    model = _tiny().eval()
    x = _images(2, 7)
    with torch.no_grad():
        sk = model.extract_feat(x, 'sketch')
        ph = model.extract_feat(x, 'photo')
        assert sk.shape == (2, 16)
        assert not torch.allclose(sk, ph)  # two branches
        views = model([x, x], mode='tensor')
        torch.testing.assert_close(views[0], sk)
        torch.testing.assert_close(views[1], ph)
        photo_samples = [DataSample(), DataSample()]
        for sample in photo_samples:
            sample.set_metainfo(dict(modality='photo'))
        torch.testing.assert_close(model(x, photo_samples, mode='tensor'), ph)
        with pytest.raises(RuntimeError, match='SANGalleryHook'):
            model(x, photo_samples, mode='predict')
        model.gallery_embeddings = torch.randn(4, 16)
        model.gallery_labels = torch.tensor([0, 1, 2, 3])
        out = model(x, photo_samples, mode='predict')
        torch.testing.assert_close(out[1].embedding, ph[1])
        assert out[0].gallery_embeddings is model.gallery_embeddings
        mixed = [DataSample(), photo_samples[0]]
        with pytest.raises(ValueError, match='one modality'):
            model(x, mixed, mode='predict')
        with pytest.raises(ValueError, match='modality must be'):
            model.extract_feat(x, 'image')
        with pytest.raises(ValueError, match='mode must be'):
            model(x, mode='feat')


def test_resnet26_preset_loss_forward():
    torch.manual_seed(0)
    model = SANSBIRModel('resnet26', share=2)
    model.set_phase('contrastive', 1)
    x = _images(2, 8)
    losses = model([x, x], _samples([0, 1], [0, 2]), mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_con'].item() > 0


def test_too_small_input_gets_the_backbone_size_error():
    model = SANSBIRModel(
        layers=(1, 1, 1),
        layer_types=('res', 'san', 'san'),
        widths=(16, 32, 64),
        sa_type='patchwise',
        num_classes=K,
        embed_dims=8,
    )
    need = model._input_checker.min_input_size()
    assert need > 8
    with pytest.raises(ValueError, match=f'at least {need} pixels'):
        model.extract_feat(_images(2, 0, size=8), 'photo')
    assert model.extract_feat(_images(2, 0, size=need)).shape == (2, 8)
