"""PackLocInputs: the fields of datasets.md §3.2, end to end from a file."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmpretrain.structures import DataSample

from shared.datasets.parsing import parse_float, read_lines, split_line
from shared.datasets.transforms import PackLocInputs
from shared.datasets.transforms.geometry import LocTransformError
from shared.registry import TRANSFORMS

META = {
    'ori_shape',
    'img_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'crop_bbox',
    'ori_gt_bboxes',
    'ori_box_format',
    'ann_ref',
    'img_path',
    'sample_idx',
    'img_id',
    'ori_gt_mask',
    'dropped_boxes',
}


def test_end_to_end_fields_and_raw_boxes(tmp_path):
    """A CUB-style box line goes through a train pipeline unchanged in
    ``ori_gt_bboxes`` while ``gt_bboxes`` follows the image."""
    ann = tmp_path / 'bounding_boxes.txt'
    ann.write_text('1 10.3 7.75 30.1 20.0\n')
    ((line_no, line),) = read_lines(ann)
    tokens = split_line(ann, line_no, line, num=5)
    x, y, w, h = (parse_float(t, ann, line_no, line) for t in tokens[1:])
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'bird.png'), img)
    mask_png = np.zeros((40, 60), np.uint8)
    mask_png[8:28, 10:40] = 255
    cv2.imwrite(str(tmp_path / 'bird_m.png'), mask_png)
    info = {
        'img_path': str(tmp_path / 'bird.png'),
        'img_id': 1,
        'sample_idx': 0,
        'gt_label': 4,
        'gt_bboxes': np.array([[x, y, x + w, y + h]]),
        'ori_gt_bboxes': np.array([[x, y, w, h]]),
        'ori_box_format': 'xywh',
        'ann_ref': [f'{ann}:{line_no}'],
        'mask_paths': [str(tmp_path / 'bird_m.png')],
        'mask_refs': ['localization.txt:1'],
        'ignore_path': None,
        'box_out_of_bounds': 'error',
    }
    pipeline = Compose(
        [
            dict(
                type='LoadImageFromFile',
                imdecode_backend='pillow',
                color_type='color_ignore_orientation',
            ),
            dict(type='LoadLocAnnotations', keep_original_mask=True),
            dict(type='LocResize', scale=(64, 64)),
            dict(type='LocRandomCrop', crop_size=56),
            dict(type='LocRandomFlip', prob=0.5),
            dict(type='PackLocInputs'),
        ]
    )
    flips = set()
    for seed in range(6):
        np.random.seed(seed)
        packed = pipeline(copy.deepcopy(info))
        inputs, sample = packed['inputs'], packed['data_samples']
        assert isinstance(sample, DataSample)
        assert inputs.shape == (3, 56, 56) and inputs.dtype == torch.uint8
        assert set(sample.keys()) == {'gt_label', 'gt_bboxes', 'gt_mask'}
        assert set(sample.metainfo_keys()) == META
        assert sample.gt_label.dtype == torch.long
        assert sample.gt_label.tolist() == [4]
        assert sample.gt_bboxes.dtype == torch.float32
        assert sample.gt_bboxes.shape == (1, 4)
        assert sample.gt_mask.dtype == torch.uint8
        assert sample.gt_mask.shape == (56, 56)
        assert sample.ori_gt_mask.shape == (40, 60)
        assert sample.ori_gt_mask.dtype == np.uint8
        # Raw numbers exactly as written in the file, float64.
        assert sample.ori_gt_bboxes.dtype == np.float64
        assert sample.ori_gt_bboxes.tolist() == [[10.3, 7.75, 30.1, 20.0]]
        assert sample.ori_box_format == 'xywh'
        assert sample.ann_ref == [f'{ann}:1']
        assert sample.ori_shape == (40, 60)
        assert sample.img_shape == (56, 56)
        assert sample.scale_factor == (64 / 60, 64 / 40)
        assert sample.dropped_boxes == 0
        assert isinstance(sample.flip, bool)
        # The current-frame box follows the image: undo flip, crop and resize.
        box = sample.gt_bboxes.double().numpy()[0]
        if sample.flip:
            box = np.array([56 - box[2], box[1], 56 - box[0], box[3]])
        x0, y0 = sample.crop_bbox[:2]
        box = box + [x0, y0, x0, y0]
        expected = np.array([x, y, x + w, y + h]) * np.tile(
            [64 / 60, 64 / 40], 2
        )
        np.testing.assert_allclose(box, expected, rtol=1e-6)
        flips.add(sample.flip)
    assert flips == {True, False}


def _results(**extra):
    return {
        'img_path': 'p.png',
        'img': np.zeros((5, 7, 3), np.uint8),
        'ori_shape': (5, 7),
        'img_shape': (5, 7),
        **extra,
    }


def test_multilabel_and_difficult():
    packed = PackLocInputs()(
        _results(gt_label=[0, 2, 5], gt_label_difficult=[3])
    )
    sample = packed['data_samples']
    assert sample.gt_label.dtype == torch.long
    assert sample.gt_label.tolist() == [0, 2, 5]
    assert sample.gt_label_difficult == [3]
    empty = PackLocInputs()(_results(gt_label=[]))['data_samples']
    assert empty.gt_label.dtype == torch.long
    assert empty.gt_label.shape == (0,)


def test_boxes_present_only_when_given():
    sample = PackLocInputs()(_results(gt_bboxes=np.zeros((0, 4))))[
        'data_samples'
    ]
    assert sample.gt_bboxes.shape == (0, 4)
    assert sample.gt_bboxes.dtype == torch.float32
    sample = PackLocInputs()(_results(gt_bboxes=[]))['data_samples']
    assert sample.gt_bboxes.shape == (0, 4)
    sample = PackLocInputs()(_results())['data_samples']
    assert 'gt_bboxes' not in sample and 'gt_mask' not in sample


def test_degenerate_boxes_are_removed_and_counted():
    boxes = np.array([[1, 2, 5, 6], [3, 1, 3, 4], [0, 2, 4, 2.0]])
    sample = PackLocInputs()(_results(gt_bboxes=boxes, dropped_boxes=1))[
        'data_samples'
    ]
    assert sample.gt_bboxes.tolist() == [[1, 2, 5, 6]]
    assert sample.dropped_boxes == 3  # one earlier, two zero-area here


def test_mask_tensor_contiguous_from_view():
    mask = np.zeros((5, 14), np.uint8)[:, ::2]  # non-contiguous view
    mask[1, 2] = 255
    sample = PackLocInputs()(_results(gt_mask=mask))['data_samples']
    assert sample.gt_mask.dtype == torch.uint8
    assert sample.gt_mask.shape == (5, 7)
    assert sample.gt_mask[1, 2] == 255


def test_invalid_input_names_img_path():
    with pytest.raises(LocTransformError, match=r"p\.png: 'gt_mask' has"):
        PackLocInputs()(_results(gt_mask=np.zeros((7, 5), np.uint8)))
    with pytest.raises(LocTransformError, match=r"p\.png: no 'img'"):
        PackLocInputs()({'img_path': 'p.png'})


def test_registered():
    t = TRANSFORMS.build(dict(type='PackLocInputs', meta_keys=('img_path',)))
    assert isinstance(t, PackLocInputs)
    sample = t(_results(crop_bbox=(0, 0, 1, 1)))['data_samples']
    assert set(sample.metainfo_keys()) == {'img_path'}
