"""``LocAccuracyMetric``: Top-1/Top-5/GT-known Loc (``evaluation.md`` §5.4)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from mmengine.logging import print_log

from shared.registry import METRICS

from ..wsol import _LOC_KEYS, _check_loc_thresholds, _loc_flags
from .loc_base import BaseLocMetric

__all__ = ['LocAccuracyMetric']

LOC_PRESETS = ('tscam', 'spa')
#: Keys reported as ``{key}_err`` = 100 - accuracy with ``report_errors``.
ERROR_KEYS = ('top1_cls', 'top5_cls', 'gt_known_loc', 'top1_loc', 'top5_loc')


@METRICS.register_module()
class LocAccuracyMetric(BaseLocMetric):
    """TS-CAM / WGOL localization accuracy as an MMEngine metric.

    Per image, :meth:`process_one` resizes the ground-truth class map to the
    evaluated frame (preset ``tscam``: float32 bilinear then min-max;
    ``spa``: min-max at native size then bilinear, or the SOS rule) and
    stores the success flags of
    :func:`shared.evaluation.wsol.localization_accuracy` at every
    threshold; ``num_topk`` is min(5, C).

    Args:
        preset (str): ``'tscam'`` or ``'spa'``.
        cam_threshold (float | Sequence[float]): tau (TS-CAM: CUB 0.1,
            ILSVRC 0.12; WGOL: a list).
        select_by (str): Key whose best threshold is reported when
            ``cam_threshold`` is a list (first maximum).
        report_errors (bool): Also report ``{key}_err`` = 100 - accuracy
            (what WGOL prints).
        iou_threshold (float): IoU level of Loc@K and GT-known.
        sos (bool): The map is a WGOL SOS map (``spa`` only): no
            normalisation, clamped at 0 after resizing.
        **kwargs: :class:`BaseLocMetric` arguments (``map_key``,
            ``label_key``, ``eval_frame``, ``gt_source``, ``prefix``,
            ``collect_device``, ``collect_dir``).

    Output keys: those of ``localization_accuracy``; for a threshold list,
    each at the threshold selected by ``select_by``, plus
    ``best_cam_threshold``.
    """

    default_prefix: str | None = 'loc'

    def __init__(
        self,
        preset: str = 'tscam',
        cam_threshold: float | Sequence[float] = 0.2,
        select_by: str = 'top1_loc',
        report_errors: bool = False,
        iou_threshold: float = 0.5,
        sos: bool = False,
        **kwargs,
    ) -> None:
        if preset not in LOC_PRESETS:
            raise ValueError(
                f'LocAccuracyMetric: preset must be one of {LOC_PRESETS}, '
                f'got {preset!r}'
            )
        if sos and preset != 'spa':
            raise ValueError("LocAccuracyMetric: sos=True needs preset='spa'")
        if select_by not in _LOC_KEYS:
            raise ValueError(
                f'LocAccuracyMetric: select_by must be one of {_LOC_KEYS}, '
                f'got {select_by!r}'
            )
        super().__init__(preset=preset, **kwargs)
        self.taus, self.is_list = _check_loc_thresholds(cam_threshold)
        self.select_by = select_by
        self.report_errors = report_errors
        self.iou_threshold = float(iou_threshold)
        self.sos = sos

    def process_one(self, sample: dict) -> dict:
        """Success flags of one image.

        Returns:
            dict: ``sample_idx`` and ``flags``, bool (T, 11) in the key
            order of ``localization_accuracy``.
        """
        idx = self.sample_index(sample)
        self._require(sample, 'pred_score')  # its width gives min(5, C)
        num_classes = self.num_classes(sample)
        maps, labels = self.maps_and_labels(sample)
        num_topk = min(5, num_classes)
        if len(labels) < num_topk:
            raise self._error(
                sample,
                f'{self.label_key} has {len(labels)} entries, fewer than the '
                f'{num_topk} ranked predictions',
            )
        gt = self.gt_label(sample)
        column = self.gt_column(sample, labels, gt)
        cam = self.frame_map(
            sample, self.native_map(sample, maps, column), sos=self.sos
        )
        flags = _loc_flags(
            cam,
            labels,
            gt,
            self.gt_boxes(sample, cam.shape),
            self.taus,
            self.preset,
            self.iou_threshold,
            num_topk,
            name=f'sample_idx={idx}',
        )
        return dict(sample_idx=idx, flags=flags)

    def compute_records(self, records: list[dict]) -> dict:
        """Accuracies in percent at the (selected) threshold."""
        total = sum(r['flags'].astype(np.int64) for r in records)
        values = total * 100.0 / len(records)  # (T, keys)
        k = 0
        if self.is_list:
            k = int(np.argmax(values[:, _LOC_KEYS.index(self.select_by)]))
        metrics = {key: float(values[k, j]) for j, key in enumerate(_LOC_KEYS)}
        if self.is_list:
            metrics['best_cam_threshold'] = float(self.taus[k])
        if self.report_errors:
            for key in ERROR_KEYS:
                metrics[f'{key}_err'] = 100.0 - metrics[key]
        print_log(
            f'LocAccuracyMetric: {len(records)} images, preset={self.preset}, '
            f'cam_threshold={self.taus[k]:g}, IoU {self.iou_threshold:g}',
            logger='current',
            level=logging.INFO,
        )
        return metrics
