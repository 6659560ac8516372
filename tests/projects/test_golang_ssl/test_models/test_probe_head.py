"""``GAELLEMultiLabelLinearHead`` (``golang_ssl.md`` §7, §11 "Probe")."""

from __future__ import annotations

import math

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.structures import DataSample

from projects.golang_ssl.models.probe_head import (
    IGNORE_VALUE,
    GAELLEMultiLabelLinearHead,
)
from shared.evaluation.metrics.multilabel_map import MultiLabelMAP
from shared.registry import MODELS


def _sample(pos, difficult=None, idx=0) -> DataSample:
    sample = DataSample().set_gt_label(pos)
    sample.set_metainfo(dict(sample_idx=idx))
    if difficult is not None:
        sample.set_metainfo(dict(gt_label_difficult=difficult))
    return sample


def _identity_head(num_classes: int) -> GAELLEMultiLabelLinearHead:
    """logits == features exactly (identity weight, zero bias)."""
    head = GAELLEMultiLabelLinearHead(num_classes, in_channels=num_classes)
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(num_classes))
        head.fc.bias.zero_()
    return head


def _bce(s: float, t: float) -> float:
    """-t log sigmoid(s) - (1 - t) log(1 - sigmoid(s)), in float64."""
    p = 1.0 / (1.0 + math.exp(-s))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_init_statistics():
    torch.manual_seed(0)
    head = MODELS.build(
        dict(type='GAELLEMultiLabelLinearHead', num_classes=100,
             in_channels=2048)
    )  # fmt: skip
    assert isinstance(head, GAELLEMultiLabelLinearHead)
    head.init_weights()  # init_cfg=None keeps the construction-time init
    w = head.fc.weight.detach().double()
    assert w.shape == (100, 2048)
    n = w.numel()
    # mean of N(0, 0.01²) over n draws: std 0.01 / sqrt(n); 5 sigma.
    assert abs(w.mean().item()) < 5 * 0.01 / math.sqrt(n)
    # sample std: relative error about 1 / sqrt(2n); 5 sigma.
    assert abs(w.std().item() / 0.01 - 1) < 5 / math.sqrt(2 * n)
    assert torch.equal(head.fc.bias, torch.full((100,), 0.1))


def test_loss_formula_sum_over_classes_and_samples_over_batch():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]])
    samples = [_sample([0]), _sample([1, 2], idx=1)]
    target = [[1, 0, 0], [0, 1, 1]]
    head = _identity_head(3)
    loss = head.loss((logits,), samples)
    assert set(loss) == {'loss'}
    expected = (
        sum(
            _bce(logits[b, c].item(), target[b][c])
            for b in range(2)
            for c in range(3)
        )
        / 2
    )
    assert loss['loss'].item() == pytest.approx(expected, rel=1e-6)
    # Zero logits: every entry costs ln 2; sum over C, mean over B.
    zero = head.loss((torch.zeros(4, 3),), samples * 2)['loss']
    assert zero.item() == pytest.approx(3 * math.log(2), rel=1e-6)
    # Repeating the batch does not change the loss (divided by B).
    twice = head.loss((torch.cat([logits, logits]),), samples * 2)['loss']
    assert twice.item() == pytest.approx(loss['loss'].item(), rel=1e-6)


def test_ignored_entries_zero_loss_and_gradient():
    """VOC difficult-only classes: no loss, exactly zero gradient."""
    head = _identity_head(4)
    feats = torch.tensor([[3.0, -2.0, 8.0, 0.5], [-1.0, 4.0, -6.0, 2.0]],
                         requires_grad=True)  # fmt: skip
    # sample 0: class 1 positive, class 2 difficult; sample 1: class 3 is
    # positive and difficult (stays positive), class 0 difficult.
    samples = [_sample([1], [2]), _sample([3], [0, 3], idx=1)]
    loss = head.loss((feats,), samples)['loss']
    loss.backward()
    kept = {(0, 0): 0, (0, 1): 1, (0, 3): 0, (1, 1): 0, (1, 2): 0, (1, 3): 1}
    expected = sum(_bce(feats[b, c].item(), t) for (b, c), t in kept.items())
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)
    grad = feats.grad
    assert grad[0, 2].item() == 0.0 and grad[1, 0].item() == 0.0
    for (b, c), t in kept.items():
        s = feats[b, c].item()
        expected_grad = (1 / (1 + math.exp(-s)) - t) / 2
        assert grad[b, c].item() == pytest.approx(expected_grad, rel=1e-5)
    # Changing an ignored logit changes neither loss nor other gradients.
    moved = feats.detach().clone()
    moved[0, 2] = -50.0
    assert head.loss((moved,), samples)['loss'].item() == loss.item()


