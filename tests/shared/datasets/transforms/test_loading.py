"""LoadLocAnnotations (masks, box policy) and faithful image decoding."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from PIL import Image

from shared.datasets.base import DatasetSampleError
from shared.datasets.synthetic.draw import render_scene
from shared.datasets.transforms import LoadLocAnnotations, LocResize
from shared.datasets.transforms.geometry import LocTransformError
from shared.registry import TRANSFORMS

H, W = 6, 8


def _png(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return str(path)


@pytest.fixture
def masks(tmp_path):
    """Two overlapping instances with soft values and an ignore box."""
    a = np.zeros((H, W), np.uint8)
    a[1:4, 1:4] = 200
    a[1, 1] = 100  # foreground at threshold 0, not at 128
    b = np.zeros((H, W), np.uint8)
    b[3:5, 3:6] = 255
    ignore = np.zeros((H, W), np.uint8)
    ignore[0:6, 4:8] = 1  # overlaps instance b: foreground wins
    return {
        'img_path': str(tmp_path / 'img.jpg'),
        'img': np.zeros((H, W, 3), np.uint8),
        'mask_paths': [
            _png(tmp_path / 'img_ma.png', a),
            _png(tmp_path / 'img_mb.png', b),
        ],
        'mask_refs': ['loc.txt:3', 'loc.txt:4'],
        'ignore_path': _png(tmp_path / 'img_ignore.png', ignore),
        'arrays': (a, b, ignore),
    }


def _expected(a, b, ignore, thr):
    fg = (a > thr) | (b > thr)
    out = fg.astype(np.uint8)
    out[(ignore > 0) & ~fg] = 255
    return out


def test_union_threshold_and_ignore(masks):
    a, b, ignore = masks.pop('arrays')
    out = LoadLocAnnotations()(copy.deepcopy(masks))
    expected = _expected(a, b, ignore, 0)
    np.testing.assert_array_equal(out['gt_mask'], expected)
    assert out['gt_mask'].dtype == np.uint8
    assert set(np.unique(out['gt_mask'])) == {0, 1, 255}
    assert out['gt_mask'][1, 1] == 1
    assert out['gt_mask'][4, 4] == 1  # instance b inside the ignore box
    assert out['gt_mask'][0, 6] == 255
    assert 'ori_gt_mask' not in out
    # Dataset-provided threshold (SPA/WGOL protocol uses 128) ...
    out = LoadLocAnnotations()({**copy.deepcopy(masks), 'mask_threshold': 128})
    np.testing.assert_array_equal(out['gt_mask'], _expected(a, b, ignore, 128))
    assert out['gt_mask'][1, 1] == 0
    # ... and the transform argument overrides it.
    out = LoadLocAnnotations(mask_threshold=0)(
        {**copy.deepcopy(masks), 'mask_threshold': 128}
    )
    np.testing.assert_array_equal(out['gt_mask'], expected)


def test_no_ignore_png_and_no_masks(masks):
    a, b, _ = masks.pop('arrays')
    out = LoadLocAnnotations()({**masks, 'ignore_path': None})
    np.testing.assert_array_equal(
        out['gt_mask'], ((a > 0) | (b > 0)).astype(np.uint8)
    )
    out = LoadLocAnnotations()({'img_path': 'x', 'img': masks['img']})
    assert 'gt_mask' not in out
    out = LoadLocAnnotations(with_mask=False)(copy.deepcopy(masks))
    assert 'gt_mask' not in out


def test_keep_original_mask_survives_resize(masks):
    masks.pop('arrays')
    out = LoadLocAnnotations(keep_original_mask=True)(masks)
    original = out['gt_mask'].copy()
    out = LocResize((16, 12))(out)
    assert out['gt_mask'].shape == (12, 16)
    np.testing.assert_array_equal(out['ori_gt_mask'], original)


def test_missing_and_undecodable_png(masks, tmp_path):
    masks.pop('arrays')
    missing = str(tmp_path / 'gone.png')
    bad = {**masks, 'mask_paths': [masks['mask_paths'][0], missing]}
    with pytest.raises(DatasetSampleError) as err:
        LoadLocAnnotations()(bad)
    assert 'loc.txt:4' in str(err.value) and missing in str(err.value)
    garbage = tmp_path / 'garbage.png'
    garbage.write_bytes(b'not a png at all')
    bad = {**masks, 'mask_paths': [str(garbage), masks['mask_paths'][1]]}
    with pytest.raises(DatasetSampleError, match='cannot decode') as err:
        LoadLocAnnotations()(bad)
    assert 'loc.txt:3' in str(err.value) and str(garbage) in str(err.value)
    bad = {**masks, 'ignore_path': missing}
    with pytest.raises(DatasetSampleError, match='loc.txt:3') as err:
        LoadLocAnnotations()(bad)
    assert missing in str(err.value)


def test_mask_size_mismatch(masks, tmp_path):
    masks.pop('arrays')
    small = np.zeros((3, 4), np.uint8)
    small[0, 1] = small[2, 3] = 255
    png = _png(tmp_path / 'small.png', small)
    bad = {**masks, 'mask_paths': [masks['mask_paths'][0], png]}
    with pytest.raises(DatasetSampleError, match='4x3') as err:
        LoadLocAnnotations()(copy.deepcopy(bad))
    assert 'loc.txt:4' in str(err.value) and png in str(err.value)
    only = {**bad, 'mask_paths': [png], 'mask_refs': ['loc.txt:9']}
    only['ignore_path'] = None
    out = LoadLocAnnotations()({**only, 'allow_mask_size_mismatch': True})
    resized = cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(out['gt_mask'], (resized > 0).astype(int))


def _box_results(boxes, **extra):
    return {
        'img_path': 'imgs/bird.jpg',
        'img': np.zeros((H, W, 3), np.uint8),
        'gt_bboxes': np.array(boxes, dtype=np.float64),
        'ori_gt_bboxes': np.array(boxes, dtype=np.float64),
        'ann_ref': [f'boxes.txt:{i + 7}' for i in range(len(boxes))],
        **extra,
    }


def test_boxes_inside_pass_unchanged():
    results = _box_results([[0, 0, W, H], [1.5, 2, 3, 4.25]])
    out = LoadLocAnnotations()(results)
    np.testing.assert_array_equal(
        out['gt_bboxes'], [[0, 0, 8, 6], [1.5, 2, 3, 4.25]]
    )
    assert out['gt_bboxes'].dtype == np.float64
    assert 'clipped_boxes' not in out


@pytest.mark.parametrize('policy', [None, 'error', 'skip'])
def test_box_outside_raises_with_ann_ref(policy):
    extra = {} if policy is None else {'box_out_of_bounds': policy}
    results = _box_results([[0, 0, 4, 4], [2, 1, W + 0.5, 5]], **extra)
    with pytest.raises(DatasetSampleError) as err:
        LoadLocAnnotations()(results)
    message = str(err.value)
    assert message.startswith('boxes.txt:8: ')
    assert 'imgs/bird.jpg' in message and '8x6' in message


def test_box_outside_clipped_and_counted():
    boxes = [[-1, 0, 4, 4], [2, 1, W + 0.5, H + 2], [1, 1, 2, 2]]
    results = _box_results(boxes, box_out_of_bounds='clip')
    out = LoadLocAnnotations()(results)
    np.testing.assert_array_equal(
        out['gt_bboxes'], [[0, 0, 4, 4], [2, 1, W, H], [1, 1, 2, 2]]
    )
    assert out['clipped_boxes'] == 2
    np.testing.assert_array_equal(out['ori_gt_bboxes'], boxes)


def test_stated_size_must_match_decoded():
    results = _box_results([[0, 0, 1, 1]], ann_img_shape=(H, W + 1))
    with pytest.raises(DatasetSampleError, match='boxes.txt:7') as err:
        LoadLocAnnotations()(results)
    assert '9x6' in str(err.value) and 'imgs/bird.jpg' in str(err.value)


def test_missing_img_names_img_path():
    with pytest.raises(LocTransformError, match=r"imgs/bird\.jpg: no 'img'"):
        LoadLocAnnotations()({'img_path': 'imgs/bird.jpg'})


def test_pipeline_from_files_matches_generator(tmp_path):
    """Decoded scene + instance pngs: gt_mask is the generator's union."""
    scene = render_scene(np.random.default_rng(4), 50, 70, [3, 9])
    img_path = tmp_path / 'scene.png'
    cv2.imwrite(str(img_path), scene.img)
    pngs = [
        _png(tmp_path / f'scene_m{i}.png', m * 255)
        for i, m in enumerate(scene.masks)
    ]
    pipeline = [
        TRANSFORMS.build(
            dict(
                type='LoadImageFromFile',
                imdecode_backend='pillow',
                color_type='color_ignore_orientation',
            )
        ),
        TRANSFORMS.build(dict(type='LoadLocAnnotations')),
    ]
    results = {
        'img_path': str(img_path),
        'gt_bboxes': scene.boxes.copy(),
        'mask_paths': pngs,
        'mask_refs': [f'loc.txt:{i + 1}' for i in range(len(pngs))],
        'ignore_path': None,
    }
    for t in pipeline:
        results = t(results)
    np.testing.assert_array_equal(results['img'], scene.img)
    np.testing.assert_array_equal(results['gt_mask'], scene.union_mask())
    np.testing.assert_array_equal(results['gt_bboxes'], scene.boxes)


