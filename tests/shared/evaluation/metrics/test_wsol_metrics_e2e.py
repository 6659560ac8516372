"""WSOL metrics on the real CUBLoc test pipeline with the generator's
oracle maps (``evaluation.md`` §10 items 4 and 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose

from shared.datasets import CUBLoc
from shared.datasets.synthetic import generate
from shared.evaluation.metrics import (
    LocAccuracyMetric,
    MaxBoxAccMetric,
    PxAPMetric,
)

NUM_CLASSES = 3
FRAME = 64
PIPELINE = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(type='LoadLocAnnotations'),
    dict(type='LocResize', scale=(FRAME, FRAME)),
    dict(type='PackLocInputs'),
]


@pytest.fixture(scope='module')
def cub(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('cub')
    generate('cub', out, NUM_CLASSES, 2, 4, size_range=(60, 110), seed=3,
             write_oracle_maps=True)  # fmt: skip
    return out


def _outputs(cub: Path, flip_labels: bool = False) -> tuple[list, int]:
    """Test-pipeline samples with oracle ``loc_maps`` at native size."""
    dataset = CUBLoc(
        data_root=str(cub / 'CUB_200_2011'),
        split='test',
        pipeline=[],
        test_mode=True,
    )
    pipeline = Compose(PIPELINE)
    outputs = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        sample = pipeline(dict(info))['data_samples']
        rel = Path(info['img_path']).relative_to(
            cub / 'CUB_200_2011' / 'images'
        )
        oracle = np.load(cub / 'oracle_maps' / 'cub' / f'{rel}.npy')
        gt = int(sample.gt_label[0])
        wrong = (gt + 1) % NUM_CLASSES
        top = [wrong, gt] if flip_labels else [gt, wrong]
        labels = torch.tensor([*top, (gt + 2) % NUM_CLASSES, gt])
        score = torch.full((NUM_CLASSES,), 0.1)
        score[top[0]] = 0.8
        sample.set_field(score, 'pred_score')
        sample.set_field(torch.from_numpy(np.stack([oracle] * 4)), 'loc_maps')
        sample.set_field(labels, 'loc_labels')
        outputs.append(sample.to_dict())
    return outputs, len(dataset)


def _evaluate(metric, outputs, size):
    metric.dataset_meta = dict(classes=tuple('abc'))
    metric.process(None, outputs)
    return metric.evaluate(size)


def test_oracle_maps_score_100(cub):
    outputs, size = _outputs(cub)
    assert size == NUM_CLASSES * 4
    box = _evaluate(MaxBoxAccMetric(), outputs, size)
    assert box['wsol/MaxBoxAccV2'] == 100.0
    assert box['wsol/MaxBoxAccV1'] == 100.0
    loc = _evaluate(LocAccuracyMetric(cam_threshold=0.5), outputs, size)
    assert loc['loc/top1_loc'] == loc['loc/gt_known_loc'] == 100.0
    assert loc['loc/top1_right'] == 100.0
    spa = _evaluate(
        LocAccuracyMetric(preset='spa', cam_threshold=[0.3, 0.5]),
        outputs,
        size,
    )
    assert spa['loc/top1_loc'] == 100.0


def test_wrong_top1_class(cub):
    outputs, size = _outputs(cub, flip_labels=True)
    loc = _evaluate(LocAccuracyMetric(cam_threshold=0.5), outputs, size)
    assert loc['loc/top1_cls'] == loc['loc/top1_loc'] == 0.0
    assert loc['loc/top5_loc'] == loc['loc/gt_known_loc'] == 100.0
    assert loc['loc/top1_cls_wrong'] == 100.0
    box = _evaluate(MaxBoxAccMetric(require_correct_class=True), outputs, size)
    assert box['wsol/MaxBoxAccV2'] == 100.0
    assert box['wsol/Top1MaxBoxAccV2'] == 0.0


def test_pxap_needs_masks_from_the_dataset(cub):
    outputs, size = _outputs(cub)
    with pytest.raises(ValueError, match="no 'gt_mask'.*img_path="):
        _evaluate(PxAPMetric(), outputs, size)