def test_gt_score_path_matches_gt_label_path():
    """mmpretrain one-hot targets (``gt_score``, e.g. from
    ``ClsDataPreprocessor(to_onehot=True)``) give the same loss."""
    head = _identity_head(4)
    logits = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    by_label = [_sample([1], [2]), _sample([0, 3], idx=1)]
    by_score = [
        DataSample().set_gt_score(torch.tensor([0.0, 1.0, 0.0, 0.0])),
        DataSample().set_gt_score(torch.tensor([1.0, 0.0, 0.0, 1.0])),
    ]
    # class 1 is positive and difficult: it stays positive.
    by_score[0].set_metainfo(dict(gt_label_difficult=[2, 1]))
    assert torch.equal(head.targets(by_label), head.targets(by_score))
    assert torch.equal(
        head.targets(by_score),
        torch.tensor([[0, 1, IGNORE_VALUE, 0], [1, 0, 0, 1]]),
    )
    a = head.loss((logits,), by_label)['loss']
    b = head.loss((logits,), by_score)['loss']
    assert a.item() == b.item()


def test_target_errors():
    head = GAELLEMultiLabelLinearHead(3, in_channels=5)
    feats = (torch.zeros(1, 5),)
    wide = DataSample().set_gt_score(torch.zeros(4))
    with pytest.raises(ValueError, match=r'gt_score has shape \(4,\), '
                       r'expected \(3,\)'):  # fmt: skip
        head.loss(feats, [wide])
    soft = DataSample().set_gt_score(torch.tensor([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r'got \[0.5\]'):
        head.loss(feats, [soft])
    with pytest.raises(ValueError, match=r'outside \[0, 3\)'):
        head.loss(feats, [_sample([3])])
    with pytest.raises(ValueError, match='neither gt_score nor gt_label'):
        head.loss(feats, [DataSample()])
    with pytest.raises(ValueError, match=r'\(B, 5\)'):
        head.loss((torch.zeros(1, 4),), [_sample([0])])
    with pytest.raises(ValueError, match='num_classes must be >= 1'):
        GAELLEMultiLabelLinearHead(0)
    with pytest.raises(ValueError, match='topk'):
        GAELLEMultiLabelLinearHead(3, in_channels=5, topk=4)


def test_predict_fields_and_threshold():
    head = GAELLEMultiLabelLinearHead(5, in_channels=7)
    feats = torch.randn(3, 7, generator=torch.Generator().manual_seed(2))
    logits = head(feats)
    out = head.predict((feats,))
    assert len(out) == 3
    for i, sample in enumerate(out):
        assert torch.equal(sample.pred_logit, logits[i].detach())
        assert torch.equal(sample.pred_score, torch.sigmoid(logits[i]))
        expected = torch.where(torch.sigmoid(logits[i]) >= 0.5)[0]
        assert torch.equal(sample.pred_label, expected)
    top = GAELLEMultiLabelLinearHead(5, in_channels=7, topk=2)
    top.load_state_dict(head.state_dict())
    sample = top.predict((feats,), [DataSample()])[0]
    assert set(sample.pred_label.tolist()) == set(
        logits[0].topk(2).indices.tolist()
    )


def test_logits_reach_multilabel_map_unchanged():
    """pred_logit carries the raw logits into ``MultiLabelMAP``; scoring the
    sigmoid instead changes the mAP where float32 sigmoid saturates."""
    head = _identity_head(2)
    # class 0: positives at logits 30 and 10, negatives at 20 and -5;
    # class 1: the only positive is ranked first.
    feats = torch.tensor([[30.0, 3.0], [20.0, 1.0], [10.0, 0.0],
                          [-5.0, -1.0]])  # fmt: skip
    labels = [[0, 1], [], [0], []]
    samples = [_sample(pos, idx=i) for i, pos in enumerate(labels)]
    out = head.predict((feats,), samples)
    for i, sample in enumerate(out):
        assert torch.equal(sample.pred_logit, feats[i])
        assert torch.equal(sample.pred_score, torch.sigmoid(feats[i]))

    def evaluate(score_key: str) -> float:
        evaluator = Evaluator(MultiLabelMAP(score_key=score_key))
        evaluator.dataset_meta = dict(classes=('a', 'b'))
        evaluator.process(out)
        (metric,) = evaluator.metrics
        if score_key == 'pred_logit':
            stored = torch.stack([r['scores'] for r in metric.results])
            assert torch.equal(stored, feats)
        return evaluator.evaluate(len(out))['multilabel/mAP']

    # Logits: class 0 AP = (1/1 + 2/3) / 2, class 1 AP = 1.
    assert evaluate('pred_logit') == pytest.approx(
        100 * ((1 + 2 / 3) / 2 + 1) / 2
    )
    assert evaluate('auto') == evaluate('pred_logit')
    # sigmoid(30) == sigmoid(20) == 1 in float32; the -1e-5 tie shift then
    # ranks the positive below the negative: class 0 AP = (1/2 + 2/3) / 2.
    assert evaluate('pred_score') == pytest.approx(
        100 * ((1 / 2 + 2 / 3) / 2 + 1) / 2
    )
