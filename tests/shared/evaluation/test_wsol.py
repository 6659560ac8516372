"""Tests of ``shared/evaluation/wsol.py`` (``evaluation.md`` §10 items 1-5).

Expected values come from the literal wsolevaluation re-statement in
``tests/reference/wsoleval.py`` and from closed forms.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from shared.evaluation import wsol
from shared.evaluation.wsol import (
    box_iou,
    cam_to_boxes,
    max_box_acc,
    normalize_cam,
    pxap,
)
from tests.reference.wsoleval import (
    reference_boxes,
    reference_iou,
    reference_max_box_acc,
    reference_pxap,
)

# ---------------------------------------------------------------------------
# map generators
# ---------------------------------------------------------------------------


def smooth_map(rng, size=64, dtype=np.float64):
    """Bicubic-upsampled 14 x 14 noise, normalised to [0, 1]."""
    noise = rng.random((14, 14))
    cam = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return normalize_cam(cam).astype(dtype)


def noisy_map(rng, size=64, dtype=np.float64):
    return rng.random((size, size)).astype(dtype)


def nested_plateaus(size=64):
    cam = np.zeros((size, size))
    cam[5:60, 4:50] = 0.2
    cam[10:40, 10:30] = 0.5
    cam[15:25, 12:20] = 0.9
    cam[30:38, 22:28] = 0.9
    cam[45:55, 52:62] = 1.0
    return cam


def rings(size=64):
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - 30, xx - 28)
    cam = np.zeros((size, size))
    cam[(r > 8) & (r < 14)] = 0.8
    cam[(r > 18) & (r < 22)] = 0.5
    cam[r < 3] = 1.0
    cam[2:6, 50:60] = 0.3
    return cam


def border_blobs(size=64):
    cam = np.zeros((size, size))
    cam[0:10, 0:12] = 1.0
    cam[size - 8 :, 20:40] = 0.7
    cam[25:35, size - 6 :] = 0.4
    cam[:, 30:32] = np.maximum(cam[:, 30:32], 0.1)
    return cam


def equal_area_blobs(size=64):
    cam = np.zeros((size, size))
    cam[40:50, 5:15] = 0.9
    cam[10:20, 40:50] = 0.9
    cam[10:20, 5:15] = 0.6
    return cam


def lines_and_squares(size=64):
    cam = np.zeros((size, size))
    cam[10, 5:40] = 1.0  # horizontal one-pixel line
    cam[20:50, 45] = 0.8  # vertical one-pixel line
    cam[30:33, 10:13] = 0.9  # small square
    cam[55, 55] = 0.7  # single pixel
    cam[40:42, 20:22] = 0.95
    return cam


def corner_blobs(size=64):
    cam = np.zeros((size, size))
    cam[10:20, 10:20] = 1.0
    cam[20:30, 20:30] = 0.9  # touches the first only at a corner
    cam[40:45, 40:45] = 0.6
    cam[45:50, 35:40] = 0.6
    return cam


def almost_full(size=64):
    cam = np.ones((size, size))
    cam[31, 31] = 0.0
    cam[5, 60] = 0.5
    return cam


STRUCTURED = {
    'nested': nested_plateaus,
    'rings': rings,
    'border': border_blobs,
    'equal_area': equal_area_blobs,
    'lines': lines_and_squares,
    'corner': corner_blobs,
    'all_zero': lambda size=64: np.zeros((size, size)),
    'almost_full': almost_full,
}

THRESHOLD_SETS = {
    'd0.01': np.arange(0, 1, 0.01),
    'd0.001': np.arange(0, 1, 0.001),
    'list': [0.0, 0.1, 0.12, 0.2, 0.5, 0.5, 0.9, 0.999, 1.0],
}


def flat_reference(cam, taus, multi, **kwargs):
    boxes, counts = reference_boxes(cam, taus, multi, **kwargs)
    return [b for per_tau in boxes for b in per_tau], counts


def assert_box_parity(cam, taus, multi, **kwargs):
    boxes, counts = cam_to_boxes(cam, taus, multi, **kwargs)
    ref_boxes, ref_counts = flat_reference(cam, taus, multi, **kwargs)
    assert boxes.dtype == np.int64 and counts.dtype == np.int64
    assert counts.tolist() == ref_counts
    assert boxes.tolist() == ref_boxes


# ---------------------------------------------------------------------------
# 1. box_iou
# ---------------------------------------------------------------------------


def random_boxes(rng, n, size=30):
    xy0 = rng.integers(0, size, (n, 2))
    wh = rng.integers(0, 10, (n, 2))
    return np.concatenate([xy0, xy0 + wh], axis=1)


def pixel_set_iou(a, b):
    grid_a = np.zeros((50, 50), bool)
    grid_b = np.zeros((50, 50), bool)
    grid_a[a[1] : a[3] + 1, a[0] : a[2] + 1] = True
    grid_b[b[1] : b[3] + 1, b[0] : b[2] + 1] = True
    return (grid_a & grid_b).sum() / (grid_a | grid_b).sum()


def test_box_iou_identity_symmetry_disjoint():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 12)
    iou = box_iou(boxes, boxes)
    assert iou.dtype == np.float64 and iou.shape == (12, 12)
    np.testing.assert_array_equal(np.diag(iou), 1.0)
    other = random_boxes(rng, 7)
    np.testing.assert_array_equal(
        box_iou(boxes, other), box_iou(other, boxes).T
    )
    assert box_iou([[0, 0, 4, 4]], [[5, 0, 9, 4]])[0, 0] == 0.0
    assert box_iou([[0, 0, 4, 4]], [[0, 5, 4, 9]])[0, 0] == 0.0


def test_box_iou_matches_pixel_sets_and_reference():
    rng = np.random.default_rng(1)
    a = random_boxes(rng, 20)
    b = random_boxes(rng, 15)
    iou = box_iou(a, b)
    expected = np.array([[pixel_set_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(iou, expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(iou, reference_iou(a, b))
    np.testing.assert_array_equal(box_iou(a.astype(float), b), iou)


def test_box_iou_exclusive_edge_prediction_below_one():
    gt = np.array([[10, 10, 19, 19]])  # inclusive: a 10 x 10 object
    cam = np.zeros((40, 40))
    cam[10:20, 10:20] = 1.0
    pred, _ = cam_to_boxes(cam, 0.5)
    np.testing.assert_array_equal(pred, [[10, 10, 20, 20]])
    assert box_iou(pred, gt)[0, 0] == pytest.approx(100 / 121)


def test_box_iou_empty_inputs():
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)
    assert box_iou([[0, 0, 1, 1]], np.zeros((0, 4))).shape == (1, 0)
    assert box_iou(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 0)


@pytest.mark.parametrize(
    'boxes, match',
    [
        ([[0, 0, 1]], 'shape'),
        ([0, 0, 1, 1], 'shape'),
        ([[0, 0, np.nan, 1]], r'boxes1\[0\].*non-finite'),
        ([[0, 0, 1, 1], [0, 0, np.inf, 1]], r'boxes1\[1\].*non-finite'),
        ([[-1, 0, 1, 1]], r'boxes1\[0\].*negative'),
        ([[0, 0, 1, 1], [3, 0, 2, 1]], r'boxes1\[1\].*x1 < x0'),
        ([[0, 3, 1, 2]], r'y1 < y0'),
    ],
)
def test_box_iou_errors(boxes, match):
    with pytest.raises(ValueError, match=match):
        box_iou(np.array(boxes, dtype=float), [[0, 0, 1, 1]])


def test_box_iou_type_errors():
    with pytest.raises(TypeError, match='numpy'):
        box_iou(torch.zeros(1, 4), [[0, 0, 1, 1]])
    with pytest.raises(TypeError):
        box_iou([['a', 'b', 'c', 'd']], [[0, 0, 1, 1]])


# ---------------------------------------------------------------------------
# 2. normalize_cam
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_normalize_cam_range_dtype_and_rule(dtype):
    rng = np.random.default_rng(2)
    cams = (rng.normal(size=(4, 9, 11)) * 3 + 1).astype(dtype)
    before = cams.copy()
    out = normalize_cam(cams)
    np.testing.assert_array_equal(cams, before)  # input untouched
    assert out.dtype == dtype and out.shape == cams.shape
    assert (out.min(axis=(1, 2)) == 0).all()
    assert (out.max(axis=(1, 2)) == 1).all()
    for i in range(4):
        c = cams[i]
        np.testing.assert_array_equal(
            out[i], (c - c.min()) / (c.max() - c.min())
        )
        np.testing.assert_array_equal(normalize_cam(c), out[i])


def test_normalize_cam_constant_and_nan_give_zeros():
    cams = np.random.default_rng(3).random((3, 5, 5))
    cams[0] = 7.0
    cams[1, 2, 2] = np.nan
    out = normalize_cam(cams)
    np.testing.assert_array_equal(out[0], 0)
    np.testing.assert_array_equal(out[1], 0)
    assert out[2].max() == 1 and out[2].min() == 0


def test_normalize_cam_affine_invariance_and_idempotence():
    rng = np.random.default_rng(4)
    cam = rng.integers(0, 50, (16, 16)).astype(np.float64)
    out = normalize_cam(cam)
    np.testing.assert_array_equal(normalize_cam(4.0 * cam - 3.0), out)
    np.testing.assert_array_equal(normalize_cam(out), out)
    smooth = smooth_map(rng)
    np.testing.assert_array_equal(normalize_cam(smooth), smooth)
    np.testing.assert_allclose(
        normalize_cam(2.5 * smooth + 0.3), smooth, atol=1e-15
    )


def test_normalize_cam_errors():
    cam = np.zeros((2, 4, 4))
    cam[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match='map 1'):
        normalize_cam(cam)
    with pytest.raises(ValueError, match='inf'):
        normalize_cam(np.full((3, 3), -np.inf))
    with pytest.raises(TypeError):
        normalize_cam(np.zeros((3, 3), dtype=np.int64))
    with pytest.raises(TypeError, match='numpy'):
        normalize_cam(torch.zeros(3, 3))
    with pytest.raises(ValueError, match='H, W'):
        normalize_cam(np.zeros(5))


# ---------------------------------------------------------------------------
# 3. cam_to_boxes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
@pytest.mark.parametrize('multi', [False, True])
@pytest.mark.parametrize('taus', list(THRESHOLD_SETS))
def test_cam_to_boxes_parity_random(dtype, multi, taus):
    rng = np.random.default_rng(5)
    for _ in range(3):
        assert_box_parity(
            smooth_map(rng, dtype=dtype), THRESHOLD_SETS[taus], multi
        )
    assert_box_parity(noisy_map(rng, 32, dtype), THRESHOLD_SETS[taus], multi)


@pytest.mark.parametrize('name', list(STRUCTURED))
@pytest.mark.parametrize('multi', [False, True])
def test_cam_to_boxes_parity_structured(name, multi):
    cam = STRUCTURED[name]()
    for taus in THRESHOLD_SETS.values():
        assert_box_parity(cam, taus, multi)
        assert_box_parity(cam.astype(np.float32), taus, multi)


@pytest.mark.parametrize('multi', [False, True])
def test_cam_to_boxes_tscam_options(multi):
    rng = np.random.default_rng(6)
    taus = THRESHOLD_SETS['list']
    opts = dict(clip=False, empty_box=(0, 0, 1, 1))
    for cam in [
        smooth_map(rng, dtype=np.float32),
        border_blobs().astype(np.float32),
        np.zeros((20, 20), np.float32),
    ]:
        assert_box_parity(cam, taus, multi, **opts)
    boxes, counts = cam_to_boxes(np.zeros((8, 8)), [0.1, 0.5], **opts)
    assert boxes.tolist() == [[0, 0, 1, 1]] * 2 and counts.tolist() == [1, 1]
    full = np.ones((8, 8))
    assert cam_to_boxes(full, 0.5, clip=False)[0].tolist() == [[0, 0, 8, 8]]
    assert cam_to_boxes(full, 0.5)[0].tolist() == [[0, 0, 7, 7]]


def test_cam_to_boxes_224_parity():
    rng = np.random.default_rng(7)
    cam = smooth_map(rng, 224)
    for multi in (False, True):
        assert_box_parity(cam, THRESHOLD_SETS['d0.001'], multi)


def test_cam_to_boxes_ring_at_quantised_cut_is_background():
    # tau = 0.5, max u = 255: T = int(127.5) = 127 and the ring has u = 127,
    # so it is background although v >= tau.
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    cam = np.zeros((64, 64))
    cam[(r > 20) & (r < 25)] = 0.5
    cam[30:35, 30:35] = 1.0
    boxes, counts = cam_to_boxes(cam, 0.5, multi_contour=True)
    assert boxes.tolist() == [[30, 30, 35, 35]] and counts.tolist() == [1]
    naive = cam >= 0.5
    assert naive[(r > 20) & (r < 25)].all()  # a naive v >= tau test fails
    assert_box_parity(cam, [0.5], True)


def test_cam_to_boxes_v1_equal_area_takes_first_contour():
    cam = equal_area_blobs()
    boxes, _ = cam_to_boxes(cam, 0.8)
    ref, _ = flat_reference(cam, [0.8], False)
    assert boxes.tolist() == ref
    # OpenCV returns contours bottom-up in raster order: the lower blob.
    assert boxes.tolist() == [[5, 40, 15, 50]]


def test_cam_to_boxes_distinct_mask_calls(monkeypatch):
    calls = []
    real = cv2.findContours

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(wsol.cv2, 'findContours', counting)
    cam = nested_plateaus()  # levels 0, 51, 127, 229, 255
    cam_to_boxes(cam, np.arange(0, 1, 0.001), True)
    assert len(calls) == 4  # 51, 127, 229, 255; T >= 255 needs no call


def test_cam_to_boxes_crop_equals_full_image(monkeypatch):
    rng = np.random.default_rng(17)
    cams = [smooth_map(rng), rings(), border_blobs(), lines_and_squares()]
    taus = np.arange(0, 1, 0.001)
    cropped = [cam_to_boxes(c, taus, m) for c in cams for m in (0, 1)]

    def full(self):
        out = np.zeros((len(self.levels), 4), dtype=np.int64)
        out[:, 1], out[:, 3] = self.height, self.width
        return out

    monkeypatch.setattr(wsol._Sweep, '_crops', full)
    uncropped = [cam_to_boxes(c, taus, m) for c in cams for m in (0, 1)]
    for (b1, n1), (b2, n2) in zip(cropped, uncropped):
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(n1, n2)


def test_cam_to_boxes_float16_is_quantised_as_float32():
    rng = np.random.default_rng(18)
    cam = smooth_map(rng).astype(np.float16)
    taus = np.arange(0, 1, 0.01)
    for multi in (False, True):
        boxes, counts = cam_to_boxes(cam, taus, multi)
        ref, ref_counts = flat_reference(cam.astype(np.float32), taus, multi)
        assert boxes.tolist() == ref and counts.tolist() == ref_counts


def test_cam_to_boxes_does_not_modify_input_and_counts():
    rng = np.random.default_rng(8)
    cam = smooth_map(rng)
    before = cam.copy()
    taus = np.arange(0, 1, 0.05)
    boxes, counts = cam_to_boxes(cam, taus, True)
    np.testing.assert_array_equal(cam, before)
    assert counts.shape == (len(taus),) and counts.sum() == len(boxes)
    single, _ = cam_to_boxes(cam, taus, False)
    assert len(single) == len(taus)
    scalar, count = cam_to_boxes(cam, 0.3)
    assert scalar.shape == (1, 4) and count.tolist() == [1]


@pytest.mark.parametrize(
    'cam, taus, match',
    [
        (np.zeros((2, 3, 3)), 0.5, '2-D'),
        (np.full((3, 3), np.nan), 0.5, 'NaN'),
        (np.full((3, 3), 1.5), 0.5, r'\[0, 1\]'),
        (np.full((3, 3), -0.1), 0.5, r'\[0, 1\]'),
        (np.zeros((3, 3)), [], 'empty'),
        (np.zeros((3, 3)), [0.2, 1.1], r'thresholds\[1\]'),
        (np.zeros((3, 3)), [-0.1], r'thresholds\[0\]'),
        (np.zeros((3, 3)), [np.nan], r'thresholds\[0\]'),
    ],
)
def test_cam_to_boxes_errors(cam, taus, match):
    with pytest.raises(ValueError, match=match):
        cam_to_boxes(cam, taus)


def test_cam_to_boxes_bad_empty_box():
    with pytest.raises(ValueError, match='empty_box'):
        cam_to_boxes(np.zeros((3, 3)), 0.5, empty_box=(0, 0, 1))


def test_cam_to_boxes_type_errors():
    with pytest.raises(TypeError, match='numpy'):
        cam_to_boxes(torch.zeros(4, 4), 0.5)
    with pytest.raises(TypeError):
        cam_to_boxes(np.zeros((4, 4), dtype=np.uint8), 0.5)


# ---------------------------------------------------------------------------
# 4. max_box_acc
# ---------------------------------------------------------------------------


def random_dataset(rng, n, size=64, dtype=np.float64):
    cams, gts = [], []
    for _ in range(n):
        cams.append(smooth_map(rng, size, dtype))
        k = int(rng.integers(1, 4))
        xy = rng.integers(0, size // 2, (k, 2))
        wh = rng.integers(3, size // 2, (k, 2))
        gts.append(np.concatenate([xy, xy + wh], axis=1))
    return cams, gts


def assert_result_equal(result, ref):
    assert set(result) == set(ref)
    for key, value in ref.items():
        if key == 'box_acc_curves':
            assert result[key].dtype == np.float64
            np.testing.assert_array_equal(result[key], value)
        else:
            assert result[key] == value, key


@pytest.mark.parametrize('multi', [True, False])
@pytest.mark.parametrize('interval', [0.01, 0.001])
def test_max_box_acc_parity(multi, interval):
    rng = np.random.default_rng(9)
    cams, gts = random_dataset(rng, 8)
    cams.append(nested_plateaus())
    gts.append(np.array([[12, 15, 20, 25], [22, 30, 28, 38]]))
    cams.append(np.zeros((64, 64)))
    gts.append(np.array([[0, 0, 3, 3]]))
    result = max_box_acc(
        cams, gts, cam_curve_interval=interval, multi_contour=multi
    )
    ref = reference_max_box_acc(
        cams, gts, cam_curve_interval=interval, multi_contour=multi
    )
    assert_result_equal(result, ref)
    assert result['box_acc_curves'].shape == (
        3,
        len(np.arange(0, 1, interval)),
    )
    assert result['MaxBoxAccV2'] == pytest.approx(
        np.mean([result[f'MaxBoxAcc@{d}'] for d in (30, 50, 70)])
    )


def test_max_box_acc_224_and_array_input():
    rng = np.random.default_rng(10)
    cams, gts = random_dataset(rng, 3, size=224)
    stacked = np.stack(cams)
    result = max_box_acc(stacked, gts, num_workers=2)
    assert_result_equal(result, reference_max_box_acc(cams, gts))
    assert_result_equal(max_box_acc(cams, gts, num_workers=1), result)


def test_max_box_acc_mixed_and_non_square_sizes():
    rng = np.random.default_rng(20)
    cams = []
    for h, w in ((40, 72), (72, 40), (64, 64)):
        noise = cv2.resize(
            rng.random((14, 14)), (w, h), interpolation=cv2.INTER_CUBIC
        )
        cam = normalize_cam(noise)
        cam[:, -3:] = 1.0  # touches the right border: x1 is clipped
        cam[-2:, :5] = 1.0  # touches the bottom border: y1 is clipped
        cams.append(cam)
    gts = [
        np.array([[30, 0, 71, 39]]),
        np.array([[0, 30, 39, 71], [20, 20, 30, 40]]),
        np.array([[10, 10, 40, 50]]),
    ]
    for multi in (True, False):
        result = max_box_acc(cams, gts, multi_contour=multi)
        ref = reference_max_box_acc(cams, gts, multi_contour=multi)
        assert_result_equal(result, ref)
    for cam in cams:
        for multi in (True, False):
            assert_box_parity(cam, THRESHOLD_SETS['list'], multi)
            assert_box_parity(cam, THRESHOLD_SETS['list'], multi, clip=False)


def test_max_box_acc_v1_keys():
    rng = np.random.default_rng(11)
    cams, gts = random_dataset(rng, 5)
    result = max_box_acc(cams, gts, iou_thresholds=(50,), multi_contour=False)
    ref = reference_max_box_acc(
        cams, gts, iou_thresholds=(50,), multi_contour=False
    )
    assert_result_equal(result, ref)
    assert set(result) == {
        'MaxBoxAccV2',
        'MaxBoxAcc@50',
        'best_threshold@50',
        'box_acc_curves',
    }
    assert result['MaxBoxAccV2'] == result['MaxBoxAcc@50']


def two_level_image():
    cam = np.zeros((64, 64))
    cam[4:60, 4:60] = 0.2  # u = 51: foreground only for tau < 0.2
    cam[28:36, 28:36] = 1.0
    return cam


def test_max_box_acc_threshold_shared_over_split():
    big = np.array([[4, 4, 59, 59]])
    small = np.array([[28, 28, 35, 35]])
    cams = [two_level_image(), two_level_image()]
    gts = [big, small]
    result = max_box_acc(cams, gts, iou_thresholds=(50,))
    # Per-image optimal tau would localise both images (100); one tau for
    # the split can only get one of them.
    per_image = [
        max_box_acc([c], [g], iou_thresholds=(50,))['MaxBoxAcc@50']
        for c, g in zip(cams, gts)
    ]
    assert per_image == [100.0, 100.0]
    assert result['MaxBoxAcc@50'] == 50.0
    assert result['best_threshold@50'] == 0.0  # first argmax
    curve = result['box_acc_curves'][0]
    taus = np.arange(0, 1, 0.01)
    np.testing.assert_array_equal(curve, 50.0)  # every tau scores one
    assert_result_equal(result, reference_max_box_acc(cams, gts, (50,)))
    # best_threshold is the first tau of the maximum
    gts2 = [small, small]
    r2 = max_box_acc(cams, gts2, iou_thresholds=(50,))
    first = taus[int(np.argmax(r2['box_acc_curves'][0]))]
    assert r2['best_threshold@50'] == first == taus[20]


def test_max_box_acc_v1_differs_from_v2_on_two_blobs():
    cam = np.zeros((64, 64))
    cam[5:35, 5:35] = 1.0  # large blob
    cam[45:55, 45:55] = 1.0  # small blob: the object
    gt = [np.array([[45, 45, 54, 54]])]
    v2 = max_box_acc([cam], gt, iou_thresholds=(50,), multi_contour=True)
    v1 = max_box_acc([cam], gt, iou_thresholds=(50,), multi_contour=False)
    assert v2['MaxBoxAcc@50'] == 100.0
    assert v1['MaxBoxAcc@50'] == 0.0
    for multi, value in ((True, v2), (False, v1)):
        ref = reference_max_box_acc([cam], gt, (50,), 0.01, multi)
        assert_result_equal(value, ref)


def test_max_box_acc_iou_exactly_at_threshold_counts():
    cam = np.zeros((64, 64))
    cam[10:20, 10:20] = 1.0  # predicted box [10, 10, 20, 20]: 121 pixels
    gt = [np.array([[10, 10, 20, 31]])]  # 242 pixels, contains it
    assert box_iou([[10, 10, 20, 20]], gt[0])[0, 0] == 0.5
    assert max_box_acc([cam], gt, (50,))['MaxBoxAcc@50'] == 100.0
    assert max_box_acc([cam], gt, (51,))['MaxBoxAcc@51'] == 0.0


def test_max_box_acc_order_invariance_and_oracle():
    rng = np.random.default_rng(12)
    cams, gts = random_dataset(rng, 6)
    result = max_box_acc(cams, gts)
    perm = rng.permutation(6)
    shuffled = max_box_acc([cams[i] for i in perm], [gts[i] for i in perm])
    assert_result_equal(shuffled, result)
    # oracle maps: one filled rectangle per GT box
    oracle_cams, oracle_gts = [], []
    for gt in gts:
        cam = np.zeros((64, 64))
        x0, y0, x1, y1 = gt[0]
        cam[y0:y1, x0:x1] = 1.0
        oracle_cams.append(cam)
        oracle_gts.append(gt[:1])
    oracle = max_box_acc(oracle_cams, oracle_gts)
    assert oracle['MaxBoxAccV2'] == 100.0


def test_max_box_acc_batched_equals_per_image_accumulation():
    rng = np.random.default_rng(19)
    cams, gts = random_dataset(rng, 5)
    batched = max_box_acc(cams, gts, cam_curve_interval=0.02)
    counts = sum(
        max_box_acc([c], [g], cam_curve_interval=0.02)['box_acc_curves'] / 100
        for c, g in zip(cams, gts)
    )
    np.testing.assert_array_equal(batched['box_acc_curves'] * 5 / 100, counts)
    taus = np.arange(0, 1, 0.02)
    for k, d in enumerate((30, 50, 70)):
        assert batched[f'MaxBoxAcc@{d}'] == 100 * counts[k].max() / 5
        first = taus[np.flatnonzero(counts[k] == counts[k].max())[0]]
        assert batched[f'best_threshold@{d}'] == first


def test_max_box_acc_errors():
    cam = [np.zeros((8, 8))]
    gt = [np.array([[0, 0, 2, 2]])]
    with pytest.raises(ValueError, match='1 cams but 2'):
        max_box_acc(cam, gt * 2)
    with pytest.raises(ValueError, match=r'gt_boxes\[0\] has no box'):
        max_box_acc(cam, [np.zeros((0, 4))])
    with pytest.raises(ValueError, match=r'\(0, 100\]'):
        max_box_acc(cam, gt, iou_thresholds=(0,))
    with pytest.raises(ValueError, match=r'\(0, 100\]'):
        max_box_acc(cam, gt, iou_thresholds=(101,))
    for interval in (0, 1, -0.1):
        with pytest.raises(ValueError, match=r'\(0, 1\)'):
            max_box_acc(cam, gt, cam_curve_interval=interval)
    with pytest.raises(ValueError, match=r'cams\[1\]'):
        max_box_acc([cam[0], np.full((8, 8), 2.0)], gt * 2)
    with pytest.raises(ValueError, match=r'gt_boxes\[0\]\[0\].*negative'):
        max_box_acc(cam, [np.array([[-1, 0, 2, 2]])])
    with pytest.raises(TypeError, match='numpy'):
        max_box_acc(torch.zeros(1, 8, 8), gt)


# ---------------------------------------------------------------------------
# 5. pxap
# ---------------------------------------------------------------------------


def random_masks(rng, n, size=48):
    cams = np.stack([smooth_map(rng, size) for _ in range(n)])
    masks = np.stack([smooth_map(rng, size) > 0.55 for _ in range(n)])
    ignore = rng.random((n, size, size)) < 0.1
    return cams, masks, ignore


def assert_pxap_equal(result, ref):
    assert set(result) == {'PxAP', 'pIoU', 'best_threshold'}
    assert result == ref


@pytest.mark.parametrize('interval', [0.001, 0.01])
@pytest.mark.parametrize('with_ignore', [False, True])
def test_pxap_parity(interval, with_ignore):
    rng = np.random.default_rng(13)
    cams, masks, ignore = random_masks(rng, 4)
    cams[0, :3, :3] = 1.0  # scores on an edge
    cams[1, :3, :3] = 0.5
    ign = ignore if with_ignore else None
    result = pxap(cams, masks, ign, cam_curve_interval=interval)
    assert_pxap_equal(
        result, reference_pxap(cams, masks, ign, cam_curve_interval=interval)
    )
    assert 0 < result['PxAP'] <= 100
    if with_ignore:
        assert result != pxap(cams, masks, cam_curve_interval=interval)


def test_pxap_parity_float32_224():
    rng = np.random.default_rng(14)
    cams, masks, ignore = random_masks(rng, 2, size=224)
    cams = cams.astype(np.float32)
    assert_pxap_equal(
        pxap(cams, masks, ignore), reference_pxap(cams, masks, ignore)
    )


def test_pxap_pooled_not_mean_of_per_image():
    cams = np.zeros((2, 4, 4))
    masks = np.zeros((2, 4, 4), bool)
    # image 0: perfect separation, one positive pixel
    cams[0, 0, 0] = 0.9
    masks[0, 0, 0] = True
    # image 1: positives score low, negatives high
    cams[1] = 0.8
    cams[1, :2] = 0.3
    masks[1, :2] = True
    pooled = pxap(cams, masks)['PxAP']
    per_image = [
        pxap(cams[i : i + 1], masks[i : i + 1])['PxAP'] for i in (0, 1)
    ]
    assert pooled != pytest.approx(np.mean(per_image))
    assert pooled == reference_pxap(cams, masks)['PxAP']
    # closed form of the pooled curve: points at 0.9 (P=1/9 TP=1), at 0.8
    # (TP=1, FP=8: no recall gain), at 0.3 (TP=9, FP=8)
    expected = 100 * (1 / 9 + (9 / 17) * (8 / 9))
    assert pooled == pytest.approx(expected)


def test_pxap_perfect_and_constant_maps():
    rng = np.random.default_rng(15)
    masks = rng.random((3, 16, 16)) < 0.3
    perfect = pxap(masks.astype(np.float64), masks)
    assert perfect['PxAP'] == pytest.approx(100.0)
    assert perfect['pIoU'] == 100.0
    assert perfect['best_threshold'] == np.arange(0, 1, 0.001)[1]
    constant = pxap(np.full(masks.shape, 0.4), masks)
    assert constant['PxAP'] == pytest.approx(100 * masks.mean())
    assert constant['pIoU'] == pytest.approx(100 * masks.mean())
    assert constant['best_threshold'] == 0.0


def test_pxap_ignore_only_negatives():
    rng = np.random.default_rng(16)
    cams, masks, _ = random_masks(rng, 2, size=16)
    # ignoring every pixel only removes negatives (ignore AND NOT mask)
    all_ignored = pxap(cams, masks, np.ones_like(masks))
    assert all_ignored['PxAP'] == pytest.approx(100.0)
    assert all_ignored == reference_pxap(cams, masks, np.ones_like(masks))


def test_pxap_errors():
    cams = np.zeros((2, 4, 4))
    masks = np.zeros((2, 4, 4), bool)
    with pytest.raises(ValueError, match='no positive ground-truth pixel'):
        pxap(cams, masks)
    with pytest.raises(ValueError, match='shape'):
        pxap(cams, masks[:1])
    with pytest.raises(ValueError, match='shape'):
        pxap(cams, masks | True, np.zeros((2, 4, 5), bool))
    with pytest.raises(ValueError, match=r'cams\[1\]'):
        bad = cams.copy()
        bad[1, 0, 0] = 1.5
        pxap(bad, masks | True)
    with pytest.raises(ValueError, match=r'masks\[0\]'):
        pxap(cams, np.full((2, 4, 4), 2))
    with pytest.raises(ValueError, match=r'\(0, 1\)'):
        pxap(cams, masks | True, cam_curve_interval=1.0)
    with pytest.raises(TypeError, match='numpy'):
        pxap(torch.zeros(2, 4, 4), masks)
    with pytest.raises(ValueError, match='N, H, W'):
        pxap(cams[0], masks[0])


def test_public_api():
    assert wsol.__all__ == [
        'box_iou',
        'normalize_cam',
        'cam_to_boxes',
        'max_box_acc',
        'pxap',
        'localization_accuracy',
    ]
