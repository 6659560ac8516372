"""Tests of ``shared/evaluation/gt_boxes.py`` (``evaluation.md`` §10.8).

The reference formulas of the three protocols are written out literally
below with Python floats and ``int``, one coordinate at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.evaluation.gt_boxes import protocol_gt_boxes

S = 224

# ---------------------------------------------------------------------------
# literal reference formulas (Python floats, int() truncation)
# ---------------------------------------------------------------------------


def ref_wsoleval(box, fmt, ori_size, eval_size):
    """wsolevaluation: xyxy (x2 = x + w), then int(x * S / W), no clip."""
    img_h, img_w = ori_size
    new_h, new_w = eval_size
    x1, y1, a, b = (float(v) for v in box)
    if fmt == 'xywh':
        x2, y2 = x1 + a, y1 + b
    else:
        x2, y2 = a, b
    return [
        int(x1 * new_w / img_w),
        int(y1 * new_h / img_h),
        int(x2 * new_w / img_w),
        int(y2 * new_h / img_h),
    ]


def _divide_then_multiply(x1, y1, x2, y2, ori_size, eval_size):
    img_h, img_w = ori_size
    new_h, new_w = eval_size
    return [
        int(max(x1 / img_w * new_w, 0)),
        int(max(y1 / img_h * new_h, 0)),
        int(min(x2 / img_w * new_w, new_w - 1)),
        int(min(y2 / img_h * new_h, new_h - 1)),
    ]


def ref_tscam(box, fmt, ori_size, eval_size):
    """TS-CAM: int(float(v)) first; CUB x2 = x + w; divide then multiply."""
    x1, y1, a, b = (int(float(v)) for v in box)
    if fmt == 'xywh':
        x2, y2 = x1 + a, y1 + b
    else:
        x2, y2 = a, b
    return _divide_then_multiply(x1, y1, x2, y2, ori_size, eval_size)


def ref_spa(box, fmt, ori_size, eval_size):
    """WGOL/SPA: no truncation first; CUB x2 = x + w - 1."""
    x1, y1, a, b = (float(v) for v in box)
    if fmt == 'xywh':
        x2, y2 = x1 + a - 1, y1 + b - 1
    else:
        x2, y2 = a, b
    return _divide_then_multiply(x1, y1, x2, y2, ori_size, eval_size)


REFERENCES = {'wsoleval': ref_wsoleval, 'tscam': ref_tscam, 'spa': ref_spa}


def _differing_cases(limit: int = 40) -> list[tuple[int, int]]:
    """(x, W) with int(x * S / W) != int(x / W * S), x integer in [0, W]."""
    cases = []
    for width in range(150, 400):
        for x in range(width + 1):
            if int(x * S / width) != int(x / width * S):
                cases.append((x, width))
                if len(cases) >= limit:
                    return cases
    return cases


# ---------------------------------------------------------------------------
# reference parity
# ---------------------------------------------------------------------------


def test_crafted_sizes_where_rounding_order_matters():
    cases = _differing_cases()
    assert len(cases) > 0  # at least one differing case exists
    x, width = cases[0]
    # Integer x: multiply-then-divide is exact up to one rounding, so it is
    # the divide-then-multiply result that falls just below an integer.
    assert int(x / width * S) == int(x * S / width) - 1
    for x, width in cases:
        ori_size = (width, width)  # square image: y follows the same rule
        for fmt in ('xyxy', 'xywh'):
            # xyxy [x, x, W, W]; xywh [x, x, 0, 0] has x2 = x (tscam/ws).
            box = [x, x, width, width] if fmt == 'xyxy' else [x, x, 0, 0]
            for protocol, ref in REFERENCES.items():
                got = protocol_gt_boxes(
                    np.array([box], dtype=np.float64),
                    fmt,
                    ori_size,
                    (S, S),
                    protocol,
                )
                assert got.tolist() == [ref(box, fmt, ori_size, (S, S))]
            ws = protocol_gt_boxes([box], fmt, ori_size, (S, S), 'wsoleval')
            ts = protocol_gt_boxes([box], fmt, ori_size, (S, S), 'tscam')
            # Left/top edges differ by the rounding order alone.
            assert ws[0, 0] == int(x * S / width)
            assert ts[0, 0] == int(x / width * S) == ws[0, 0] - 1


@pytest.mark.parametrize('fmt', ['xywh', 'xyxy'])
@pytest.mark.parametrize('protocol', ['wsoleval', 'tscam', 'spa'])
def test_random_boxes_match_reference(fmt, protocol):
    rng = np.random.default_rng(0)
    ref = REFERENCES[protocol]
    for _ in range(40):
        img_h, img_w = (int(v) for v in rng.integers(50, 600, 2))
        eval_size = (int(rng.integers(100, 400)), int(rng.integers(100, 400)))
        n = int(rng.integers(1, 5))
        x1 = rng.uniform(0, img_w, n)
        y1 = rng.uniform(0, img_h, n)
        w = rng.uniform(0, img_w - x1)
        h = rng.uniform(0, img_h - y1)
        # Half the boxes on integers (CUB/ILSVRC style), half fractional.
        if rng.random() < 0.5:
            x1, y1, w, h = (np.floor(v) for v in (x1, y1, w, h))
        if fmt == 'xywh':
            boxes = np.stack([x1, y1, w, h], axis=1)
        else:
            boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
        got = protocol_gt_boxes(
            boxes, fmt, (img_h, img_w), eval_size, protocol
        )
        assert got.dtype == np.int64 and got.shape == (n, 4)
        want = [
            ref(box, fmt, (img_h, img_w), eval_size) for box in boxes.tolist()
        ]
        assert got.tolist() == want


# ---------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------


def test_cub_right_edge_tscam_vs_spa():
    # Identity scale with a power-of-two frame: every division is exact.
    box = [[10.0, 20.0, 30.0, 40.0]]  # x, y, w, h
    size = (256, 256)
    assert protocol_gt_boxes(box, 'xywh', size, size, 'wsoleval').tolist() == [
        [10, 20, 40, 60]
    ]
    assert protocol_gt_boxes(box, 'xywh', size, size, 'tscam').tolist() == [
        [10, 20, 40, 60]
    ]
    assert protocol_gt_boxes(box, 'xywh', size, size, 'spa').tolist() == [
        [10, 20, 39, 59]
    ]
    # xyxy input has no +-1 under any protocol.
    xyxy = [[10.0, 20.0, 40.0, 60.0]]
    for protocol in ('wsoleval', 'tscam', 'spa'):
        got = protocol_gt_boxes(xyxy, 'xyxy', size, size, protocol)
        assert got.tolist() == [[10, 20, 40, 60]]


def test_tscam_truncates_raw_numbers_first():
    # ori 128 -> eval 256 (x2, exact): truncating first changes the result.
    box = [[10.7, 20.2, 30.6, 40.9]]  # x, y, w, h
    ori, ev = (128, 128), (256, 256)
    # tscam: x=10, y=20, w=30, h=40 -> x2=40, y2=60 -> doubled.
    assert protocol_gt_boxes(box, 'xywh', ori, ev, 'tscam').tolist() == [
        [20, 40, 80, 120]
    ]
    # spa: 21.4, 40.4, (10.7 + 30.6 - 1) * 2 = 80.6, (20.2 + 40.9 - 1) * 2.
    assert protocol_gt_boxes(box, 'xywh', ori, ev, 'spa').tolist() == [
        [21, 40, 80, 120]
    ]
    # wsoleval: 21.4, 40.4, 82.6, 122.2.
    assert protocol_gt_boxes(box, 'xywh', ori, ev, 'wsoleval').tolist() == [
        [21, 40, 82, 122]
    ]
    # Documented decision: the truncation applies to xyxy input as well.
    xyxy = [[10.7, 20.2, 50.9, 60.5]]
    assert protocol_gt_boxes(xyxy, 'xyxy', ori, ev, 'tscam').tolist() == [
        [20, 40, 100, 120]
    ]
    assert protocol_gt_boxes(xyxy, 'xyxy', ori, ev, 'spa').tolist() == [
        [21, 40, 101, 121]
    ]


def test_non_square_x_uses_width_y_uses_height():
    box = [[40.0, 10.0, 80.0, 20.0]]  # xyxy
    ori = (100, 400)  # H, W
    for protocol in ('wsoleval', 'tscam', 'spa'):
        got = protocol_gt_boxes(box, 'xyxy', ori, (200, 100), protocol)
        assert got.tolist() == [[10, 20, 20, 40]], protocol
        got = protocol_gt_boxes(box, 'xyxy', ori, (50, 200), protocol)
        assert got.tolist() == [[20, 5, 40, 10]], protocol


def test_clipping_only_where_the_protocol_clips():
    ori = (100, 200)  # H, W
    full = [[0.0, 0.0, 200.0, 100.0]]  # the whole image, xyxy edges
    assert protocol_gt_boxes(
        full, 'xyxy', ori, (S, S), 'wsoleval'
    ).tolist() == [[0, 0, S, S]]
    for protocol in ('tscam', 'spa'):
        got = protocol_gt_boxes(full, 'xyxy', ori, (S, S), protocol)
        assert got.tolist() == [[0, 0, S - 1, S - 1]]
    # Non-square frame: x clips at W - 1, y at H - 1.
    got = protocol_gt_boxes(full, 'xyxy', ori, (50, 300), 'tscam')
    assert got.tolist() == [[0, 0, 299, 49]]
    # CUB box reaching the border: spa's x + w - 1 stays inside.
    cub = [[100.0, 50.0, 100.0, 50.0]]  # x + w = W, y + h = H
    got = protocol_gt_boxes(cub, 'xywh', (100, 200), (100, 200), 'spa')
    assert got.tolist() == [[100, 50, 199, 99]]
    # Negative raw coordinates: clipped at 0 by tscam/spa, truncated toward
    # zero (int(-5.6) = -5) and kept negative by wsoleval.
    neg = [[-5.0, -3.0, 50.0, 50.0]]
    assert protocol_gt_boxes(
        neg, 'xyxy', ori, (S, S), 'wsoleval'
    ).tolist() == [[int(-5 * S / 200), int(-3 * S / 100), 56, 112]]
    got = protocol_gt_boxes(neg, 'xyxy', ori, (S, S), 'wsoleval')
    assert got[0, :2].tolist() == [-5, -6]
    for protocol in ('tscam', 'spa'):
        got = protocol_gt_boxes(neg, 'xyxy', ori, (S, S), protocol)
        assert got[0, :2].tolist() == [0, 0]


def test_empty_and_input_untouched():
    out = protocol_gt_boxes(np.zeros((0, 4)), 'xywh', (10, 10), (S, S), 'spa')
    assert out.shape == (0, 4) and out.dtype == np.int64
    boxes = np.array([[1.5, 2.5, 3.5, 4.5]])
    before = boxes.copy()
    for protocol in ('wsoleval', 'tscam', 'spa'):
        protocol_gt_boxes(boxes, 'xywh', (10, 10), (S, S), protocol)
    np.testing.assert_array_equal(boxes, before)
    # Integer input and plain lists are accepted.
    ints = protocol_gt_boxes(
        np.array([[1, 2, 3, 4]], dtype=np.int32),
        'xyxy',
        (8, 8),
        (16, 16),
        'tscam',
    )
    assert ints.tolist() == [[2, 4, 6, 8]]


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_errors():
    box = [[1.0, 2.0, 3.0, 4.0]]
    size = (10, 10)
    with pytest.raises(ValueError, match='ori_box_format'):
        protocol_gt_boxes(box, 'cxcywh', size, size, 'tscam')
    with pytest.raises(ValueError, match='unknown protocol'):
        protocol_gt_boxes(box, 'xyxy', size, size, 'gradcam')
    for bad in ([1.0, 2.0, 3.0, 4.0], [[1.0, 2.0, 3.0]], np.zeros((2, 4, 1))):
        with pytest.raises(ValueError, match=r'shape \(N, 4\)'):
            protocol_gt_boxes(bad, 'xyxy', size, size, 'tscam')
    with pytest.raises(ValueError, match=r'ori_boxes\[1\].*non-finite'):
        protocol_gt_boxes(
            [[0, 0, 1, 1], [0, np.nan, 1, 1]], 'xyxy', size, size, 'spa'
        )
    with pytest.raises(ValueError, match=r'ori_boxes\[0\].*negative width'):
        protocol_gt_boxes([[5.0, 5.0, -1.0, 2.0]], 'xywh', size, size, 'spa')
    with pytest.raises(ValueError, match=r'x2 < x1'):
        protocol_gt_boxes([[5.0, 5.0, 4.0, 6.0]], 'xyxy', size, size, 'spa')
    for bad_size in ((10,), (0, 10), (10, -2), (10.0, 10), 10, (10, 10, 3)):
        with pytest.raises(ValueError, match='ori_size'):
            protocol_gt_boxes(box, 'xyxy', bad_size, size, 'tscam')
        with pytest.raises(ValueError, match='eval_size'):
            protocol_gt_boxes(box, 'xyxy', size, bad_size, 'tscam')
    with pytest.raises(TypeError, match='torch'):
        protocol_gt_boxes(torch.zeros(1, 4), 'xyxy', size, size, 'tscam')
    with pytest.raises(TypeError, match='int or float'):
        protocol_gt_boxes(np.array([['a'] * 4]), 'xyxy', size, size, 'tscam')
