"""Tests of ``shared/evaluation/_component_tree.py`` (``evaluation.md`` §4
item 6, §10 item 3).

The component characterisation of ``RETR_TREE`` contour boxes is checked
directly against ``cv2.findContours`` on random binary masks, then
``tree_level_boxes`` against the contour sweep ``_Sweep.level_boxes`` and
``max_box_acc(backend='tree')`` against the cv2 backend and the literal
wsolevaluation re-statement.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.evaluation._component_tree import tree_level_boxes
from shared.evaluation.wsol import _Sweep, max_box_acc
from tests.reference.wsoleval import reference_max_box_acc
from tests.shared.evaluation.test_wsol import (
    STRUCTURED,
    assert_result_equal,
    noisy_map,
    random_dataset,
    smooth_map,
)

TAU_SETS = {
    'd0.01': np.arange(0, 1, 0.01),
    'd0.001': np.arange(0, 1, 0.001),
    'list': np.array([0.0, 0.05, 0.3, 0.31, 0.5, 0.77, 0.9, 0.999, 1.0]),
}


def contour_boxes(mask: np.ndarray) -> list[tuple[int, ...]]:
    """Sorted [x, y, x + w, y + h] of every RETR_TREE contour of a mask."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE
    )
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append((x, y, x + w, y + h))
    return sorted(boxes)


def component_boxes(mask: np.ndarray) -> list[tuple[int, ...]]:
    """Sorted boxes of 8-components and of grown 4-connected holes."""
    height, width = mask.shape
    fg = mask.astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:].tolist()]
    _, _, stats, _ = cv2.connectedComponentsWithStats(1 - fg, connectivity=4)
    for x, y, w, h, _ in stats[1:].tolist():
        if x > 0 and y > 0 and x + w < width and y + h < height:
            boxes.append((x - 1, y - 1, x + w + 1, y + h + 1))
    return sorted(boxes)


