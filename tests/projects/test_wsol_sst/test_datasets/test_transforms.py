"""SSTTenCropWithLocView and SSTPackMultiViewInputs (``wsol_sst.md`` §6.1,
§11 multi-view inputs, §12 item 12: 11 views in TenCrop order).

The classification views are compared pixel for pixel with torchvision's
``Resize`` + ``ten_crop`` / ``CenterCrop`` on the same PIL image (upstream's
test transforms); the localisation view and its ground truth with the shared
``LocResize`` / ``PackLocInputs`` test pipeline.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from mmengine.dataset import Compose, pseudo_collate
from PIL import Image
from torchvision.transforms import InterpolationMode

from projects.wsol_sst.datasets import (
    SSTPackMultiViewInputs,
    SSTTenCropWithLocView,
)
from projects.wsol_sst.datasets.transforms import short_side_size
from shared.datasets import CUBLoc
from shared.datasets.synthetic import generate
from shared.datasets.transforms import LocResize, PackLocInputs
from shared.datasets.transforms.geometry import LocTransformError
from shared.registry import TRANSFORMS

LOAD = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(type='LoadLocAnnotations'),
]


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 BGR (H, W, 3) image with structure at every scale, so that
    a crop shifted by one pixel or a wrong flip changes the pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    smooth = 127 + 60 * np.sin(xx / 7.0)[..., None] * np.cos(yy / 5.0)[
        ..., None
    ] * np.array([1.0, -0.5, 0.8])
    noise = rng.normal(0, 30, (height, width, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def _results(height: int, width: int, seed: int = 0) -> dict:
    """Pipeline results as LoadImageFromFile + LoadLocAnnotations give."""
    img = _image(height, width, seed)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 5 : height // 2, width // 3 : width - 4] = 1
    return {
        'img': img,
        'img_path': f'synthetic_{seed}.png',
        'img_shape': (height, width),
        'ori_shape': (height, width),
        'gt_label': 3,
        # fractional edges exercise the multiply-then-divide box arithmetic
        'gt_bboxes': np.array(
            [[width / 3, height / 5, width - 4.0, height / 2], [0, 0, 7.3, 9]]
        ),
        'ori_gt_bboxes': np.array([[1.0, 2.0, 3.0, 4.0]]),
        'ori_box_format': 'xywh',
        'gt_mask': mask,
    }


def _rgb_pil(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))


def _as_bgr(pil: Image.Image) -> np.ndarray:
    return np.asarray(pil)[..., ::-1]


# -- SSTTenCropWithLocView ----------------------------------------------------
def test_registered_and_built_from_config():
    tf = TRANSFORMS.build(
        dict(type='SSTTenCropWithLocView', crop_size=48, resize=56)
    )
    assert isinstance(tf, SSTTenCropWithLocView)
    assert (tf.cls_views, tf.num_views) == (10, 11)
    pack = TRANSFORMS.build(dict(type='SSTPackMultiViewInputs'))
    assert isinstance(pack, SSTPackMultiViewInputs)
    assert isinstance(pack, PackLocInputs)
    assert repr(tf) == (
        'SSTTenCropWithLocView(crop_size=48, resize=56, tencrop=True, '
        "cls_views=10, backend='pillow', interpolation='bilinear')"
    )


@pytest.mark.parametrize(
    'size, crop, resize',
    [
        ((150, 190), 224, 256),  # the real setting, upscaling
        # odd margins: the centre origin rounds half to even, so
        # round(4.5) = 4 (not half-up 5) and round(5.5) = 6 (not floor 5)
        ((97, 131), 48, 57),
        ((97, 131), 48, 59),
        ((300, 260), 48, 56),  # downscaling, portrait
    ],
)
def test_ten_views_match_torchvision_ten_crop(size, crop, resize):
    results = _results(*size)
    expected = TF.ten_crop(
        TF.resize(
            _rgb_pil(results['img']),
            [resize, resize],
            interpolation=InterpolationMode.BILINEAR,
        ),
        [crop, crop],
    )
    out = SSTTenCropWithLocView(crop_size=crop, resize=resize)(results)
    views = out['cls_imgs']
    assert len(views) == 10 and out['num_views'] == 11
    for i, (view, ref) in enumerate(zip(views, expected)):
        assert view.shape == (crop, crop, 3), i
        assert view.dtype == np.uint8
        np.testing.assert_array_equal(view, _as_bgr(ref), err_msg=f'view {i}')
    # the order is meaningful: the ten views are pairwise different, and
    # view 5 + k is the mirror of the crop mirrored to view k's side
    flat = {views[i].tobytes() for i in range(10)}
    assert len(flat) == 10
    np.testing.assert_array_equal(views[5], views[1][:, ::-1])
    np.testing.assert_array_equal(views[7], views[3][:, ::-1])


@pytest.mark.parametrize('size', [(100, 129), (129, 100), (64, 64)])
def test_tencrop_false_matches_resize_short_side_and_center_crop(size):
    crop = 48 if size == (64, 64) else 224
    results = _results(*size, seed=1)
    pil = _rgb_pil(results['img'])
    resized = TF.resize(pil, crop, interpolation=InterpolationMode.BILINEAR)
    # 224 * 129 / 100 = 288.96: torchvision truncates, rounding would not
    if size != (64, 64):
        assert max(resized.size) == 288
        assert max(short_side_size(*size, crop)) == 288
    expected = TF.center_crop(resized, [crop, crop])
    out = SSTTenCropWithLocView(crop_size=crop, tencrop=False)(results)
    assert out['num_views'] == 2
    (view,) = out['cls_imgs']
    np.testing.assert_array_equal(view, _as_bgr(expected))


@pytest.mark.parametrize(
    'kwargs', [dict(), dict(tencrop=False), dict(cls_views=0)]
)
def test_localisation_view_equals_loc_resize(kwargs):
    results = _results(83, 117, seed=2)
    reference = LocResize((56, 56))(copy.deepcopy(results))
    out = SSTTenCropWithLocView(crop_size=56, resize=64, **kwargs)(results)
    np.testing.assert_array_equal(out['img'], reference['img'])
    np.testing.assert_array_equal(out['gt_bboxes'], reference['gt_bboxes'])
    assert out['gt_bboxes'].dtype == np.float64
    np.testing.assert_array_equal(out['gt_mask'], reference['gt_mask'])
    assert out['img_shape'] == reference['img_shape'] == (56, 56)
    assert out['scale_factor'] == reference['scale_factor']
    assert out['ori_shape'] == (83, 117)
    np.testing.assert_array_equal(out['ori_gt_bboxes'], [[1, 2, 3, 4]])
    # the classification views leave no geometric history behind, so the
    # metrics still see a resize-only pipeline
    for key in ('flip', 'flip_direction', 'crop_bbox'):
        assert key not in out


@pytest.mark.parametrize(
    'kwargs, num_views',
    [
        (dict(), 11),
        (dict(cls_views=10), 11),
        (dict(tencrop=False), 2),
        (dict(tencrop=False, cls_views=1), 2),
        (dict(cls_views=0), 1),
        (dict(tencrop=False, cls_views=0), 1),
    ],
)
def test_view_counts(kwargs, num_views):
    tf = SSTTenCropWithLocView(crop_size=32, resize=40, **kwargs)
    assert tf.num_views == num_views
    out = tf(_results(50, 70))
    assert out['num_views'] == num_views
    assert len(out['cls_imgs']) == num_views - 1
    assert out['img'].shape == (32, 32, 3)


def test_grayscale_views_keep_two_dims():
    results = _results(40, 50)
    results['img'] = results['img'][..., 0].copy()
    out = SSTTenCropWithLocView(crop_size=24, resize=30)(results)
    assert all(v.shape == (24, 24) for v in out['cls_imgs'])
    packed = SSTPackMultiViewInputs()(out)
    assert packed['inputs'].shape == (11, 1, 24, 24)


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(cls_views=5), r'cls_views=5 with tencrop=True.*10'),
        (dict(tencrop=False, cls_views=10), r'cls_views=10 with tencrop='),
        (dict(crop_size=224, resize=200), r'resize=200 is smaller'),
        (dict(crop_size=0), r'crop_size must be a positive int'),
        (dict(resize=25.5), r'resize must be a positive int'),
        (dict(backend='turbo'), r"backend must be 'pillow' or 'cv2'"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SSTTenCropWithLocView(**kwargs)


def test_missing_image_raises_naming_the_file():
    results = _results(30, 30)
    del results['img']
    with pytest.raises(LocTransformError, match=r"synthetic_0.png: no 'img'"):
        SSTTenCropWithLocView(crop_size=16, resize=20)(results)


# -- SSTPackMultiViewInputs ---------------------------------------------------
@pytest.mark.parametrize('kwargs', [dict(), dict(tencrop=False)])
def test_pack_shapes_order_and_sample(kwargs):
    results = SSTTenCropWithLocView(crop_size=40, resize=48, **kwargs)(
        _results(61, 77)
    )
    num_views = results['num_views']
    reference = PackLocInputs()(copy.deepcopy(results))
    packed = SSTPackMultiViewInputs()(results)
    inputs = packed['inputs']
    assert inputs.shape == (num_views, 3, 40, 40)
    assert inputs.dtype == torch.uint8
    # channels keep the pipeline's (BGR) order, as PackLocInputs' input
    for i, view in enumerate(results['cls_imgs']):
        assert torch.equal(inputs[i], torch.from_numpy(view).permute(2, 0, 1))
    assert torch.equal(inputs[-1], reference['inputs'])
    sample, ref = packed['data_samples'], reference['data_samples']
    assert sample.num_views == num_views
    assert torch.equal(sample.gt_label, ref.gt_label)
    assert torch.equal(sample.gt_bboxes, ref.gt_bboxes)
    assert sample.gt_bboxes.dtype == torch.float32
    assert torch.equal(sample.gt_mask, ref.gt_mask)
    assert set(sample.metainfo) == set(ref.metainfo) | {'num_views'}
    for key in ref.metainfo:
        np.testing.assert_array_equal(sample.metainfo[key], ref.metainfo[key])


def test_pack_single_view_and_custom_meta_keys():
    results = SSTTenCropWithLocView(crop_size=24, cls_views=0)(
        _results(30, 50)
    )
    packed = SSTPackMultiViewInputs(meta_keys=('img_shape',))(results)
    assert packed['inputs'].shape == (1, 3, 24, 24)
    assert packed['data_samples'].metainfo == {
        'img_shape': (24, 24),
        'num_views': 1,
    }


def test_pack_rejects_inconsistent_views():
    pack = SSTPackMultiViewInputs()
    with pytest.raises(LocTransformError, match='put SSTTenCropWithLocView'):
        pack(LocResize(24)(_results(30, 40)))
    results = SSTTenCropWithLocView(crop_size=24, resize=28)(_results(30, 40))
    dropped = dict(results, cls_imgs=results['cls_imgs'][:9])
    with pytest.raises(LocTransformError, match=r'9 classification views'):
        pack(dropped)
    resized = dict(results)
    resized['cls_imgs'] = [*results['cls_imgs'][:9], np.zeros((20, 24, 3))]
    with pytest.raises(LocTransformError, match=r'view 9 is \(3, 20, 24\)'):
        pack(resized)


# -- the test pipeline on the synthetic CUB layout ----------------------------
@pytest.fixture(scope='module')
def cub_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('sst_cub')
    generate('cub', out, 3, 2, 2, size_range=(50, 90), seed=5)
    return out / 'CUB_200_2011'


def test_cub_test_pipeline(cub_root):
    crop, resize = 48, 56
    dataset = CUBLoc(
        data_root=str(cub_root),
        split='test',
        test_mode=True,
        pipeline=[
            *LOAD,
            dict(type='SSTTenCropWithLocView', crop_size=crop, resize=resize),
            dict(type='SSTPackMultiViewInputs'),
        ],
    )
    single_view = Compose(
        [*LOAD, dict(type='LocResize', scale=crop), dict(type='PackLocInputs')]
    )
    assert len(dataset) == 6
    items = [dataset[i] for i in range(len(dataset))]
    for i, item in enumerate(items):
        inputs, sample = item['inputs'], item['data_samples']
        assert inputs.shape == (11, 3, crop, crop)
        assert inputs.dtype == torch.uint8
        assert sample.num_views == 11
        ref = single_view(dict(dataset.get_data_info(i)))
        assert torch.equal(inputs[-1], ref['inputs'])
        ref_sample = ref['data_samples']
        assert torch.equal(sample.gt_bboxes, ref_sample.gt_bboxes)
        assert len(sample.gt_bboxes) == 1
        assert torch.equal(sample.gt_label, ref_sample.gt_label)
        assert sample.img_shape == (crop, crop)
        assert sample.scale_factor == ref_sample.scale_factor
        np.testing.assert_array_equal(
            sample.ori_gt_bboxes, ref_sample.ori_gt_bboxes
        )
        # upstream: PIL decode to RGB, Resize((256, 256)), TenCrop(224)
        pil = Image.open(sample.img_path).convert('RGB')
        tencrop = TF.ten_crop(
            TF.resize(pil, [resize, resize], InterpolationMode.BILINEAR),
            [crop, crop],
        )
        for v, ref_view in enumerate(tencrop):
            rgb = inputs[v].flip(0).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(rgb, np.asarray(ref_view))
    batch = pseudo_collate(items)
    assert torch.stack(batch['inputs']).shape == (6, 11, 3, crop, crop)
