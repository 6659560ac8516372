"""``CAMVisualizationHook`` in a real mmengine ``Runner`` (``evaluation.md``
§8, §10 item 11) on a synthetic CUB set read by ``CUBLoc``."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch import nn

from shared.datasets import CUBLoc
from shared.datasets.synthetic import generate
from shared.evaluation.protocols import preset_boxes, resize_cam
from shared.registry import HOOKS
from shared.visualization import CAMVisualizationHook, overlay_cam

NUM_CLASSES = 2
VAL_PER_CLASS = 3  # 6 test images
FRAME = 32
PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadLocAnnotations'),
    dict(type='LocResize', scale=(FRAME, FRAME)),
    dict(type='PackLocInputs'),
]


class TinyCAM(BaseModel):
    """A 1-conv CAM model obeying the §2.1 output contract."""

    returns_loc_maps = True

    def __init__(self, drop: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, NUM_CLASSES, 3, padding=1)
        self.drop = drop  # output field to leave out (error tests)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(list(inputs)).float() / 255.0
        maps = F.avg_pool2d(self.conv(x), 4)  # (N, C, 8, 8)
        logits = maps.mean(dim=(2, 3))
        if mode == 'loss':
            labels = torch.cat([s.gt_label for s in data_samples])
            return dict(loss=F.cross_entropy(logits, labels))
        if mode == 'tensor':
            return logits
        for sample, cam, score in zip(data_samples, maps, logits.softmax(1)):
            labels = torch.cat(
                [score.argsort(descending=True), sample.gt_label]
            )
            sample.set_pred_score(score)
            if self.drop != 'loc_labels':
                sample.set_field(labels, 'loc_labels')
            if self.drop != 'loc_maps':
                sample.set_field(cam[labels].detach(), 'loc_maps')
        return data_samples


@pytest.fixture(scope='module')
def cub(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('cub')
    generate('cub', out, NUM_CLASSES, 2, VAL_PER_CLASS, size_range=(40, 72),
             seed=5)  # fmt: skip
    return out / 'CUB_200_2011'


def _dataset(root: Path, split: str) -> CUBLoc:
    return CUBLoc(
        data_root=str(root),
        split=split,
        pipeline=copy.deepcopy(PIPELINE),
        test_mode=split == 'test',
    )


def _loader(dataset, shuffle: bool = False) -> dict:
    return dict(
        dataset=dataset,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        batch_size=4,
        num_workers=0,
    )


def _runner(cub: Path, work_dir: Path, hook: dict, **kwargs) -> Runner:
    model = kwargs.pop('model', None) or TinyCAM()
    return Runner(
        model=model,
        work_dir=str(work_dir),
        train_dataloader=_loader(_dataset(cub, 'train'), shuffle=True),
        train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        val_dataloader=_loader(_dataset(cub, 'test')),
        val_cfg=dict(),
        val_evaluator=dict(type='MaxBoxAccMetric', cam_curve_interval=0.01),
        test_dataloader=_loader(_dataset(cub, 'test')),
        test_cfg=dict(),
        test_evaluator=dict(type='MaxBoxAccMetric', cam_curve_interval=0.01),
        custom_hooks=[hook],
        default_hooks=dict(checkpoint=None),
        default_scope='mmpretrain',
        randomness=dict(seed=0),
        **kwargs,
    )


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_registered():
    assert HOOKS.get('CAMVisualizationHook') is CAMVisualizationHook


def test_same_indices_every_epoch(cub, tmp_path):
    hook = dict(type='CAMVisualizationHook', num_images=3, seed=0)
    runner = _runner(cub, tmp_path, hook)
    runner.train()
    root = Path(runner.log_dir) / 'vis_cam'
    assert sorted(p.name for p in root.iterdir()) == ['epoch_1', 'epoch_2']
    chosen = CAMVisualizationHook(num_images=3, seed=0).select_indices(6)
    expected = {f'{i}.jpg' for i in chosen}
    assert len(expected) == 3
    assert _files(root / 'epoch_1') == _files(root / 'epoch_2') == expected
    for name in expected:
        img = cv2.imread(str(root / 'epoch_1' / name))
        assert img is not None and img.shape == (FRAME, FRAME, 3)
    # Rank 0 sent the same images to the visualizer backend, step = epoch.
    vis = Path(runner.log_dir) / 'vis_data' / 'vis_image'
    sent = {f'vis_cam_{i}_{e}.png' for i in chosen for e in (1, 2)}
    assert _files(vis) == sent
    # Boxes use the threshold the last validation logged.
    (cam_hook,) = [h for h in runner.hooks if type(h) is CAMVisualizationHook]
    logged = runner.message_hub.get_scalar('val/wsol/best_threshold@50')
    assert cam_hook.threshold(runner) == logged.current()
    cam_hook.cam_threshold = 0.25
    assert cam_hook.threshold(runner) == 0.25


def test_draw_all_writes_every_sample(cub, tmp_path):
    hook = dict(type='CAMVisualizationHook', num_images=1, draw_all=True)
    runner = _runner(cub, tmp_path, hook)
    runner.train()
    root = Path(runner.log_dir) / 'vis_cam'
    every = {f'{i}.jpg' for i in range(NUM_CLASSES * VAL_PER_CLASS)}
    assert _files(root / 'epoch_1') == _files(root / 'epoch_2') == every
    # A dump of every sample writes files only.
    assert not _files(Path(runner.log_dir) / 'vis_data' / 'vis_image')


def test_test_loop_with_out_dir_and_interval(cub, tmp_path):
    """``tools/test.py --show-dir DIR --interval 2``."""
    out_dir = tmp_path / 'show'
    hook = dict(
        type='CAMVisualizationHook',
        draw_all=True,
        out_dir=str(out_dir),
        interval=2,
    )
    runner = _runner(cub, tmp_path / 'work', hook)
    runner.test()
    assert _files(out_dir) == {'0.jpg', '2.jpg', '4.jpg'}


def test_val_interval_skips_epochs(cub, tmp_path):
    hook = dict(type='CAMVisualizationHook', num_images=2, interval=2)
    runner = _runner(cub, tmp_path, hook)
    runner.train()
    root = Path(runner.log_dir) / 'vis_cam'
    assert sorted(os.listdir(root)) == ['epoch_2']


def test_missing_loc_maps_names_the_sample(cub, tmp_path):
    hook = dict(type='CAMVisualizationHook', draw_all=True)
    runner = _runner(cub, tmp_path, hook, model=TinyCAM(drop='loc_maps'))
    runner.test_evaluator.metrics.clear()  # only the hook reads the maps
    match = (
        r"CAMVisualizationHook: the output has no 'loc_maps'.*"
        r"sample_idx=0.*img_path='.*\.jpg'"
    )
    with pytest.raises(ValueError, match=match):
        runner.test()


def _sample(cub: Path, index: int = 0) -> DataSample:
    dataset = _dataset(cub, 'test')
    data = dataset[index]
    sample = data['data_samples']
    gt = int(sample.gt_label[0])
    other = (gt + 1) % NUM_CLASSES
    y, x = np.mgrid[0:8, 0:8]
    peak = np.exp(-((x - 3.0) ** 2 + (y - 4.0) ** 2) / 4.0)
    maps = np.stack([np.flipud(peak), peak]).astype(np.float32)
    sample.set_field(torch.from_numpy(maps), 'loc_maps')
    sample.set_field(torch.tensor([other, gt]), 'loc_labels')
    return sample


def test_draw_uses_the_metric_code(cub):
    sample = _sample(cub)
    hook = CAMVisualizationHook(preset='wsoleval')
    out = hook.draw(sample, 0.5)
    # The GT-class map is column 1; image re-read and resized to img_shape.
    cam = resize_cam(sample.loc_maps[1].numpy(), (FRAME, FRAME), 'wsoleval')
    image = cv2.resize(cv2.imread(sample.img_path), (FRAME, FRAME))
    pred = preset_boxes(cam, 0.5, 'wsoleval')
    gt = sample.gt_bboxes.numpy()
    from shared.evaluation.wsol import box_iou

    text = f'IoU {100 * box_iou(pred, np.floor(gt)).max():.1f}'
    expected = overlay_cam(
        image, cam, pred, gt, text=text, preset='wsoleval'
    )  # fmt: skip
    np.testing.assert_array_equal(out, expected)
    # target='pred' draws column 0 (a different map); no threshold: no box.
    pred_out = CAMVisualizationHook(target='pred').draw(sample, None)
    cam0 = resize_cam(sample.loc_maps[0].numpy(), (FRAME, FRAME), 'wsoleval')
    np.testing.assert_array_equal(
        pred_out, overlay_cam(image, cam0, None, gt, preset='wsoleval')
    )
    no_gt = CAMVisualizationHook(draw_gt=False).draw(sample, None)
    np.testing.assert_array_equal(
        no_gt, overlay_cam(image, cam, preset='wsoleval')
    )


def test_draw_accepts_dict_outputs(cub):
    sample = _sample(cub)
    hook = CAMVisualizationHook()
    np.testing.assert_array_equal(
        hook.draw(sample.to_dict(), 0.3), hook.draw(sample, 0.3)
    )


def test_draw_errors_name_the_sample(cub):
    hook = CAMVisualizationHook()
    sample = _sample(cub)
    sample.set_field(torch.tensor([0, 0]) + 7, 'loc_labels')
    with pytest.raises(ValueError, match=r'class \d is absent.*sample_idx=0'):
        hook.draw(sample, None)
    sample = _sample(cub)
    sample.set_field(torch.tensor([1]), 'loc_labels')
    with pytest.raises(ValueError, match=r'\(K, h, w\).*img_path='):
        hook.draw(sample, None)
    sample = _sample(cub)
    del sample.loc_labels
    with pytest.raises(ValueError, match=r"no 'loc_labels'.*sample_idx=0"):
        hook.draw(sample, None)


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(interval=0), 'interval'),
        (dict(num_images=-1), 'num_images'),
        (dict(preset='gradcam'), 'preset'),
        (dict(cam_threshold=1.5), 'cam_threshold'),
        (dict(target='top5'), 'target'),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CAMVisualizationHook(**kwargs)


def test_selection_is_seeded_and_bounded():
    a = CAMVisualizationHook(num_images=4, seed=1).select_indices(50)
    b = CAMVisualizationHook(num_images=4, seed=1).select_indices(50)
    c = CAMVisualizationHook(num_images=4, seed=2).select_indices(50)
    assert a == b and len(a) == 4 and a != c
    assert all(0 <= i < 50 for i in a)
    every = CAMVisualizationHook(num_images=10).select_indices(3)
    assert every == {0, 1, 2}