def random_masks(rng: np.random.Generator):
    """Binary masks of the §10 item 3 kinds, random sizes (1 to 40 px)."""
    yy, xx = np.mgrid[:40, :40]
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 41, 2))
        kind = int(rng.integers(6))
        if kind == 0:  # pixel noise of random density
            mask = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        elif kind == 1:  # nested rings with islands
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = np.hypot(yy[:h, :w] - cy, xx[:h, :w] - cx)
            mask = (np.floor(r / rng.uniform(1, 4)) % 2) == 0
        elif kind == 2:  # blobs touching at corners and borders
            mask = np.zeros((h, w), bool)
            for y0, x0 in rng.integers(-2, 40, (6, 2)):
                mask[max(y0, 0) : y0 + 3, max(x0, 0) : x0 + 3] = True
                mask[max(y0 + 3, 0) : y0 + 6, max(x0 + 3, 0) : x0 + 6] = True
        elif kind == 3:  # one-pixel lines next to squares
            mask = np.zeros((h, w), bool)
            mask[rng.integers(h), :] = True
            mask[:, rng.integers(w)] = True
            mask[h // 3 : h // 3 + 2, w // 3 : w // 3 + 2] = True
        elif kind == 4:  # full mask with isolated background pixels
            mask = rng.random((h, w)) > 0.03
        else:  # blocky noise (large flat regions, holes of every size)
            small = rng.random((max(h // 4, 1), max(w // 4, 1))) < 0.5
            mask = cv2.resize(
                small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST
            ).astype(bool)
        yield mask
    yield np.ones((7, 9), bool)
    yield np.ones((1, 1), bool)
    ring = np.ones((5, 5), bool)
    ring[2, 2] = False
    yield ring
    diagonal = np.eye(6, dtype=bool)  # 8-connected line, 4-split bg
    yield diagonal | diagonal[::-1]


def test_contour_boxes_are_components_and_grown_holes():
    """The §4 item 6 characterisation, checked on random masks."""
    rng = np.random.default_rng(0)
    num_holes = 0
    for mask in random_masks(rng):
        expected = contour_boxes(mask)
        assert component_boxes(mask) == expected
        num_holes += len(expected) - (
            cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0]
            - 1
        )
    assert num_holes > 100  # the masks exercise holes


def split_levels(boxes: np.ndarray, counts: np.ndarray) -> list[list]:
    parts = np.split(boxes, np.cumsum(counts)[:-1])
    return [sorted(map(tuple, part.tolist())) for part in parts]


def assert_tree_parity(cam: np.ndarray, taus: np.ndarray) -> int:
    sweep = _Sweep(cam, taus)
    if len(sweep.levels) == 0:
        return 0
    expected, expected_counts = sweep.level_boxes(True, False)
    boxes, counts = tree_level_boxes(sweep.u, sweep.levels)
    assert boxes.dtype == np.int64 and counts.dtype == np.int64
    assert boxes.shape == (counts.sum(), 4)
    assert counts.tolist() == expected_counts.tolist()
    assert split_levels(boxes, counts) == split_levels(
        expected, expected_counts
    )
    return len(boxes)


@pytest.mark.parametrize('taus', TAU_SETS.values(), ids=TAU_SETS.keys())
def test_tree_level_boxes_parity_random(taus):
    rng = np.random.default_rng(1)
    total = 0
    for i in range(60):
        size = int(rng.integers(8, 48))
        if i % 3 == 0:
            cam = smooth_map(rng, size)
        elif i % 3 == 1:
            cam = noisy_map(rng, size, np.float32)
        else:  # few levels: large plateaus, holes and nested components
            levels = rng.integers(0, 4, (size // 4 + 1, size // 4 + 1))
            cam = cv2.resize(
                levels / 3.0, (size, size + 3), interpolation=cv2.INTER_NEAREST
            )
        total += assert_tree_parity(cam, taus)
    assert total > 1000


@pytest.mark.parametrize('name', STRUCTURED.keys())
@pytest.mark.parametrize('taus', TAU_SETS.values(), ids=TAU_SETS.keys())
def test_tree_level_boxes_parity_structured(name, taus):
    assert_tree_parity(STRUCTURED[name](), taus)


def test_tree_level_boxes_224_and_thin_maps():
    rng = np.random.default_rng(2)
    assert_tree_parity(smooth_map(rng, 224), TAU_SETS['d0.01'])
    for shape in ((1, 30), (30, 1), (1, 1), (2, 2)):
        assert_tree_parity(rng.random(shape), TAU_SETS['d0.001'])


def test_tree_level_boxes_crafted_values():
    # A ring of 0.8 around a 0.2 pit, next to a separate blob at the border.
    cam = np.zeros((8, 10))
    cam[1:6, 1:6] = 0.8
    cam[3, 3] = 0.2
    cam[0:3, 8:10] = 1.0
    u = (cam * 255).astype(np.uint8)
    boxes, counts = tree_level_boxes(u, np.array([51, 204, 255]))
    assert counts.tolist() == [2, 3, 1]
    assert split_levels(boxes, counts) == [
        [(1, 1, 6, 6), (8, 0, 10, 3)],
        # the hole at (3, 3) gives its 3 x 3 border box [2, 2, 5, 5]
        [(1, 1, 6, 6), (2, 2, 5, 5), (8, 0, 10, 3)],
        [(8, 0, 10, 3)],
    ]


def test_tree_level_boxes_does_not_modify_input():
    rng = np.random.default_rng(3)
    sweep = _Sweep(smooth_map(rng, 32), TAU_SETS['d0.01'])
    u, levels = sweep.u.copy(), sweep.levels.copy()
    tree_level_boxes(sweep.u, sweep.levels)
    np.testing.assert_array_equal(sweep.u, u)
    np.testing.assert_array_equal(sweep.levels, levels)
    boxes, counts = tree_level_boxes(u, levels[:0])
    assert boxes.shape == (0, 4) and counts.shape == (0,)


@pytest.mark.parametrize('interval', [0.01, 0.001])
def test_max_box_acc_tree_backend_parity(interval):
    rng = np.random.default_rng(4)
    cams, gts = random_dataset(rng, 10, size=48)
    for name in ('nested', 'rings', 'corner', 'all_zero', 'almost_full'):
        cams.append(STRUCTURED[name]())
        k = int(rng.integers(1, 4))
        xy = rng.integers(0, 32, (k, 2))
        gts.append(np.concatenate([xy, xy + rng.integers(2, 30, (k, 2))], 1))
    cams.append(noisy_map(rng, 40))
    gts.append(np.array([[3, 4, 20, 30], [25, 1, 39, 9]]))
    tree = max_box_acc(
        cams, gts, cam_curve_interval=interval, backend='tree', num_workers=2
    )
    cv2_result = max_box_acc(
        cams, gts, cam_curve_interval=interval, backend='cv2', num_workers=1
    )
    ref = reference_max_box_acc(cams, gts, cam_curve_interval=interval)
    assert_result_equal(tree, ref)
    assert_result_equal(cv2_result, ref)


def test_max_box_acc_tree_backend_v1_uses_contours():
    rng = np.random.default_rng(5)
    cams, gts = random_dataset(rng, 4, size=32)
    tree = max_box_acc(
        cams, gts, iou_thresholds=(50,), multi_contour=False, backend='tree'
    )
    ref = reference_max_box_acc(
        cams, gts, iou_thresholds=(50,), multi_contour=False
    )
    assert_result_equal(tree, ref)
