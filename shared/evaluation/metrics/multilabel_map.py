"""``MultiLabelMAP``: the SS-PRL mAP as an MMEngine metric
(``evaluation.md`` §6)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmpretrain.evaluation import AveragePrecision

from shared.datasets.utils import multilabel_target
from shared.registry import METRICS

from ..multilabel import average_precision_per_class

__all__ = ['MultiLabelMAP']

_SCORE_KEYS = ('auto', 'pred_logit', 'pred_score')


def _describe(sample) -> str:
    """``sample_idx``/``img_path`` of a sample, for error messages."""
    return (
        f'sample_idx={sample.get("sample_idx")!r}, '
        f'img_path={sample.get("img_path")!r}'
    )


@METRICS.register_module()
class MultiLabelMAP(BaseMetric):
    """SS-PRL multi-label mAP of :func:`shared.evaluation.multilabel.
    mean_average_precision`.

    ``process()`` keeps per sample only its score vector ``(C,)``, its
    target vector ``(C,)`` in ``{1, 0, -1}`` and its ``sample_idx``;
    ``compute_metrics()`` drops duplicated ``sample_idx`` (the padding of
    ``DefaultSampler``; the first record is kept) and evaluates the samples
    in ``sample_idx`` order.

    The target comes from ``gt_label`` (LongTensor of positive class
    indices, mmpretrain's multi-label ``DataSample``) and the optional
    metainfo ``gt_label_difficult`` (classes to ignore, ``-1``; a class also
    in ``gt_label`` stays positive) through
    :func:`shared.datasets.utils.multilabel_target`.

    Args:
        score_key (str): ``'pred_logit'``, ``'pred_score'`` or ``'auto'``:
            ``pred_logit`` when the first processed sample has it, else
            ``pred_score`` (the choice is logged once). Logits are preferred
            because float32 sigmoid saturates into ties SS-PRL never sees.
        tie_shift (float): Shift of the positives' scores (SS-PRL: 1e-5).
        report_mmpretrain (bool): Also report ``mAP_mmpretrain``, the
            value of mmpretrain's ``AveragePrecision`` on the same (unshifted)
            scores and targets; it orders tied scores by sort order, so it
            differs from ``mAP`` when scores tie.
        per_class (bool): Also report ``AP_{class name}`` per class (class
            index when the dataset has no ``classes``).
        collect_device (str): ``'cpu'`` or ``'gpu'``.
        prefix (str, optional): Key prefix, ``'multilabel'`` by default.
        collect_dir (str, optional): Shared folder for ``collect_device=
            'cpu'`` collection (mmengine ``BaseMetric``).

    Raises:
        ValueError: In ``process()``: an unknown ``score_key``, a missing
            score field, ``gt_label`` or ``sample_idx``, a score width that
            differs from ``len(dataset_meta['classes'])`` or from earlier
            samples; in ``compute_metrics()``: see
            :func:`~shared.evaluation.multilabel.average_precision_per_class`.
    """

    default_prefix: str | None = 'multilabel'

    def __init__(
        self,
        score_key: str = 'auto',
        tie_shift: float = 1e-5,
        report_mmpretrain: bool = False,
        per_class: bool = False,
        collect_device: str = 'cpu',
        prefix: str | None = 'multilabel',
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(
            collect_device=collect_device,
            prefix=prefix,
            collect_dir=collect_dir,
        )
        if score_key not in _SCORE_KEYS:
            raise ValueError(
                f'score_key must be one of {_SCORE_KEYS}, got {score_key!r}'
            )
        if not np.isfinite(tie_shift) or tie_shift < 0:
            raise ValueError(
                f'tie_shift must be finite and >= 0, got {tie_shift}'
            )
        self.score_key = score_key
        self.tie_shift = float(tie_shift)
        self.report_mmpretrain = report_mmpretrain
        self.per_class = per_class
        self._resolved_key: str | None = (
            None if score_key == 'auto' else score_key
        )

    def _class_names(self) -> Sequence[str] | None:
        if self.dataset_meta is None:
            return None
        return self.dataset_meta.get('classes')

    def _score_key_for(self, sample) -> str:
        if self._resolved_key is None:
            key = 'pred_logit' if 'pred_logit' in sample else 'pred_score'
            print_log(
                f"{type(self).__name__}: score_key='auto' uses '{key}'",
                logger='current',
                level=logging.INFO,
            )
            self._resolved_key = key
        return self._resolved_key

    def _check_width(self, width: int, sample) -> None:
        names = self._class_names()
        if names is not None and len(names) != width:
            raise ValueError(
                f"{type(self).__name__}: dataset_meta['classes'] has "
                f'{len(names)} classes but the scores have {width} '
                f'({_describe(sample)})'
            )
        if self.results and len(self.results[0]['scores']) != width:
            raise ValueError(
                f'{type(self).__name__}: scores of width {width} after '
                f'scores of width {len(self.results[0]["scores"])} '
                f'({_describe(sample)})'
            )

    def process(self, data_batch, data_samples: Sequence) -> None:
        """Store ``(scores, target, sample_idx)`` of every sample.

        Args:
            data_batch: Unused.
            data_samples (Sequence[dict | DataSample]): Model outputs.
        """
        for sample in data_samples:
            key = self._score_key_for(sample)
            scores = sample.get(key)
            if scores is None:
                raise ValueError(
                    f'{type(self).__name__}: the sample has no {key!r} '
                    f'({_describe(sample)})'
                )
            scores = torch.as_tensor(scores).detach().reshape(-1)
            if not scores.is_floating_point():
                scores = scores.double()
            elif scores.dtype in (torch.float16, torch.bfloat16):
                scores = scores.float()
            scores = scores.cpu().clone()
            self._check_width(len(scores), sample)
            gt_label = sample.get('gt_label')
            sample_idx = sample.get('sample_idx')
            if gt_label is None or sample_idx is None:
                missing = 'gt_label' if gt_label is None else 'sample_idx'
                raise ValueError(
                    f'{type(self).__name__}: the sample has no {missing!r} '
                    f'({_describe(sample)})'
                )
            target = multilabel_target(
                gt_label, sample.get('gt_label_difficult'), len(scores)
            )
            self.results.append(
                dict(scores=scores, target=target, sample_idx=int(sample_idx))
            )

    def compute_metrics(self, results: list) -> dict[str, float]:
        """De-duplicate by ``sample_idx`` and compute the mAP.

        Args:
            results (list[dict]): Records of :meth:`process`, all ranks.

        Returns:
            dict[str, float]: ``mAP`` (percent), plus ``mAP_mmpretrain`` and
            ``AP_{class}`` when requested.
        """
        unique: dict[int, dict] = {}
        for record in results:
            unique.setdefault(record['sample_idx'], record)
        records = [unique[idx] for idx in sorted(unique)]
        scores = torch.stack([r['scores'] for r in records])
        targets = torch.stack([r['target'] for r in records])
        names = self._class_names()
        if names is not None and len(names) != scores.shape[1]:
            raise ValueError(
                f"{type(self).__name__}: dataset_meta['classes'] has "
                f'{len(names)} classes but the scores have '
                f'{scores.shape[1]}'
            )
        ap = average_precision_per_class(
            scores, targets, self.tie_shift, class_names=names
        )
        metrics = {'mAP': float(ap.mean())}
        if self.report_mmpretrain:
            metrics['mAP_mmpretrain'] = float(
                AveragePrecision.calculate(scores, targets, average='macro')
            )
        if self.per_class:
            for j, value in enumerate(ap):
                name = names[j] if names is not None else j
                metrics[f'AP_{name}'] = float(value)
        return metrics
