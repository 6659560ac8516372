"""``PxAPMetric``: pixel average precision (``evaluation.md`` §5.3)."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import torch
from mmengine.logging import print_log

from shared.registry import METRICS

from ..protocols import SPA_EPS
from ..wsol import _check_interval, _pr_summary, _sorted_hist
from .loc_base import BaseLocMetric

__all__ = ['PxAPMetric']

PXAP_PRESETS = ('wsoleval', 'spa')
#: ``gt_mask`` value of ignored pixels (``datasets.md`` §3.2).
IGNORE = 255


@METRICS.register_module()
class PxAPMetric(BaseLocMetric):
    """PxAP and peak pixel IoU as an MMEngine metric.

    Per image, :meth:`process_one` keeps two int32 histograms (positive and
    negative non-ignored pixels) of the ground-truth class map; the
    histograms of all images are pooled in :meth:`compute_records`, exactly
    as :func:`shared.evaluation.wsol.pxap` pools them.

    - ``preset='wsoleval'``: float64 map, ``INTER_CUBIC`` resize, min-max;
      bins ``np.arange(0, 1, d)`` then 1, 2, 3 (T + 2 bins).
    - ``preset='spa'`` (WGOL's ``val_mask``; use ``eval_frame='original'``
      and a dataset with ``mask_threshold=128``): the native map min-max
      normalised ((m - min) / (max - min + 1e-10)), quantised to uint8
      (x 255, truncation), resized with ``INTER_LINEAR`` as uint8, and
      thresholded at the 256 uint8 levels (a pixel is positive at level l
      iff its value is >= l); ``cam_curve_interval`` is unused.

    The mask is ``gt_mask`` (input frame) or ``ori_gt_mask``
    (``eval_frame='original'``): 1 foreground, 0 background, 255 ignored.

    Args:
        cam_curve_interval (float): Bin width d of the ``wsoleval`` preset.
        preset (str): ``'wsoleval'`` or ``'spa'``.
        **kwargs: :class:`BaseLocMetric` arguments (``map_key``,
            ``label_key``, ``eval_frame``, ``prefix``, ``collect_device``,
            ``collect_dir``).

    Output keys: ``PxAP``, ``pIoU`` (percent) and ``best_threshold_pIoU``.
    """

    default_prefix: str | None = 'wsol'

    def __init__(
        self,
        cam_curve_interval: float = 0.001,
        preset: str = 'wsoleval',
        **kwargs,
    ) -> None:
        if preset not in PXAP_PRESETS:
            raise ValueError(
                f'PxAPMetric: preset must be one of {PXAP_PRESETS}, '
                f'got {preset!r}'
            )
        super().__init__(preset=preset, **kwargs)
        self.interval = _check_interval(cam_curve_interval)
        if preset == 'wsoleval':
            self.edges = np.append(
                np.arange(0, 1, self.interval), [1.0, 2.0, 3.0]
            )
        else:  # uint8 levels l / 255; bin l holds the value l
            self.edges = np.arange(257, dtype=np.float64) / 255

    def _mask(self, sample: dict, frame: tuple[int, int]) -> np.ndarray:
        key = 'gt_mask' if self.eval_frame == 'input' else 'ori_gt_mask'
        mask = self._require(sample, key)
        if isinstance(mask, torch.Tensor):
            mask = mask.detach().cpu().numpy()
        mask = np.asarray(mask)
        if mask.shape != frame:
            raise self._error(
                sample,
                f'{key} has shape {mask.shape} but the evaluated frame is '
                f'{frame}',
            )
        bad = ~np.isin(mask, (0, 1, IGNORE))
        if bad.any():
            raise self._error(
                sample, f'{key} has values other than 0, 1 and {IGNORE}'
            )
        return mask

    def _scores(self, sample: dict, native: np.ndarray) -> np.ndarray:
        if self.preset == 'wsoleval':
            return self.frame_map(sample, native)
        height, width = self.frame(sample)
        m = native.astype(np.float32)
        m = (m - m.min()) / (m.max() - m.min() + SPA_EPS)
        u = (m * 255).astype(np.uint8)
        return cv2.resize(
            u, (width, height), interpolation=cv2.INTER_LINEAR
        ).reshape(height, width)

    def _hist(self, scores: np.ndarray) -> np.ndarray:
        if self.preset == 'spa':
            return np.bincount(scores, minlength=256)
        return _sorted_hist(scores, self.edges)

    def process_one(self, sample: dict) -> dict:
        """Positive and negative histograms of one image.

        Returns:
            dict: ``sample_idx``, ``pos`` and ``neg`` (int32 (B,)).
        """
        idx = self.sample_index(sample)
        self.num_classes(sample)
        maps, labels = self.maps_and_labels(sample)
        column = self.gt_column(sample, labels, self.gt_label(sample))
        scores = self._scores(sample, self.native_map(sample, maps, column))
        mask = self._mask(sample, scores.shape)
        return dict(
            sample_idx=idx,
            pos=self._hist(scores[mask == 1]).astype(np.int32),
            neg=self._hist(scores[mask == 0]).astype(np.int32),
        )

    def compute_records(self, records: list[dict]) -> dict:
        """PxAP, pIoU and best_threshold_pIoU of the pooled histograms."""
        pos = np.sum([r['pos'] for r in records], axis=0, dtype=np.float64)
        neg = np.sum([r['neg'] for r in records], axis=0, dtype=np.float64)
        if pos.sum() == 0:
            raise ValueError(
                'PxAPMetric: no positive ground-truth pixel in the '
                f'{len(records)} evaluated images'
            )
        summary = _pr_summary(pos, neg, self.edges)
        print_log(
            f'PxAPMetric: {len(records)} images, preset={self.preset}'
            + (
                f', cam_curve_interval={self.interval:g}'
                if self.preset == 'wsoleval'
                else ', uint8 levels'
            ),
            logger='current',
            level=logging.INFO,
        )
        return {
            'PxAP': summary['PxAP'],
            'pIoU': summary['pIoU'],
            'best_threshold_pIoU': summary['best_threshold'],
        }
