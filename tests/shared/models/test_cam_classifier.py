"""CAMClassifier: the CAM identity, the §2.1 output contract, training."""

from __future__ import annotations

import copy

import pytest
import torch
from mmpretrain.structures import DataSample

from shared.models import CAMClassifier
from shared.registry import MODELS


def micro_cfg(num_classes: int = 4, strides=(1, 2, 2, 2)) -> dict:
    """The micro ResNet-18 of configs/_base_/models/resnet18-micro.py."""
    return dict(
        type='CAMClassifier',
        backbone=dict(
            type='ResNet',
            depth=18,
            stem_channels=8,
            base_channels=8,
            num_stages=4,
            out_indices=(3,),
            strides=strides,
            style='pytorch',
        ),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=num_classes,
            in_channels=64,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
            topk=(1,),
        ),
        data_preprocessor=dict(
            num_classes=num_classes,
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True,
        ),
    )


def build(num_classes: int = 4, **kwargs) -> CAMClassifier:
    torch.manual_seed(0)
    model = MODELS.build(micro_cfg(num_classes, **kwargs))
    model.init_weights()
    # Non-zero bias so that the identity test sees it.
    with torch.no_grad():
        model.head.fc.bias.copy_(torch.linspace(-0.5, 0.5, num_classes))
    return model.eval()


def samples(labels) -> list[DataSample]:
    return [DataSample().set_gt_label(int(k)) for k in labels]


def test_builds_from_a_config_dict_through_the_registry():
    model = MODELS.build(micro_cfg())
    assert type(model) is CAMClassifier
    assert CAMClassifier.returns_loc_maps is True
    assert model.num_classes == 4
    # The CAMs reuse the head: same parameters as the plain classifier.
    plain = MODELS.build({**micro_cfg(), 'type': 'ImageClassifier'})
    assert model.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize(
    ('num_classes', 'strides', 'size', 'native'),
    [
        (4, (1, 2, 2, 2), 64, 2),
        (10, (1, 2, 1, 1), 64, 8),
        (3, (1, 2, 2, 2), 96, 3),
    ],
)
def test_cam_identity_and_shapes(num_classes, strides, size, native):
    model = build(num_classes, strides=strides)
    x = torch.randn(3, 3, size, size)
    gt = [0, num_classes - 1, 1]
    with torch.no_grad():
        logits = model(x, mode='tensor')
        out = model(x, samples(gt), mode='predict')
    topk = min(5, num_classes)
    bias = model.head.fc.bias.detach()
    for i, sample in enumerate(out):
        maps, labels = sample.loc_maps, sample.loc_labels
        assert maps.dtype == torch.float32
        assert labels.dtype == torch.int64
        assert maps.shape == (topk + 1, native, native)
        assert labels.shape == (topk + 1,)
        # mean_{h,w} CAM_k + b_k == logit_k for every listed class k.
        recon = maps.mean(dim=(1, 2)) + bias[labels]
        torch.testing.assert_close(
            recon, logits[i, labels], rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(sample.pred_score, logits[i].softmax(0))
        assert sample.pred_score.shape == (num_classes,)


def test_all_class_maps_equal_the_weighted_feature_map():
    model = build(6)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fmap = model.extract_feat(x, stage='backbone')[-1]
        out = model(x, mode='predict')
    weight = model.head.fc.weight.detach()
    for i, sample in enumerate(out):
        expected = torch.einsum(
            'kd,dhw->khw', weight[sample.loc_labels], fmap[i]
        )
        torch.testing.assert_close(sample.loc_maps, expected)


def test_label_order_ranked_predictions_then_gt():
    model = build(10)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        logits = model(x, mode='tensor')
        out = model(x, samples([9, 9, 0, 3]), mode='predict')
    for i, sample in enumerate(out):
        ranked = torch.argsort(logits[i], descending=True)[:5]
        assert sample.loc_labels[:5].tolist() == ranked.tolist()
        assert sample.loc_labels[5].item() == [9, 9, 0, 3][i]
        assert sample.pred_label.tolist() == [ranked[0].item()]
        # Strictly decreasing logits along the ranking.
        assert (logits[i, sample.loc_labels[:5]].diff() < 0).all()


def test_gt_inside_topk_is_duplicated_and_without_gt_only_topk():
    model = build(4)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        top1 = model(x, mode='tensor').argmax(1).item()
        dup = model(x, samples([top1]), mode='predict')[0]
        bare = model(x, mode='predict')[0]
    assert dup.loc_labels.tolist().count(top1) == 2
    first = dup.loc_labels.tolist().index(top1)
    torch.testing.assert_close(dup.loc_maps[first], dup.loc_maps[-1])
    assert bare.loc_labels.shape == (4,)
    assert 'gt_label' not in bare


def test_ties_are_ranked_by_class_index():
    model = build(8)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        out = model(torch.randn(2, 3, 64, 64), mode='predict')
    for sample in out:
        assert sample.loc_labels.tolist() == [0, 1, 2, 3, 4]
        assert sample.pred_label.tolist() == [0]
        assert torch.count_nonzero(sample.loc_maps) == 0


def test_loss_and_a_train_step_reduce_the_loss():
    model = build(4)
    model.train()
    torch.manual_seed(1)
    # Class k: a bright square in quadrant k, so the task is learnable.
    images, labels = [], []
    for k in range(4):
        for _ in range(4):
            img = torch.rand(3, 64, 64) * 60
            y0, x0 = 32 * (k // 2), 32 * (k % 2)
            img[:, y0 : y0 + 32, x0 : x0 + 32] += 180
            images.append(img)
            labels.append(k)
    data = model.data_preprocessor(
        dict(inputs=images, data_samples=samples(labels)), training=True
    )
    optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = copy.deepcopy(model.head.fc.weight.detach())
    losses = []
    for _ in range(15):
        loss = model(**data, mode='loss')['loss']
        assert torch.isfinite(loss)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert not torch.equal(before, model.head.fc.weight)


@pytest.mark.parametrize(
    ('key', 'value', 'message'),
    [
        ('neck', None, 'GlobalAveragePooling'),
        (
            'neck',
            dict(type='GlobalAveragePooling', dim=1),
            'GlobalAveragePooling',
        ),
        (
            'head',
            dict(
                type='StackedLinearClsHead',
                num_classes=4,
                in_channels=64,
                mid_channels=[16],
            ),
            'LinearClsHead',
        ),
    ],
)
def test_rejects_heads_and_necks_without_a_cam(key, value, message):
    cfg = micro_cfg()
    cfg[key] = value
    with pytest.raises((TypeError, ValueError), match=message):
        MODELS.build(cfg)
