"""``BaseLocMetric``: what the WSOL metrics share (``evaluation.md`` §5.1)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..gt_boxes import protocol_gt_boxes
from ..protocols import PRESETS, resize_cam

__all__ = ['BaseLocMetric', 'describe_sample']

EVAL_FRAMES = ('input', 'original')
GT_SOURCES = ('protocol', 'pipeline')


def describe_sample(sample: dict) -> str:
    """``sample_idx`` and ``img_path`` of a sample, for error messages."""
    return (
        f'sample_idx={sample.get("sample_idx")!r}, '
        f'img_path={sample.get("img_path")!r}'
    )


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class BaseLocMetric(BaseMetric):
    """Reading the model contract of ``evaluation.md`` §2.1 and the GT.

    Subclasses implement :meth:`process_one` (one record per image, nothing
    image-sized) and :meth:`compute_records` (records sorted by
    ``sample_idx``, duplicates removed). Records, not sums, are collected,
    so that mmengine's size-bounded ``collect_results`` drops the padding
    duplicates of ``DefaultSampler``; :meth:`compute_metrics` also
    de-duplicates by ``sample_idx`` and warns when the number of evaluated
    images differs from the dataset length.

    Args:
        map_key (str): Field holding the (K, h, w) native maps.
        label_key (str): Field holding the (K,) classes of the maps.
        preset (str): Protocol preset (``'wsoleval'``, ``'tscam'``,
            ``'spa'``): dtype, resize and normalisation of the map, and the
            rule of the protocol GT boxes.
        eval_frame (str): ``'input'``: the map is resized to ``img_shape``;
            ``'original'``: to ``ori_shape`` with original-resolution GT.
        gt_source (str): ``'protocol'``: GT boxes recomputed from
            ``ori_gt_bboxes`` with the preset's rule (parity with the
            originals; flipped or cropped samples raise); ``'pipeline'``:
            the floored ``gt_bboxes`` of the input frame.
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        prefix (str, optional): Key prefix.
        collect_dir (str, optional): Shared folder for CPU collection.
    """

    def __init__(
        self,
        map_key: str = 'loc_maps',
        label_key: str = 'loc_labels',
        preset: str = 'wsoleval',
        eval_frame: str = 'input',
        gt_source: str = 'protocol',
        collect_device: str = 'cpu',
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(
            collect_device=collect_device,
            prefix=prefix,
            collect_dir=collect_dir,
        )
        if preset not in PRESETS:
            raise ValueError(
                f'{type(self).__name__}: unknown preset {preset!r}; '
                f'expected one of {sorted(PRESETS)}'
            )
        if eval_frame not in EVAL_FRAMES:
            raise ValueError(
                f'{type(self).__name__}: eval_frame must be one of '
                f'{EVAL_FRAMES}, got {eval_frame!r}'
            )
        if gt_source not in GT_SOURCES:
            raise ValueError(
                f'{type(self).__name__}: gt_source must be one of '
                f'{GT_SOURCES}, got {gt_source!r}'
            )
        if eval_frame == 'original' and gt_source == 'pipeline':
            raise ValueError(
                f"{type(self).__name__}: eval_frame='original' needs "
                "gt_source='protocol' (pipeline boxes live in the input "
                'frame)'
            )
        self.map_key = map_key
        self.label_key = label_key
        self.preset = preset
        self.eval_frame = eval_frame
        self.gt_source = gt_source
        self._dataset_size: int | None = None

    # -- reading one sample ------------------------------------------------

    def _error(self, sample: dict, message: str) -> ValueError:
        return ValueError(
            f'{type(self).__name__}: {message} ({describe_sample(sample)})'
        )

    def _require(self, sample: dict, key: str):
        value = sample.get(key)
        if value is None:
            raise self._error(sample, f'the sample has no {key!r}')
        return value

    def sample_index(self, sample: dict) -> int:
        """``sample_idx`` of a sample (required for de-duplication)."""
        return int(self._require(sample, 'sample_idx'))

    def gt_label(self, sample: dict) -> int:
        """The (first) ground-truth class of a sample."""
        label = _to_numpy(self._require(sample, 'gt_label')).reshape(-1)
        if len(label) == 0:
            raise self._error(sample, 'gt_label is empty')
        return int(label[0])

    def num_classes(self, sample: dict) -> int | None:
        """Width of ``pred_score``, checked against ``dataset_meta``."""
        score = sample.get('pred_score')
        width = None if score is None else int(_to_numpy(score).size)
        classes = (self.dataset_meta or {}).get('classes')
        if width is not None and classes is not None and len(classes) != width:
            raise self._error(
                sample,
                f"dataset_meta['classes'] has {len(classes)} classes but "
                f'pred_score has {width}',
            )
        if width is None and classes is not None:
            width = len(classes)
        return width

    def maps_and_labels(self, sample: dict) -> tuple[np.ndarray, np.ndarray]:
        """The (K, h, w) maps of ``map_key`` and (K,) ``label_key``."""
        maps = self._require(sample, self.map_key)
        labels = _to_numpy(self._require(sample, self.label_key)).reshape(-1)
        shape = tuple(maps.shape)
        if len(shape) != 3:
            raise self._error(
                sample, f'{self.map_key} must be (K, h, w), got {shape}'
            )
        if shape[0] != len(labels):
            raise self._error(
                sample,
                f'{self.map_key} has {shape[0]} maps but {self.label_key} '
                f'has {len(labels)} labels',
            )
        return maps, labels

    def gt_column(self, sample: dict, labels: np.ndarray, gt: int) -> int:
        """First column of ``labels`` holding the ground-truth class."""
        hits = np.flatnonzero(labels == gt)
        if len(hits) == 0:
            raise self._error(
                sample,
                f'ground-truth class {gt} is absent from {self.label_key} '
                f'{labels.tolist()}',
            )
        return int(hits[0])

    def native_map(self, sample: dict, maps, column: int) -> np.ndarray:
        """One native map on the CPU as numpy (float16 -> float32)."""
        m = _to_numpy(maps[column])
        if m.dtype.kind != 'f':
            raise self._error(
                sample, f'{self.map_key} must be floating, got {m.dtype}'
            )
        if m.dtype == np.float16:
            m = m.astype(np.float32)
        if not np.isfinite(m).all():
            raise self._error(
                sample, f'{self.map_key}[{column}] has NaN or inf values'
            )
        return m

    def frame(self, sample: dict) -> tuple[int, int]:
        """The evaluated frame (H, W): ``img_shape`` or ``ori_shape``."""
        key = 'img_shape' if self.eval_frame == 'input' else 'ori_shape'
        shape = self._require(sample, key)
        return int(shape[0]), int(shape[1])

    def frame_map(
        self, sample: dict, native: np.ndarray, sos: bool = False
    ) -> np.ndarray:
        """The native map resized and normalised per preset (§2)."""
        return resize_cam(native, self.frame(sample), self.preset, sos=sos)

    def gt_boxes(self, sample: dict, frame: tuple[int, int]) -> np.ndarray:
        """int64 (n, 4) inclusive GT boxes in the evaluated frame."""
        if self.gt_source == 'pipeline':
            boxes = _to_numpy(self._require(sample, 'gt_bboxes'))
            boxes = np.floor(boxes.astype(np.float64)).astype(np.int64)
        else:
            if sample.get('flip') or sample.get('crop_bbox') is not None:
                raise self._error(
                    sample,
                    "gt_source='protocol' recomputes the GT boxes from the "
                    'raw annotation and cannot follow a flip or crop of the '
                    'evaluated image; use a test pipeline without them or '
                    "gt_source='pipeline'",
                )
            raw = self._require(sample, 'ori_gt_bboxes')
            box_format = self._require(sample, 'ori_box_format')
            ori_shape = self._require(sample, 'ori_shape')
            boxes = protocol_gt_boxes(
                _to_numpy(raw),
                box_format,
                (int(ori_shape[0]), int(ori_shape[1])),
                frame,
                self.preset,
            )
        boxes = boxes.reshape(-1, 4)
        if len(boxes) == 0:
            raise self._error(sample, 'the sample has no ground-truth box')
        return boxes

    # -- collection ----------------------------------------------------------

    def evaluate(self, size: int) -> dict:
        """Remember the dataset length, then evaluate (mmengine)."""
        self._dataset_size = size
        return super().evaluate(size)

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Append one record per sample (see :meth:`process_one`)."""
        records = self.process_batch(list(data_samples))
        self.results.extend(records)

    def process_batch(self, samples: list[dict]) -> list[dict]:
        """Records of a batch; subclasses may process images in threads."""
        return [self.process_one(s) for s in samples]

    def process_one(self, sample: dict) -> dict:
        """One record holding ``sample_idx`` and per-image reductions."""
        raise NotImplementedError

    def compute_records(self, records: list[dict]) -> dict:
        """Metrics from de-duplicated records in ``sample_idx`` order."""
        raise NotImplementedError

    def compute_metrics(self, results: list) -> dict:
        """De-duplicate by ``sample_idx``, then :meth:`compute_records`."""
        unique: dict[int, dict] = {}
        for record in results:
            unique.setdefault(record['sample_idx'], record)
        records = [unique[idx] for idx in sorted(unique)]
        if not records:
            raise ValueError(f'{type(self).__name__}: no image was evaluated')
        if (
            self._dataset_size is not None
            and len(records) != self._dataset_size
        ):
            print_log(
                f'{type(self).__name__}: evaluated {len(records)} images '
                f'but the dataset has {self._dataset_size}',
                logger='current',
                level=logging.WARNING,
            )
        return self.compute_records(records)
