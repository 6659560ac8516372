"""LocResize: boxes follow the nearest-resized masks, exact arithmetic."""

from __future__ import annotations

import cv2
import mmcv
import numpy as np
import pytest
from PIL import Image

from shared.datasets.transforms import LocResize
from shared.datasets.transforms.geometry import LocTransformError
from shared.registry import TRANSFORMS

from .scenes import instance_extents, scene_results


def test_image_matches_mmcv_and_scale_is_w_h():
    rng = np.random.default_rng(1)
    results = scene_results(rng)
    img = results['img'].copy()
    out = LocResize(scale=(40, 30))(results)  # (w, h) as mmcv Resize
    assert out['img'].shape == (30, 40, 3)
    assert out['img_shape'] == (30, 40)
    expected = mmcv.imresize(img, (40, 30), backend='pillow')
    np.testing.assert_array_equal(out['img'], expected)
    assert out['gt_mask'].shape == (30, 40)
    assert out['gt_bboxes'].dtype == np.float64


@pytest.mark.parametrize('rectangles', [False, True])
def test_boxes_follow_resized_masks(rectangles):
    """Every resized box brackets the nearest-resized mask of its instance.

    cv2 nearest keeps source pixel floor(x' * old / new), so the extent of
    an instance is contained in [x0', ceil(x1')) and, when every source
    pixel is sampled (upscaling) or the mask is a rectangle, it lies within
    one pixel of the box.
    """
    rng = np.random.default_rng(2 + rectangles)
    checked = 0
    for _ in range(60):
        results = scene_results(rng, rectangles=rectangles)
        old_h, old_w = results['img_shape']
        new_w, new_h = (int(v) for v in rng.integers(20, 200, 2))
        out = LocResize((new_w, new_h))(results)
        boxes = out['gt_bboxes']
        ext = instance_extents(out['gt_mask'], len(boxes))
        upscale = new_w >= old_w and new_h >= old_h
        for box, e in zip(boxes, ext):
            if np.isnan(e).any():  # a sliver lost by a strong downscale
                assert not (upscale or rectangles)
                continue
            assert (e[:2] >= box[:2]).all()
            assert (e[2:] < box[2:] + 1).all()
            if upscale or rectangles:
                assert np.abs(e - box).max() < 1
                checked += 1
    assert checked > 50


def test_multiply_then_divide():
    """A box edge where the two orders truncate to different integers."""
    old_w, new_w, x = 112, 224, 61.0
    assert int(x * new_w / old_w) == 122
    assert int(x / old_w * new_w) == 121  # 121.99999999999999
    results = {
        'img_path': 'crafted.png',
        'img': np.zeros((10, old_w, 3), np.uint8),
        'gt_bboxes': np.array([[x, 0.0, x + 1.0, 10.0]]),
    }
    out = LocResize((new_w, 10))(results)
    assert out['gt_bboxes'][0, 0] == 122.0
    assert int(out['gt_bboxes'][0, 0]) == 122
    assert out['gt_bboxes'][0, 2] == (x + 1.0) * new_w / old_w


def test_mask_uses_cv2_nearest_not_pil():
    """A 1x4 -> 1x2 mask: cv2 samples columns 0, 2; PIL 1, 3."""
    mask = np.array([[1, 0, 255, 0]], np.uint8)
    cv2_out = cv2.resize(mask, (2, 1), interpolation=cv2.INTER_NEAREST)
    pil_out = np.asarray(Image.fromarray(mask).resize((2, 1), Image.NEAREST))
    mmcv_pil = mmcv.imresize(
        mask, (2, 1), interpolation='nearest', backend='pillow'
    )
    np.testing.assert_array_equal(cv2_out, [[1, 255]])
    np.testing.assert_array_equal(pil_out, [[0, 0]])
    np.testing.assert_array_equal(mmcv_pil, pil_out)
    results = {
        'img_path': 'crafted.png',
        'img': np.zeros((1, 4, 3), np.uint8),
        'gt_mask': mask,
    }
    out = LocResize((2, 1), backend='pillow')(results)
    np.testing.assert_array_equal(out['gt_mask'], cv2_out)


def test_scale_factor_is_product_and_keep_ratio():
    results = {
        'img_path': 'a.png',
        'img': np.zeros((50, 100, 3), np.uint8),
        'gt_bboxes': np.array([[10.0, 5.0, 90.0, 45.0]]),
    }
    out = LocResize((200, 25))(results)
    assert out['scale_factor'] == (2.0, 0.5)
    out = LocResize((100, 100))(out)
    assert out['scale_factor'] == pytest.approx((1.0, 2.0))
    np.testing.assert_allclose(out['gt_bboxes'], [[10, 10, 90, 90]])
    # keep_ratio: as large as possible within (long, short) = (60, 60)
    results = {'img_path': 'b.png', 'img': np.zeros((50, 100, 3), np.uint8)}
    out = LocResize(60, keep_ratio=True)(results)
    assert out['img_shape'] == (30, 60)
    assert out['scale_factor'] == (0.6, 0.6)


def test_ori_fields_untouched():
    rng = np.random.default_rng(5)
    results = scene_results(rng)
    ori = results['ori_gt_bboxes'].copy()
    results['ori_gt_mask'] = results['gt_mask'].copy()
    ori_mask = results['ori_gt_mask'].copy()
    out = LocResize(33)(results)
    np.testing.assert_array_equal(out['ori_gt_bboxes'], ori)
    np.testing.assert_array_equal(out['ori_gt_mask'], ori_mask)
    assert out['ori_shape'] == ori_mask.shape


def test_registered_and_built():
    t = TRANSFORMS.build(dict(type='LocResize', scale=(8, 4)))
    assert isinstance(t, LocResize)
    assert t.scale == (8, 4)


@pytest.mark.parametrize(
    'results, match',
    [
        ({'img_path': 'x/no_img.jpg'}, r"x/no_img\.jpg: no 'img'"),
        (
            {
                'img_path': 'x/bad_mask.jpg',
                'img': np.zeros((4, 6, 3), np.uint8),
                'gt_mask': np.zeros((6, 4), np.uint8),
            },
            r"x/bad_mask\.jpg: 'gt_mask' has shape \(6, 4\)",
        ),
        (
            {
                'img_path': 'x/bad_box.jpg',
                'img': np.zeros((4, 6, 3), np.uint8),
                'gt_bboxes': np.zeros((2, 5)),
            },
            r"x/bad_box\.jpg: 'gt_bboxes' must have shape \(N, 4\)",
        ),
    ],
)
def test_invalid_input_names_img_path(results, match):
    with pytest.raises(LocTransformError, match=match):
        LocResize(8)(results)
