"""TSCAMHead: the 3×3 conv, GAP logits, coupling and the predict contract.

``tscam.md`` §2, §3.2–3.4, §9 and §10 items 2, 3, 8 and 12. The head is
tested alone on random feature maps; the classifier tests run it behind a
real backbone.
"""

from __future__ import annotations

import math

import pytest
import torch
from mmpretrain.structures import DataSample
from torch import nn

from projects.tscam.models import TSCAMHead

from .tscam_helpers import samples

D, C, GRID = 32, 9, 5


@pytest.fixture
def head() -> TSCAMHead:
    torch.manual_seed(0)
    return TSCAMHead(num_classes=C, in_channels=D).eval()


def random_feats(batch: int = 3, seed: int = 1) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    feat_map = torch.randn(batch, D, GRID, GRID, generator=gen)
    m_star = torch.rand(batch, GRID, GRID, generator=gen) + 0.05
    return feat_map, m_star


def test_exactly_one_3x3_conv_with_bias(head):
    assert list(head.state_dict()) == ['conv.weight', 'conv.bias']
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [head.conv]
    conv = head.conv
    assert conv.in_channels == D and conv.out_channels == C
    assert conv.kernel_size == (3, 3)
    assert conv.stride == (1, 1) and conv.padding == (1, 1)
    assert conv.bias is not None and conv.bias.shape == (C,)
    assert not any(
        isinstance(m, (nn.BatchNorm2d, nn.ReLU, nn.Linear))
        for m in head.modules()
    )


def test_default_conv_init_statistics():
    """PyTorch's default Conv2d init: U(±1/√(9D)), std 1/√(27D)."""
    torch.manual_seed(0)
    width, classes = 384, 200
    conv = TSCAMHead(num_classes=classes, in_channels=width).conv
    bound = 1 / math.sqrt(9 * width)
    weight = conv.weight.detach()
    assert weight.abs().max() <= bound
    assert conv.bias.detach().abs().max() <= bound
    # Uniform std b/√3; with n = 691,200 samples the relative sampling
    # error of the empirical std is ½·√(0.8/n) ≈ 0.05%, so 1% is ample,
    # and a trunc-normal 0.02 re-init (std 0.02 vs 0.0029) is far outside.
    expected_std = 1 / math.sqrt(27 * width)
    assert weight.std().item() == pytest.approx(expected_std, rel=0.01)
    assert weight.mean().abs().item() < 0.01 * expected_std
    # Close to the bounds: uniform, not a bell.
    assert weight.abs().max() > 0.99 * bound


def test_logits_are_the_spatial_mean_of_s(head):
    feats = random_feats()
    with torch.no_grad():
        semantic = head.semantic_maps(feats)
        logits = head(feats)
    assert semantic.shape == (3, C, GRID, GRID)
    torch.testing.assert_close(
        logits, semantic.mean(dim=(2, 3)), atol=1e-6, rtol=0
    )
    # S is the conv, zero-padded, of the feature map.
    torch.testing.assert_close(
        semantic,
        nn.functional.conv2d(
            feats[0], head.conv.weight, head.conv.bias, padding=1
        ),
    )


def test_branch_logits_are_added(head):
    """A backbone's own classifier branch (feats[2]) adds to GAP(S)."""
    feat_map, m_star = random_feats()
    extra = torch.randn(3, C)
    with torch.no_grad():
        plain = head((feat_map, m_star))
        summed = head((feat_map, m_star, extra))
    torch.testing.assert_close(summed, plain + extra)


def test_loss_is_plain_mean_cross_entropy_using_only_feats0(head):
    feat_map, _ = random_feats()
    data = samples([0, 4, 8])
    losses = head.loss((feat_map, None), data)
    assert set(losses) == {'loss'}
    expected = nn.functional.cross_entropy(
        head((feat_map,)), torch.tensor([0, 4, 8])
    )
    torch.testing.assert_close(losses['loss'], expected)


def test_predict_coupled_maps(head):
    feats = random_feats()
    data = samples([2, 7, 2])
    out = head.predict(feats, data)
    with torch.no_grad():
        semantic = head.semantic_maps(feats)
        logits = head(feats)
    coupled = head.couple(feats[1], semantic)  # M = m* ⊙ S, all classes
    torch.testing.assert_close(coupled, feats[1][:, None] * semantic)
    for i, sample in enumerate(out):
        ranked = torch.argsort(logits[i], descending=True)[:5]
        expected_labels = torch.cat([ranked, torch.tensor([data[i].gt_label])])
        assert torch.equal(sample.loc_labels, expected_labels)
        torch.testing.assert_close(
            sample.loc_maps, coupled[i, expected_labels]
        )
        torch.testing.assert_close(
            sample.pred_score, logits[i].softmax(dim=0), atol=1e-6, rtol=0
        )
        assert sample.pred_label.item() == ranked[0].item()
        # M_a·S_b == M_b·S_a element-wise, for every pair of listed maps.
        maps = sample.loc_maps
        sem = semantic[i, expected_labels]
        torch.testing.assert_close(
            maps[:, None] * sem[None], maps[None] * sem[:, None]
        )


