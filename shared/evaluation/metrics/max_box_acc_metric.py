"""``MaxBoxAccMetric``: MaxBoxAcc / MaxBoxAccV2 (``evaluation.md`` §5.2)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from mmengine.logging import print_log

from shared.registry import METRICS

from ..protocols import get_preset
from ..wsol import _box_acc_summary, _check_interval, _image_ious
from .loc_base import BaseLocMetric

__all__ = ['MaxBoxAccMetric']

CAM_NORMS = ('minmax', 'max')
BACKENDS = ('tree', 'cv2')


@METRICS.register_module()
class MaxBoxAccMetric(BaseLocMetric):
    """MaxBoxAccV2 (and V1) of wsolevaluation as an MMEngine metric.

    Per image, :meth:`process_one` resizes the ground-truth class map to the
    evaluated frame (preset), computes IoU(tau) against the protocol GT
    boxes for every tau of ``np.arange(0, 1, cam_curve_interval)`` with the
    code of :func:`shared.evaluation.wsol.max_box_acc`, and keeps only the
    bit-packed success flags: one row per IoU level (every contour), one
    row for V1 (largest contour, IoU 50), one per level for
    ``require_correct_class`` and the flags at ``report_at_thresholds``.
    The metric therefore equals :func:`~shared.evaluation.wsol.max_box_acc`
    on the same maps, with O(images x thresholds) memory.

    Args:
        iou_thresholds (Sequence[float]): IoU levels d in (0, 100].
        cam_curve_interval (float): Threshold step (wsolevaluation's
            training/reporting default 0.001; its CLI uses 0.01).
        preset (str): ``'wsoleval'`` (default), ``'tscam'`` or ``'spa'``.
        report_v1 (bool): Also report ``MaxBoxAccV1`` (largest contour,
            IoU 50).
        require_correct_class (bool): Also report ``Top1MaxBoxAccV2``,
            where success also needs ``loc_labels[0]`` == GT.
        report_at_thresholds (Sequence[float]): Fixed tau at which to also
            report ``BoxAcc@{d}_tau={tau}`` and ``BoxAccV2_tau={tau}`` (to
            apply a tau chosen on validation to test).
        cam_norm (str): ``'minmax'`` (the preset's normalisation) or
            ``'max'``: the resized map clamped at 0 and divided by its
            maximum (the original CAM paper's convention).
        num_workers (int, optional): Threads over the images of a batch;
            None means min(4, CPU cores).
        backend (str): V2 contour backend, ``'tree'`` or ``'cv2'`` (see
            :func:`~shared.evaluation.wsol.max_box_acc`); identical results.
        **kwargs: :class:`BaseLocMetric` arguments (``map_key``,
            ``label_key``, ``eval_frame``, ``gt_source``, ``prefix``,
            ``collect_device``, ``collect_dir``).
    """

    default_prefix: str | None = 'wsol'

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (30, 50, 70),
        cam_curve_interval: float = 0.001,
        preset: str = 'wsoleval',
        report_v1: bool = True,
        require_correct_class: bool = False,
        report_at_thresholds: Sequence[float] = (),
        cam_norm: str = 'minmax',
        num_workers: int | None = None,
        backend: str = 'cv2',
        **kwargs,
    ) -> None:
        super().__init__(preset=preset, **kwargs)
        self.deltas = [float(d) for d in iou_thresholds]
        if not self.deltas:
            raise ValueError('MaxBoxAccMetric: iou_thresholds is empty')
        for d in self.deltas:
            if not 0 < d <= 100:
                raise ValueError(
                    f'MaxBoxAccMetric: iou_thresholds must lie in (0, 100], '
                    f'got {d}'
                )
        self.interval = _check_interval(cam_curve_interval)
        self.taus = np.arange(0, 1, self.interval)
        self.fixed_taus = np.asarray(report_at_thresholds, dtype=np.float64)
        if ((self.fixed_taus < 0) | (self.fixed_taus > 1)).any():
            raise ValueError(
                'MaxBoxAccMetric: report_at_thresholds must lie in [0, 1], '
                f'got {list(report_at_thresholds)}'
            )
        if cam_norm not in CAM_NORMS:
            raise ValueError(
                f'MaxBoxAccMetric: cam_norm must be one of {CAM_NORMS}, '
                f'got {cam_norm!r}'
            )
        if backend not in BACKENDS:
            raise ValueError(
                f'MaxBoxAccMetric: backend must be one of {BACKENDS}, '
                f'got {backend!r}'
            )
        self.report_v1 = report_v1
        self.require_correct_class = require_correct_class
        self.cam_norm = cam_norm
        self.backend = backend
        self.num_workers = (
            min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        )

    def _cut(self) -> np.ndarray:
        return np.array([d / 100 for d in self.deltas], dtype=np.float64)

    def _map(self, sample: dict, native: np.ndarray) -> np.ndarray:
        if self.cam_norm == 'minmax':
            return self.frame_map(sample, native)
        p = get_preset(self.preset)
        height, width = self.frame(sample)
        m = cv2.resize(
            native.astype(p.dtype),
            (width, height),
            interpolation=p.interpolation,
        ).reshape(height, width)
        m = np.maximum(m, 0)
        top = m.max()
        return m / top if top > 0 else np.zeros_like(m)

    def process_batch(self, samples: list[dict]) -> list[dict]:
        """Per-image records, images in a thread pool (OpenCV and numpy
        release the GIL)."""
        workers = max(1, min(int(self.num_workers), len(samples)))
        if workers == 1:
            return [self.process_one(s) for s in samples]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(self.process_one, samples))

    def process_one(self, sample: dict) -> dict:
        """Bit-packed success flags of one image.

        Returns:
            dict: ``sample_idx``, ``flags`` (uint8 packed bits of a bool
            (R, T) array: the IoU levels, then V1, then the Top-1 rows) and
            ``fixed`` (bool (L, F) flags at ``report_at_thresholds``).
        """
        idx = self.sample_index(sample)
        self.num_classes(sample)
        maps, labels = self.maps_and_labels(sample)
        gt = self.gt_label(sample)
        column = self.gt_column(sample, labels, gt)
        cam = self._map(sample, self.native_map(sample, maps, column))
        boxes = self.gt_boxes(sample, cam.shape)
        cut = self._cut()
        ious = _image_ious(cam, boxes, self.taus, True, self.backend)
        rows = [ious[None, :] >= cut[:, None]]
        if self.report_v1:
            v1 = _image_ious(cam, boxes, self.taus, False)
            rows.append((v1 >= 0.5)[None, :])
        if self.require_correct_class:
            rows.append(rows[0] & bool(labels[0] == gt))
        flags = np.concatenate(rows, axis=0)
        record = dict(
            sample_idx=idx,
            flags=np.packbits(flags, axis=None),
            num_rows=flags.shape[0],
        )
        if len(self.fixed_taus):
            fixed = _image_ious(
                cam, boxes, self.fixed_taus, True, self.backend
            )
            record['fixed'] = fixed[None, :] >= cut[:, None]
        return record

    def compute_records(self, records: list[dict]) -> dict:
        """MaxBoxAccV2, MaxBoxAcc@d, best_threshold@d and the extras."""
        num_t = len(self.taus)
        num_rows = records[0]['num_rows']
        counts = np.zeros((num_rows, num_t), dtype=np.int64)
        for r in records:
            bits = np.unpackbits(r['flags'], count=num_rows * num_t)
            counts += bits.reshape(num_rows, num_t)
        num_d = len(self.deltas)
        names = [f'{d:g}' for d in self.deltas]
        summary = _box_acc_summary(
            counts[:num_d], len(records), names, self.taus
        )
        summary.pop('box_acc_curves')
        metrics: dict = {'MaxBoxAccV2': summary.pop('MaxBoxAccV2'), **summary}
        curves = counts * 100.0 / len(records)
        row = num_d
        if self.report_v1:
            metrics['MaxBoxAccV1'] = float(curves[row].max())
            row += 1
        if self.require_correct_class:
            top1 = curves[row : row + num_d].max(axis=1)
            metrics['Top1MaxBoxAccV2'] = float(top1.mean())
        if len(self.fixed_taus):
            fixed = sum(r['fixed'].astype(np.int64) for r in records)
            fixed = fixed * 100.0 / len(records)
            for j, tau in enumerate(self.fixed_taus):
                for k, d in enumerate(self.deltas):
                    metrics[f'BoxAcc@{d:g}_tau={tau:g}'] = float(fixed[k, j])
                metrics[f'BoxAccV2_tau={tau:g}'] = float(fixed[:, j].mean())
        print_log(
            f'MaxBoxAccMetric: {len(records)} images, preset={self.preset}, '
            f'cam_curve_interval={self.interval:g}, IoU levels '
            f'{[f"{d:g}" for d in self.deltas]}',
            logger='current',
            level=logging.INFO,
        )
        return metrics
