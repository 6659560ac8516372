"""LocRandomFlip: exact box/mask agreement, involution, mmcv keys."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from shared.datasets.transforms import LocRandomFlip
from shared.datasets.transforms.geometry import LocTransformError

from .scenes import instance_extents, scene_results


@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_flipped_boxes_equal_flipped_mask_extent(direction):
    rng = np.random.default_rng(20)
    flip = LocRandomFlip(1.0, direction=direction)
    for _ in range(40):
        results = scene_results(rng)
        before = copy.deepcopy(results)
        out = flip(results)
        assert out['flip'] is True
        assert out['flip_direction'] == direction
        n = len(before['gt_bboxes'])
        np.testing.assert_array_equal(
            out['gt_bboxes'], instance_extents(out['gt_mask'], n)
        )
        assert out['gt_bboxes'].dtype == np.float64
        assert out['gt_mask'].flags.c_contiguous
        np.testing.assert_array_equal(
            out['ori_gt_bboxes'], before['ori_gt_bboxes']
        )


def test_horizontal_formula():
    results = {
        'img_path': 'a.png',
        'img': np.zeros((10, 20, 3), np.uint8),
        'gt_bboxes': np.array([[2.5, 1.0, 7.25, 9.0], [0.0, 0.0, 20.0, 10.0]]),
    }
    out = LocRandomFlip(1.0)(results)
    np.testing.assert_array_equal(
        out['gt_bboxes'], [[12.75, 1.0, 17.5, 9.0], [0.0, 0.0, 20.0, 10.0]]
    )


def test_double_flip_is_identity():
    rng = np.random.default_rng(21)
    flip = LocRandomFlip(1.0)
    for _ in range(10):
        results = scene_results(rng)
        before = copy.deepcopy(results)
        out = flip(flip(results))
        for key in ('img', 'gt_bboxes', 'gt_mask'):
            np.testing.assert_array_equal(out[key], before[key])


def test_no_flip_sets_keys_like_mmcv():
    rng = np.random.default_rng(22)
    results = scene_results(rng)
    before = copy.deepcopy(results)
    out = LocRandomFlip(0.0)(results)
    assert out['flip'] is False
    assert out['flip_direction'] is None
    np.testing.assert_array_equal(out['gt_bboxes'], before['gt_bboxes'])
    np.testing.assert_array_equal(out['img'], before['img'])


def test_probability_is_used():
    np.random.seed(0)
    flip = LocRandomFlip(0.5)
    flips = [
        flip({'img_path': 'a', 'img': np.zeros((2, 2), np.uint8)})['flip']
        for _ in range(200)
    ]
    assert 60 < sum(flips) < 140


def test_invalid_input_names_img_path():
    with pytest.raises(LocTransformError, match=r"f\.png: no 'img'"):
        LocRandomFlip(1.0)({'img_path': 'f.png'})
    bad = {
        'img_path': 'g.png',
        'img': np.zeros((5, 6, 3), np.uint8),
        'gt_mask': np.zeros((6, 5), np.uint8),
    }
    with pytest.raises(LocTransformError, match=r"g\.png: 'gt_mask' has"):
        LocRandomFlip(1.0)(bad)
