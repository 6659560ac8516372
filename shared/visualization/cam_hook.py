"""``CAMVisualizationHook``: CAM overlays during validation and test.

See ``evaluation.md`` §8. The hook draws the ground-truth-class map of the
model contract (§2.1) with the metrics' own resize, normalisation and box
code (:func:`~shared.evaluation.protocols.resize_cam`,
:func:`~shared.evaluation.protocols.preset_boxes`).
"""

from __future__ import annotations

import os
import os.path as osp
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from mmengine.hooks import Hook

from shared.evaluation.protocols import PRESETS, preset_boxes, resize_cam
from shared.evaluation.wsol import box_iou
from shared.registry import HOOKS

from .overlay import overlay_cam, read_frame_image

__all__ = ['CAMVisualizationHook']

TARGETS = ('gt', 'pred')


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _get(sample, key: str):
    """A field of a DataSample (data or metainfo) or of a dict."""
    return sample.get(key, None)


@HOOKS.register_module()
class CAMVisualizationHook(Hook):
    """Draw CAM overlays of a fixed set of validation (or test) samples.

    ``num_images`` dataset indices are chosen once per loop
    (``np.random.default_rng(seed)``, without replacement, from the length
    of the validation or test dataset), so every epoch shows the same
    images. In ``after_val_iter`` / ``after_test_iter`` an output whose
    ``sample_idx`` is selected is drawn; nothing is computed for the
    others. With ``draw_all=True`` every sample is drawn (``tools/test.py
    --show-dir``).

    Drawing one sample: the map of ``map_key`` for the target class
    (``target='gt'``: the first entry of ``label_key`` equal to the first
    GT label; ``'pred'``: column 0, the top-1 prediction) is resized to
    the sample's ``img_shape`` with :func:`resize_cam` under ``preset``;
    the image is re-read from ``img_path`` (``cv2.imread``, mirrored when
    the sample is horizontally flipped) and resized to ``img_shape``, the
    frame of the map and of ``gt_bboxes``. The predicted box comes from
    :func:`preset_boxes` at ``cam_threshold``, else at the last logged
    ``val/wsol/best_threshold@50`` of the message hub, else none is drawn
    (heat map only). GT boxes (``gt_bboxes``) are drawn with ``draw_gt``;
    with both, the text is the IoU x 100 of the predicted box (max over
    GT boxes, :func:`box_iou`).

    Files: ``{log_dir}/vis_cam/epoch_{e}/{sample_idx}.jpg`` in validation
    (``log_dir`` = ``{work_dir}/{timestamp}``, ``e`` = ``runner.epoch``,
    0 outside training) and ``{log_dir}/vis_cam/test/{sample_idx}.jpg`` in
    test; with ``out_dir`` the files go to ``{out_dir}/epoch_{e}/`` and
    ``{out_dir}/`` instead. Each rank writes what it sees. Rank 0 also
    sends the images (RGB) to the visualizer backends as
    ``vis_cam_{sample_idx}`` (test: ``vis_cam_test_{sample_idx}``; no
    ``/``, which mmengine's ``LocalVisBackend`` cannot save) with
    ``step=e``, except with ``draw_all``, a dump of every sample that only
    writes files.

    Args:
        interval (int): Validation: draw at epochs ``e % interval == 0``.
            With ``draw_all``: draw samples with ``sample_idx % interval ==
            0`` (``tools/test.py --interval``: every N-th sample).
        num_images (int): Samples drawn per validation (or test) run.
        seed (int): Seed of the choice of samples.
        preset (str): ``'wsoleval'``, ``'tscam'`` or ``'spa'``: resize and
            box rule (``'tscam'`` also draws TS-CAM's style, see
            :func:`overlay_cam`).
        cam_threshold (float | None): Box threshold tau in [0, 1].
        draw_gt (bool): Draw the GT boxes (and the IoU text).
        draw_all (bool): Draw every sample.
        out_dir (str | None): Output folder instead of ``{log_dir}/vis_cam``.
        map_key (str): Output field with the (K, h, w) native maps.
        label_key (str): Output field with the (K,) classes of the maps.
        target (str): ``'gt'`` or ``'pred'``.
    """

    priority = 'NORMAL'
    #: Message-hub key of the validation threshold used when
    #: ``cam_threshold`` is None.
    THRESHOLD_KEY = 'val/wsol/best_threshold@50'

    def __init__(
        self,
        interval: int = 1,
        num_images: int = 8,
        seed: int = 0,
        preset: str = 'wsoleval',
        cam_threshold: float | None = None,
        draw_gt: bool = True,
        draw_all: bool = False,
        out_dir: str | None = None,
        map_key: str = 'loc_maps',
        label_key: str = 'loc_labels',
        target: str = 'gt',
    ) -> None:
        name = type(self).__name__
        if int(interval) < 1:
            raise ValueError(f'{name}: interval must be >= 1, got {interval}')
        if int(num_images) < 0:
            raise ValueError(
                f'{name}: num_images must be >= 0, got {num_images}'
            )
        if preset not in PRESETS:
            raise ValueError(
                f'{name}: unknown preset {preset!r}; expected one of '
                f'{sorted(PRESETS)}'
            )
        if cam_threshold is not None and not 0.0 <= cam_threshold <= 1.0:
            raise ValueError(
                f'{name}: cam_threshold must be in [0, 1], got {cam_threshold}'
            )
        if target not in TARGETS:
            raise ValueError(
                f'{name}: target must be one of {TARGETS}, got {target!r}'
            )
        self.interval = int(interval)
        self.num_images = int(num_images)
        self.seed = seed
        self.preset = preset
        self.cam_threshold = cam_threshold
        self.draw_gt = draw_gt
        self.draw_all = draw_all
        self.out_dir = out_dir
        self.map_key = map_key
        self.label_key = label_key
        self.target = target
        #: Selected dataset indices per loop (``'val'``, ``'test'``).
        self.selected: dict[str, frozenset[int]] = {}
        self._active: dict[str, bool] = {}

    # -- selection -------------------------------------------------------
    def select_indices(self, dataset_len: int) -> frozenset[int]:
        """The ``num_images`` indices drawn for a dataset of this length."""
        num = min(self.num_images, int(dataset_len))
        rng = np.random.default_rng(self.seed)
        chosen = rng.choice(int(dataset_len), size=num, replace=False)
        return frozenset(int(i) for i in chosen)

    def _prepare(self, runner, mode: str) -> None:
        if not self.draw_all and mode not in self.selected:
            loop = runner.val_loop if mode == 'val' else runner.test_loop
            self.selected[mode] = self.select_indices(
                len(loop.dataloader.dataset)
            )
        if mode == 'val' and not self.draw_all:
            self._active[mode] = self._epoch(runner) % self.interval == 0
        else:
            self._active[mode] = True

    def before_val(self, runner) -> None:
        """Choose the validation samples (once) and gate the epoch."""
        self._prepare(runner, 'val')

    def before_test(self, runner) -> None:
        """Choose the test samples (once)."""
        self._prepare(runner, 'test')

    def _wanted(self, mode: str, sample_idx: int) -> bool:
        if self.draw_all:
            return sample_idx % self.interval == 0
        return sample_idx in self.selected.get(mode, ())

    # -- runner state ----------------------------------------------------
    @staticmethod
    def _epoch(runner) -> int:
        # runner.epoch builds a train loop still given as a dict (as in
        # mmengine's LoggerHook), so a standalone val/test reports 0.
        train_loop = getattr(runner, '_train_loop', None)
        if train_loop is None or isinstance(train_loop, dict):
            return 0
        return int(runner.epoch)

    def threshold(self, runner) -> float | None:
        """``cam_threshold``, else the last logged validation threshold."""
        if self.cam_threshold is not None:
            return float(self.cam_threshold)
        buffer = runner.message_hub.log_scalars.get(self.THRESHOLD_KEY)
        if buffer is None:
            return None
        return float(buffer.current())

    # -- drawing ---------------------------------------------------------
    def _error(self, sample, message: str) -> ValueError:
        return ValueError(
            f'{type(self).__name__}: {message} (sample_idx='
            f'{_get(sample, "sample_idx")!r}, img_path='
            f'{_get(sample, "img_path")!r})'
        )

    def _require(self, sample, key: str):
        value = _get(sample, key)
        if value is None:
            raise self._error(sample, f'the output has no {key!r}')
        return value

    def target_map(self, sample) -> np.ndarray:
        """The native (h, w) map of the target class of one output."""
        maps = self._require(sample, self.map_key)
        labels = _to_numpy(self._require(sample, self.label_key)).reshape(-1)
        shape = tuple(maps.shape)
        if len(shape) != 3 or shape[0] != len(labels):
            raise self._error(
                sample,
                f'{self.map_key} must be (K, h, w) with K = len('
                f'{self.label_key}) = {len(labels)}, got {shape}',
            )
        if self.target == 'pred':
            column = 0
        else:
            gt = _to_numpy(self._require(sample, 'gt_label')).reshape(-1)
            if not len(gt):
                raise self._error(sample, 'gt_label is empty')
            hits = np.flatnonzero(labels == int(gt[0]))
            if not len(hits):
                raise self._error(
                    sample,
                    f'ground-truth class {int(gt[0])} is absent from '
                    f'{self.label_key} {labels.tolist()}',
                )
            column = int(hits[0])
        native = _to_numpy(maps[column])
        if native.dtype.kind != 'f':
            raise self._error(
                sample, f'{self.map_key} must be floating, got {native.dtype}'
            )
        return native

    def _image(self, sample) -> np.ndarray:
        """The original image in the sample's input frame (``img_shape``)."""
        self._require(sample, 'img_path')
        try:
            return read_frame_image(sample)
        except ValueError as err:
            raise self._error(sample, str(err)) from None

    def draw(self, sample, threshold: float | None) -> np.ndarray:
        """The uint8 BGR overlay of one output (DataSample or dict)."""
        native = self.target_map(sample)
        shape = self._require(sample, 'img_shape')
        height, width = int(shape[0]), int(shape[1])
        try:
            cam = resize_cam(native, (height, width), self.preset)
        except (TypeError, ValueError) as err:
            raise self._error(sample, f'{self.map_key}: {err}') from err
        image = self._image(sample)
        pred = None
        if threshold is not None:
            pred = preset_boxes(cam, threshold, self.preset)
        gt = None
        if self.draw_gt and _get(sample, 'gt_bboxes') is not None:
            gt = _to_numpy(_get(sample, 'gt_bboxes')).astype(np.float64)
            gt = gt.reshape(-1, 4)
            if not len(gt):
                gt = None
        text = None
        if pred is not None and gt is not None:
            iou = box_iou(pred, np.floor(gt)).max()
            text = f'IoU {100 * iou:.1f}'
        return overlay_cam(image, cam, pred, gt, text=text, preset=self.preset)

    def _path(self, runner, mode: str, epoch: int, sample_idx: int) -> str:
        root = self.out_dir or osp.join(runner.log_dir, 'vis_cam')
        if mode == 'val':
            folder = osp.join(root, f'epoch_{epoch}')
        else:
            folder = root if self.out_dir else osp.join(root, 'test')
        return osp.join(folder, f'{sample_idx}.jpg')

    def _process(self, runner, mode: str, outputs: Sequence) -> None:
        if not self._active.get(mode, False) or not outputs:
            return
        threshold: float | None = None
        looked_up = False
        epoch = self._epoch(runner)
        for sample in outputs:
            idx = _get(sample, 'sample_idx')
            if idx is None:
                raise self._error(sample, "the output has no 'sample_idx'")
            idx = int(idx)
            if not self._wanted(mode, idx):
                continue
            if not looked_up:
                threshold, looked_up = self.threshold(runner), True
            canvas = self.draw(sample, threshold)
            path = self._path(runner, mode, epoch, idx)
            os.makedirs(osp.dirname(path), exist_ok=True)
            if not cv2.imwrite(path, canvas):
                raise OSError(f'{type(self).__name__}: cannot write {path}')
            if runner.rank == 0 and not self.draw_all:
                name = 'vis_cam' if mode == 'val' else 'vis_cam_test'
                runner.visualizer.add_image(
                    f'{name}_{idx}',
                    np.ascontiguousarray(canvas[..., ::-1]),
                    step=epoch,
                )

    def after_val_iter(
        self, runner, batch_idx: int, data_batch=None, outputs=None
    ) -> None:
        """Draw the selected samples of a validation batch."""
        self._process(runner, 'val', outputs)

    def after_test_iter(
        self, runner, batch_idx: int, data_batch=None, outputs=None
    ) -> None:
        """Draw the selected samples of a test batch."""
        self._process(runner, 'test', outputs)