# -- LoadImageFromFile fidelity (datasets.md §2.2) ------------------------
FAITHFUL = dict(
    imdecode_backend='pillow', color_type='color_ignore_orientation'
)


def _load(path, **kwargs):
    return LoadImageFromFile(**kwargs)({'img_path': str(path)})['img']


def _pil_rgb_as_bgr(path):
    with Image.open(path) as img:
        return np.asarray(img.convert('RGB'))[:, :, ::-1]


@pytest.mark.parametrize(
    'mode, ext', [('L', 'jpg'), ('P', 'png'), ('CMYK', 'jpg')]
)
def test_decoding_makes_three_channels_like_pil(tmp_path, mode, ext):
    rng = np.random.default_rng(6)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 16, 3), np.uint8))
    if mode == 'P':
        img = rgb.quantize(colors=8)
    else:
        img = rgb.convert(mode)
    path = tmp_path / f'img_{mode}.{ext}'
    img.save(path)
    with Image.open(path) as check:
        assert check.mode == mode
    out = _load(path, **FAITHFUL)
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, _pil_rgb_as_bgr(path))
    if mode == 'L':
        assert (out[..., 0] == out[..., 1]).all()
        assert (out[..., 1] == out[..., 2]).all()


def test_decoding_ignores_exif_orientation(tmp_path):
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 255, (10, 24, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path = tmp_path / 'rotated.jpg'
    img.save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as check:
        assert check.getexif()[0x0112] == 6
    out = _load(path, **FAITHFUL)
    assert out.shape == (10, 24, 3)  # stored orientation, as PIL's convert
    np.testing.assert_array_equal(out, _pil_rgb_as_bgr(path))
    # The default color_type would apply it (so the test can tell).
    assert _load(path, imdecode_backend='pillow').shape == (24, 10, 3)