def test_predict_keeps_negative_values(head):
    """No ReLU, clamp or scaling: the raw coupled map goes out."""
    feats = random_feats()
    out = head.predict(feats)
    maps = torch.stack([s.loc_maps for s in out])
    assert (maps < 0).any() and (maps > 0).any()
    assert all(s.loc_maps.shape == (5, GRID, GRID) for s in out)


def test_loc_map_options():
    torch.manual_seed(0)
    coupled, attention, semantic = (
        TSCAMHead(num_classes=C, in_channels=D, loc_map=kind).eval()
        for kind in ('coupled', 'attention', 'semantic')
    )
    attention.load_state_dict(coupled.state_dict())
    semantic.load_state_dict(coupled.state_dict())
    feats = random_feats()
    with torch.no_grad():
        s_maps = coupled.semantic_maps(feats)
    for i, (c, a, s) in enumerate(
        zip(
            coupled.predict(feats),
            attention.predict(feats),
            semantic.predict(feats),
        )
    ):
        labels = c.loc_labels
        assert torch.equal(labels, a.loc_labels)
        assert torch.equal(labels, s.loc_labels)
        torch.testing.assert_close(s.loc_maps, s_maps[i, labels])
        torch.testing.assert_close(
            a.loc_maps, feats[1][i].expand(len(labels), GRID, GRID)
        )
        torch.testing.assert_close(c.loc_maps, a.loc_maps * s.loc_maps)


def test_five_classes_at_most_then_gt():
    """C < 5 lists min(5, C) ranked classes; duplicates with GT allowed."""
    torch.manual_seed(0)
    head = TSCAMHead(num_classes=3, in_channels=D).eval()
    feats = random_feats(batch=2)
    data = [
        DataSample().set_gt_label(1),
        DataSample().set_gt_label(torch.tensor([0, 2])),
    ]
    out = head.predict(feats, data)
    assert out[0].loc_labels.shape == (4,) and out[0].loc_labels[-1] == 1
    assert out[1].loc_labels.shape == (5,)
    assert out[1].loc_labels[-2:].tolist() == [0, 2]
    assert sorted(out[0].loc_labels[:3].tolist()) == [0, 1, 2]


# -- bad input (§9) ---------------------------------------------------------
def test_predict_without_attention_points_at_the_classifier(head):
    feat_map, _ = random_feats()
    for feats in ((feat_map,), (feat_map, None)):
        with pytest.raises(RuntimeError, match=r'TSCAMClassifier\.predict'):
            head.predict(feats)


@pytest.mark.parametrize('num_classes', [0, -3])
def test_num_classes_must_be_positive(num_classes):
    with pytest.raises(
        ValueError, match=f'num_classes must be >= 1, got {num_classes}'
    ):
        TSCAMHead(num_classes=num_classes, in_channels=D)


def test_in_channels_and_loc_map_are_checked():
    with pytest.raises(ValueError, match='in_channels must be >= 1'):
        TSCAMHead(num_classes=C, in_channels=0)
    with pytest.raises(ValueError, match="'relu'"):
        TSCAMHead(num_classes=C, in_channels=D, loc_map='relu')


def test_feature_width_mismatch(head):
    with pytest.raises(
        ValueError, match=rf'\(B, {D}, h, w\).*\(2, 16, 5, 5\)'
    ):
        head((torch.zeros(2, 16, GRID, GRID),))


@pytest.mark.parametrize('mode', ['loss', 'predict'])
@pytest.mark.parametrize('label', [C, -1])
def test_out_of_range_gt_label_names_the_sample(head, mode, label):
    feats = random_feats()
    data = samples([0, label, 1], start=40)
    with pytest.raises(ValueError) as err:
        getattr(head, mode)(feats, data)
    message = str(err.value)
    assert 'sample_idx=41' in message and f'[{label}]' in message
    assert f'[0, {C})' in message
    assert 'sample_idx=40' not in message


def test_nan_in_logits_names_the_samples(head):
    feats = random_feats()
    feats[0][2, 0, 0, 0] = float('nan')  # poisons sample 2's S and logits
    with pytest.raises(FloatingPointError) as err:
        head.predict(feats, samples([0, 1, 2], start=10))
    assert 'logits' in str(err.value)
    assert 'sample_idx=12' in str(err.value)
    assert 'sample_idx=10' not in str(err.value)


def test_inf_in_attention_maps_names_the_samples(head):
    feat_map, m_star = random_feats()
    m_star[1, 2, 2] = float('inf')
    with pytest.raises(FloatingPointError) as err:
        head.predict((feat_map, m_star), samples([0, 1, 2], start=5))
    assert 'localization maps' in str(err.value)
    assert 'sample_idx=6' in str(err.value)
    assert 'sample_idx=5' not in str(err.value)
