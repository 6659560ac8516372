"""``localization_accuracy`` against the TS-CAM / WGOL loops (§3.6, §10.6)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from shared.evaluation.wsol import localization_accuracy
from tests.reference.loc_accuracy import reference_loc_accuracy

SIZE = 48


def _dataset(seed: int, n: int = 40, num_classes: int = 10):
    """Random smooth maps; every entry of a class holds the same map."""
    rng = np.random.default_rng(seed)
    cams, labels, gts, boxes = [], [], [], []
    for _ in range(n):
        ranked = rng.permutation(num_classes)[:5]
        gt = int(rng.integers(num_classes))
        row = np.append(ranked, gt)
        maps = {}
        for c in set(row.tolist()):
            low = rng.random((6, 6)).astype(np.float32)
            m = cv2.resize(low, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            maps[c] = (m - m.min()) / (m.max() - m.min())
        cams.append(np.stack([maps[c] for c in row.tolist()]))
        labels.append(row)
        gts.append(gt)
        k = int(rng.integers(1, 4))
        xy = rng.integers(0, SIZE - 12, (k, 2))
        wh = rng.integers(4, 30, (k, 2))
        boxes.append(
            np.concatenate([xy, np.minimum(xy + wh, SIZE - 1)], axis=1)
        )
    return np.stack(cams), np.stack(labels), np.array(gts), boxes


@pytest.mark.parametrize('protocol', ['tscam', 'spa'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_parity_with_reference_loops(protocol, seed):
    cams, labels, gts, boxes = _dataset(seed)
    thresholds = [0.1, 0.2, 0.35, 0.5]
    got = localization_accuracy(
        cams, labels, gts, boxes, thresholds, protocol=protocol
    )
    for t, thr in enumerate(thresholds):
        want = reference_loc_accuracy(cams, labels, gts, boxes, thr, protocol)
        for key, value in want.items():
            assert got[key][t] == pytest.approx(value, abs=1e-12), (key, thr)
    single = localization_accuracy(
        cams, labels, gts, boxes, 0.2, protocol=protocol
    )
    assert single == {k: v[1] for k, v in got.items()}


def _rect_map(x1: int, y1: int, size: int = 40) -> np.ndarray:
    m = np.zeros((size, size), dtype=np.float32)
    m[0 : y1 + 1, 0 : x1 + 1] = 1
    return m


def test_iou_exactly_half_counts_for_tscam_gt_known_only():
    # GT [0, 0, 9, 9] (area 100); predicted [0, 0, 19, 9] (area 200):
    # IoU = 100 / 200 = 0.5 exactly. TS-CAM boxes are [x, y, x + w, y + h]
    # so its mask spans x 0..18, y 0..8; WGOL's is inclusive, x 0..19.
    gt_boxes = [np.array([[0, 0, 9, 9]])]
    labels = np.array([[3]])
    gts = np.array([3])
    tscam = localization_accuracy(
        _rect_map(18, 8)[None, None], labels, gts, gt_boxes, 0.5,
        protocol='tscam', num_topk=1,
    )  # fmt: skip
    assert tscam['gt_known_loc'] == 100.0
    assert tscam['top1_loc'] == 0.0 and tscam['top5_loc'] == 0.0
    spa = localization_accuracy(
        _rect_map(19, 9)[None, None], labels, gts, gt_boxes, 0.5,
        protocol='spa', num_topk=1,
    )  # fmt: skip
    assert spa['gt_known_loc'] == 0.0 and spa['top1_loc'] == 0.0
    # iou_threshold moves the level, never the strictness.
    spa = localization_accuracy(
        _rect_map(19, 9)[None, None], labels, gts, gt_boxes, 0.5,
        protocol='spa', num_topk=1, iou_threshold=0.49,
    )  # fmt: skip
    assert spa['gt_known_loc'] == 100.0 and spa['top1_loc'] == 100.0


def test_gt_outside_top5_and_several_gt_boxes():
    m = _rect_map(9, 9)
    cams = np.stack([m] * 6)[None]
    labels = np.array([[0, 1, 2, 3, 4, 7]])
    boxes = [np.array([[30, 30, 39, 39], [0, 0, 9, 9]])]
    out = localization_accuracy(cams, labels, np.array([7]), boxes, 0.5,
                                protocol='spa')  # fmt: skip
    assert out['top1_cls'] == out['top5_cls'] == 0.0
    assert out['top1_loc'] == out['top5_loc'] == 0.0
    assert out['gt_known_loc'] == 100.0  # the second GT box matches
    assert out['top1_cls_wrong'] == 100.0
    labels = np.array([[0, 7, 2, 3, 4, 7]])
    out = localization_accuracy(cams, labels, np.array([7]), boxes, 0.5,
                                protocol='spa')  # fmt: skip
    assert out['top5_loc'] == 100.0 and out['top1_loc'] == 0.0


@pytest.mark.parametrize(
    ('pred', 'gts', 'category'),
    [
        ((0, 0, 9, 9), [(0, 0, 9, 9)], 'top1_right'),
        # Two GT boxes each more than 30 % covered by the prediction.
        ((0, 0, 29, 9), [(0, 0, 9, 9), (20, 0, 29, 9)], 'top1_multi_instance'),
        # Prediction inside a large GT: IoB = 1.
        ((0, 0, 9, 9), [(0, 0, 29, 29)], 'top1_part'),
        # Prediction covering the GT and much more: IoG = 1, IoB < 0.5.
        ((0, 0, 29, 29), [(5, 5, 14, 14)], 'top1_more'),
        # Disjoint.
        ((0, 0, 9, 9), [(20, 20, 29, 29)], 'top1_wrong'),
    ],
)
def test_failure_breakdown_categories(pred, gts, category):
    x0, y0, x1, y1 = pred
    m = np.zeros((40, 40), dtype=np.float32)
    m[y0 : y1 + 1, x0 : x1 + 1] = 1
    out = localization_accuracy(
        m[None, None], np.array([[1]]), np.array([1]), [np.array(gts)], 0.5,
        protocol='spa', num_topk=1,
    )  # fmt: skip
    breakdown = {k: v for k, v in out.items() if k.startswith('top1_')
                 and k not in ('top1_cls', 'top1_loc')}  # fmt: skip
    assert breakdown[category] == 100.0
    assert sum(breakdown.values()) == 100.0
    want = reference_loc_accuracy(
        m[None, None], [[1]], [1], [gts], 0.5, 'spa', num_topk=1
    )
    assert want[category] == 100.0


def test_errors():
    cams = np.zeros((1, 2, 8, 8), dtype=np.float32)
    labels = np.array([[0, 1]])
    boxes = [np.array([[0, 0, 3, 3]])]
    with pytest.raises(ValueError, match='absent'):
        localization_accuracy(cams, labels, np.array([5]), boxes, 0.5,
                              num_topk=1)  # fmt: skip
    with pytest.raises(ValueError, match='num_topk'):
        localization_accuracy(cams, labels, np.array([1]), boxes, 0.5)
    with pytest.raises(ValueError, match='outside'):
        localization_accuracy(cams, labels, np.array([1]), boxes, 1.5,
                              num_topk=1)  # fmt: skip
    with pytest.raises(ValueError, match='no box'):
        localization_accuracy(cams, labels, np.array([1]),
                              [np.zeros((0, 4))], 0.5, num_topk=1)  # fmt: skip
    bad = cams.copy()
    bad[0, 1, 0, 0] = np.nan
    with pytest.raises(ValueError, match='image 0.*NaN'):
        localization_accuracy(bad, labels, np.array([1]), boxes, 0.5,
                              num_topk=1)  # fmt: skip
    with pytest.raises(ValueError, match='protocol'):
        localization_accuracy(cams, labels, np.array([1]), boxes, 0.5,
                              protocol='wsoleval', num_topk=1)  # fmt: skip
    with pytest.raises(TypeError, match='numpy'):
        localization_accuracy(torch.zeros(1, 2, 8, 8), labels, np.array([1]),
                              boxes, 0.5, num_topk=1)  # fmt: skip


def test_spa_compares_in_the_map_dtype():
    # float32(0.35) < 0.35 in float64: WGOL's float32 test v >= tau keeps
    # the plateau, a float64 comparison would lose it.
    cam = np.zeros((1, 1, 20, 20), dtype=np.float32)
    cam[0, 0, 5:10, 5:10] = np.float32(0.35)
    boxes = [np.array([[5, 5, 9, 9]])]
    labels, gts = np.array([[0]]), np.array([0])
    out = localization_accuracy(
        cam, labels, gts, boxes, [0.35], protocol='spa', num_topk=1
    )
    want = reference_loc_accuracy(cam, [[0]], [0], boxes, 0.35, 'spa', 1)
    assert out['top1_loc'] == [100.0] == [want['top1_loc']]


def test_rejects_torch_labels_and_percent_iou():
    cams = np.zeros((1, 1, 8, 8), dtype=np.float32)
    boxes = [np.array([[0, 0, 3, 3]])]
    with pytest.raises(TypeError, match='gt_labels'):
        localization_accuracy(cams, np.array([[0]]), torch.tensor([0]), boxes,
                              0.5, num_topk=1)  # fmt: skip
    with pytest.raises(ValueError, match='iou_threshold'):
        localization_accuracy(cams, np.array([[0]]), np.array([0]), boxes,
                              0.5, num_topk=1, iou_threshold=50)  # fmt: skip
