"""Loc crops: boxes equal the cropped masks' extents; parent windows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from mmcv.transforms import CenterCrop
from mmpretrain.datasets.transforms import RandomCrop, RandomResizedCrop

from shared.datasets.transforms import (
    LocCenterCrop,
    LocRandomCrop,
    LocRandomResizedCrop,
)
from shared.datasets.transforms.geometry import LocTransformError
from shared.registry import TRANSFORMS

from .scenes import instance_extents, scene_results


def _random_crop(rng):
    return LocRandomCrop(tuple(int(v) for v in rng.integers(16, 100, 2)))


def _center_crop(rng):
    return LocCenterCrop(tuple(int(v) for v in rng.integers(16, 100, 2)))


def _check_crop_rectangles(results, out):
    """Rectangle masks: kept boxes == extents of the non-empty masks."""
    n = len(results['gt_bboxes'])
    ext = instance_extents(out['gt_mask'], n)
    visible = ext[~np.isnan(ext).any(1)]
    np.testing.assert_array_equal(out['gt_bboxes'], visible)
    assert out['dropped_boxes'] == n - len(visible)


def _check_crop_shapes(results, out):
    """Any shape: exact for objects inside the window, contained else.

    Returns the number of objects checked for exact equality.
    """
    x0, y0, x1, y1 = out['crop_bbox']
    n = len(results['gt_bboxes'])
    ext = instance_extents(out['gt_mask'], n)
    boxes = out['gt_bboxes']
    assert len(boxes) + out['dropped_boxes'] == n
    exact = 0
    for box, e in zip(results['gt_bboxes'], ext):
        inside = box[0] >= x0 and box[1] >= y0 and box[2] <= x1
        inside = inside and box[3] <= y1
        if inside:
            assert (boxes == e).all(1).any()
            exact += 1
        elif not np.isnan(e).any():
            assert (
                (boxes[:, :2] <= e[:2]).all(1) & (boxes[:, 2:] >= e[2:]).all(1)
            ).any()
    return exact


@pytest.mark.parametrize('make', [_random_crop, _center_crop])
@pytest.mark.parametrize('rectangles', [True, False])
def test_crop_boxes_equal_mask_extent(make, rectangles):
    rng = np.random.default_rng(10 + rectangles)
    dropped = exact = 0
    for _ in range(80):
        results = scene_results(rng, rectangles=rectangles)
        before = copy.deepcopy(results)
        out = make(rng)(results)
        h, w = out['img'].shape[:2]
        assert out['gt_mask'].shape == (h, w)
        assert out['img_shape'] == (h, w)
        assert out['gt_bboxes'].dtype == np.float64
        assert (out['gt_bboxes'][:, 2:] <= [w, h]).all()
        assert (out['gt_bboxes'] >= 0).all()
        x0, y0, x1, y1 = out['crop_bbox']
        assert (x1 - x0, y1 - y0) == (w, h)
        np.testing.assert_array_equal(out['img'], before['img'][y0:y1, x0:x1])
        np.testing.assert_array_equal(
            out['ori_gt_bboxes'], before['ori_gt_bboxes']
        )
        if rectangles:
            _check_crop_rectangles(before, out)
        else:
            exact += _check_crop_shapes(before, out)
        dropped += out['dropped_boxes']
    assert dropped > 0  # the degenerate-removal path was exercised
    assert rectangles or exact > 20


def test_clip_and_degenerate_removal():
    results = {
        'img_path': 'crafted.png',
        'img': np.zeros((40, 50, 3), np.uint8),
        'gt_bboxes': np.array(
            [
                [5.0, 5.0, 15.0, 15.0],  # straddles the left edge: clipped
                [12.0, 12.0, 20.0, 20.0],  # inside: shifted
                [0.0, 0.0, 10.0, 10.0],  # touches the window edge: dropped
                [30.0, 25.0, 45.0, 38.0],  # straddles right/bottom: clipped
                [40.0, 5.0, 48.0, 9.0],  # outside: dropped
                [14.0, 20.0, 14.0, 25.0],  # zero width: dropped
            ]
        ),
        'dropped_boxes': 1,  # from an earlier crop
    }
    out = LocCenterCrop((30, 20))(results)  # (w, h): window x 10..40
    assert out['crop_bbox'] == (10, 10, 40, 30)
    np.testing.assert_array_equal(
        out['gt_bboxes'],
        [[0, 0, 5, 5], [2, 2, 10, 10], [20, 15, 30, 20]],
    )
    assert out['dropped_boxes'] == 1 + 3


def test_center_crop_window_is_mmcv_and_w_h():
    for h, w, size in [(7, 9, (4, 3)), (10, 10, 5), (6, 11, (20, 4))]:
        img = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
        ours = LocCenterCrop(size)({'img_path': 'a', 'img': img.copy()})
        ref = CenterCrop(size)({'img': img.copy()})
        np.testing.assert_array_equal(ours['img'], ref['img'])
        assert ours['img_shape'] == tuple(ref['img_shape'])


def test_random_crop_window_is_mmpretrain_and_h_w():
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8)
    for seed in range(5):
        np.random.seed(seed)
        ref = RandomCrop((20, 30))({'img': img.copy()})
        np.random.seed(seed)
        ours = LocRandomCrop((20, 30))({'img_path': 'a', 'img': img.copy()})
        np.testing.assert_array_equal(ours['img'], ref['img'])
        assert ours['img_shape'] == (20, 30)  # (h, w) as mmpretrain


def test_random_resized_crop_matches_mmpretrain_image():
    img = np.random.default_rng(1).integers(0, 255, (60, 80, 3), np.uint8)
    for seed in range(5):
        np.random.seed(seed)
        ref = RandomResizedCrop((24, 32), backend='pillow')({'img': img})
        np.random.seed(seed)
        ours = LocRandomResizedCrop((24, 32))({'img_path': 'a', 'img': img})
        np.testing.assert_array_equal(ours['img'], ref['img'])
        assert ours['img_shape'] == (24, 32)
        x0, y0, x1, y1 = ours['crop_bbox']
        assert ours['scale_factor'] == (32 / (x1 - x0), 24 / (y1 - y0))


def test_random_resized_crop_boxes_follow_masks():
    """Upscaled rectangle crops: kept boxes within a pixel of the masks."""
    rng = np.random.default_rng(3)
    t = LocRandomResizedCrop(128, crop_ratio_range=(0.2, 1.0))
    for _ in range(40):
        results = scene_results(rng, rectangles=True)
        n = len(results['gt_bboxes'])
        out = t(results)
        assert out['img'].shape[:2] == out['gt_mask'].shape == (128, 128)
        ext = instance_extents(out['gt_mask'], n)
        visible = ext[~np.isnan(ext).any(1)]
        assert len(visible) == len(out['gt_bboxes'])
        assert out['dropped_boxes'] == n - len(visible)
        assert np.abs(out['gt_bboxes'] - visible).max(initial=0) < 1
        assert (out['gt_bboxes'] <= 128).all()


def test_registered_and_padding_refused():
    for cfg in (
        dict(type='LocRandomCrop', crop_size=8),
        dict(type='LocCenterCrop', crop_size=[8, 6]),
        dict(type='LocRandomResizedCrop', scale=8),
    ):
        TRANSFORMS.build(cfg)
    with pytest.raises(ValueError, match='padding'):
        LocRandomCrop(8, padding=2)
    with pytest.raises(ValueError, match='pad_if_needed'):
        LocRandomCrop(8, pad_if_needed=True)


@pytest.mark.parametrize(
    't', [LocRandomCrop(4), LocCenterCrop(4), LocRandomResizedCrop(4)]
)
def test_invalid_input_names_img_path(t):
    with pytest.raises(LocTransformError, match=r"d/x\.png: no 'img'"):
        t({'img_path': 'd/x.png'})
    bad = {
        'img_path': 'd/y.png',
        'img': np.zeros((8, 8, 3), np.uint8),
        'gt_mask': np.zeros((8, 7), np.uint8),
    }
    with pytest.raises(LocTransformError, match=r'd/y\.png: .gt_mask. has'):
        t(bad)
