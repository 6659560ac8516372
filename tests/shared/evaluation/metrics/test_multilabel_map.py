"""``MultiLabelMAP`` (``evaluation.md`` §6, §10 item 9)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.evaluation import AveragePrecision
from mmpretrain.structures import DataSample

from shared.evaluation.metrics import MultiLabelMAP
from shared.evaluation.multilabel import mean_average_precision
from shared.registry import METRICS
from tests.reference.sspr_ap import sspr_mean_average_precision
from tests.shared.datasets.logs import captured_log

CLASSES = ('cat', 'dog', 'cow', 'bus')


def _sample(idx, logits, positives, difficult=None, logit=True):
    """An mmpretrain multi-label DataSample as a probe head returns it."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    sample = DataSample(metainfo=dict(sample_idx=idx, img_path=f'{idx}.jpg'))
    if difficult is not None:
        sample.set_metainfo(dict(gt_label_difficult=list(difficult)))
    sample.set_gt_label(list(positives))  # LongTensor of class indices
    sample.set_pred_score(torch.sigmoid(logits))
    if logit:
        sample.set_field(logits, 'pred_logit')
    return sample


def _dataset(seed=0, n=12):
    """Samples plus the (logits, sigmoid scores, targets) built by hand."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, len(CLASSES))).astype(np.float32)
    targets = np.zeros((n, len(CLASSES)), np.int64)
    samples = []
    for i in range(n):
        positives = sorted(
            rng.choice(len(CLASSES), rng.integers(0, 3), replace=False)
        )
        targets[i, positives] = 1
        difficult = None
        if i % 3 == 0:
            # A difficult class, and one that is also positive (stays 1).
            difficult = [(i // 3) % len(CLASSES)] + positives[:1]
            only = set(difficult) - set(positives)
            targets[i, sorted(only)] = -1
        samples.append(_sample(i, logits[i], positives, difficult))
    # Sample 0 is positive for every class (class 1 also difficult, which
    # keeps it positive), so no class is ignored everywhere.
    targets[0, :] = 1
    samples[0] = _sample(0, logits[0], range(len(CLASSES)), [1])
    scores = torch.sigmoid(torch.from_numpy(logits)).numpy()
    return samples, logits, scores, targets


def _evaluate(samples, batch=4, **cfg):
    evaluator = Evaluator(dict(type='MultiLabelMAP', **cfg))
    evaluator.dataset_meta = dict(classes=CLASSES)
    for start in range(0, len(samples), batch):
        evaluator.process(samples[start : start + batch])
    return evaluator.evaluate(len(samples))


def test_equals_functional_map_through_evaluator():
    samples, logits, _, targets = _dataset()
    assert (targets == -1).any() and (targets == 1).any()
    got = _evaluate(samples, per_class=True)
    expected = mean_average_precision(logits, targets)
    assert got['multilabel/mAP'] == expected
    assert expected == pytest.approx(
        sspr_mean_average_precision(logits, targets), abs=1e-10
    )
    per_class = [got[f'multilabel/AP_{name}'] for name in CLASSES]
    assert np.mean(per_class) == pytest.approx(expected, abs=1e-12)
    assert sorted(got) == sorted(
        ['multilabel/mAP'] + [f'multilabel/AP_{n}' for n in CLASSES]
    )


def test_difficult_only_classes_are_ignored():
    # Sample 1 lists class 0 as difficult only (ignored) and class 1 both as
    # positive and difficult (positive).
    logits = [[5.0, 1.0], [9.0, 2.0], [0.0, 3.0], [-1.0, -2.0]]
    samples = [
        _sample(0, logits[0], [0]),
        _sample(1, logits[1], [1], difficult=[0, 1]),
        _sample(2, logits[2], []),
        _sample(3, logits[3], [0, 1]),
    ]
    metric = MultiLabelMAP()
    metric.process(None, samples)
    stored = torch.stack([r['target'] for r in metric.results]).numpy()
    expected_targets = np.array([[1, 0], [-1, 1], [0, 0], [1, 1]])
    np.testing.assert_array_equal(stored, expected_targets)
    got = metric.evaluate(4)['multilabel/mAP']
    # Class 0 without sample 1: positives at ranks 1 and 3 -> 5/6; class 1:
    # ranks 2, 4 of (3, 2, 1, -2) -> (1/2 + 2/4) / 2.
    assert got == pytest.approx(100 * (5 / 6 + 0.5) / 2, abs=1e-12)
    assert got == mean_average_precision(np.array(logits), expected_targets)


def test_score_key_auto_prefers_logits_and_logs_once():
    # float32 sigmoid saturates: logits 30 (positive) and 20 (negative) both
    # give 1.0, a tie that halves the AP of class 0 on pred_score.
    logits = [[30.0, 1.0], [20.0, -1.0], [-3.0, 2.0]]
    positives = [[0], [1], [1]]
    samples = [_sample(i, logits[i], positives[i]) for i in range(3)]
    targets = np.array([[1, 0], [0, 1], [0, 1]])
    sigmoid = torch.sigmoid(torch.tensor(logits)).numpy()
    assert sigmoid[0, 0] == sigmoid[1, 0] == 1.0
    on_logits = mean_average_precision(np.array(logits, np.float32), targets)
    on_scores = mean_average_precision(sigmoid, targets)
    assert on_logits != on_scores

    metric = MultiLabelMAP()
    with captured_log(logging.INFO) as records:
        metric.process(None, samples[:2])
        metric.process(None, samples[2:])
    chosen = [r.getMessage() for r in records if 'score_key' in r.getMessage()]
    assert len(chosen) == 1 and "'pred_logit'" in chosen[0]
    assert metric.evaluate(3)['multilabel/mAP'] == on_logits

    without = [
        _sample(i, logits[i], positives[i], logit=False) for i in (0, 1, 2)
    ]
    metric = MultiLabelMAP()
    with captured_log(logging.INFO) as records:
        metric.process(None, without)
    assert "'pred_score'" in records[0].getMessage()
    assert metric.evaluate(3)['multilabel/mAP'] == on_scores

    metric = MultiLabelMAP(score_key='pred_score')
    metric.process(None, samples)
    assert metric.evaluate(3)['multilabel/mAP'] == on_scores
    metric = MultiLabelMAP(score_key='pred_logit')
    with pytest.raises(ValueError, match="no 'pred_logit'.*sample_idx=0"):
        metric.process(None, without)


def test_duplicates_by_sample_idx_are_dropped_and_order_is_irrelevant():
    samples, logits, _, targets = _dataset(seed=1, n=10)
    once = _evaluate(samples, report_mmpretrain=True)
    # DefaultSampler padding repeats the first samples on the last rank.
    padded = _evaluate(samples + samples[:3], report_mmpretrain=True)
    shuffled = _evaluate(samples[::-1] + samples[5:7], report_mmpretrain=True)
    assert once == padded == shuffled
    assert once['multilabel/mAP'] == mean_average_precision(logits, targets)
    metric = MultiLabelMAP()
    metric.process(None, samples + samples[:3])
    assert len(metric.results) == 13  # duplicates are removed at compute


def test_map_mmpretrain_differs_on_ties_and_agrees_without():
    # Class 0: two positives tied with a negative. scikit-learn groups them
    # (2/3); mmpretrain orders the tie by argsort, never giving 2/3.
    logits = [[0.5, 3.0], [0.5, 1.0], [0.5, 2.0], [-1.0, -1.0]]
    positives = [[0, 1], [0], [], [1]]
    samples = [_sample(i, logits[i], positives[i]) for i in range(4)]
    metric = MultiLabelMAP(report_mmpretrain=True, prefix='ml')
    metric.process(None, samples)
    got = metric.evaluate(4)
    targets = np.array([[1, 1], [1, 0], [0, 0], [0, 1]])
    scores = torch.tensor(logits)
    ap_class1 = (1 + 2 / 4) / 2
    assert got['ml/mAP'] == pytest.approx(100 * (2 / 3 + ap_class1) / 2)
    mmpretrain = AveragePrecision.calculate(scores, torch.tensor(targets))
    assert got['ml/mAP_mmpretrain'] == pytest.approx(float(mmpretrain))
    assert abs(got['ml/mAP_mmpretrain'] - got['ml/mAP']) > 1
    # Records are evaluated in sample_idx order, so even the tie-order
    # dependent mmpretrain value does not depend on the arrival order.
    metric = MultiLabelMAP(report_mmpretrain=True, prefix='ml')
    metric.process(None, samples[::-1])
    assert metric.evaluate(4) == got

    samples, logits, _, targets = _dataset(seed=2, n=15)
    got = _evaluate(samples, report_mmpretrain=True)
    assert got['multilabel/mAP_mmpretrain'] == pytest.approx(
        got['multilabel/mAP'], abs=1e-4
    )


def test_errors():
    samples, *_ = _dataset(n=4)
    metric = MultiLabelMAP()
    metric.dataset_meta = dict(classes=CLASSES[:3])
    with pytest.raises(ValueError, match='3 classes but the scores have 4'):
        metric.process(None, samples)
    metric = MultiLabelMAP()
    metric.process(None, samples[:1])
    with pytest.raises(ValueError, match='width 2 after scores of width 4'):
        metric.process(None, [_sample(9, [0.0, 1.0], [0])])
    no_idx = DataSample().set_gt_label([0]).set_pred_score([0.1, 0.2])
    with pytest.raises(ValueError, match="no 'sample_idx'"):
        MultiLabelMAP().process(None, [no_idx])
    no_label = DataSample(metainfo=dict(sample_idx=0)).set_pred_score([0.1])
    with pytest.raises(ValueError, match="no 'gt_label'"):
        MultiLabelMAP().process(None, [no_label])
    with pytest.raises(ValueError, match='score_key'):
        MultiLabelMAP(score_key='logits')
    with pytest.raises(ValueError, match='tie_shift'):
        MultiLabelMAP(tie_shift=-1.0)
    # A class whose every target is ignored cannot be scored.
    metric = MultiLabelMAP()
    metric.process(None, [_sample(0, [1.0, 2.0], [0], difficult=[1])])
    with pytest.raises(ValueError, match='no evaluated sample'):
        metric.evaluate(1)


def test_registered_and_built_from_config():
    metric = METRICS.build(dict(type='MultiLabelMAP', tie_shift=0.0))
    assert isinstance(metric, MultiLabelMAP) and metric.tie_shift == 0.0
    assert metric.prefix == 'multilabel'
