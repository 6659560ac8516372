"""Predict-mode outputs under the localization-map contract.

Every WSOL model (``CAMClassifier``, TS-CAM, the WSOL-SST modes) hands the
shared metrics the same fields (``evaluation.md`` §2.1): ``pred_score``,
``pred_label``, ``loc_labels`` (the top-min(5, C) classes ranked by logit,
then the ground-truth class(es)) and ``loc_maps`` (one raw map per entry of
``loc_labels``). :func:`pack_loc_samples` builds them from a batch of logits
and a per-image map function, with the checks every model needs: labels in
range, and finite logits and maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from mmpretrain.structures import DataSample

__all__ = [
    'LOC_TOPK',
    'check_gt_labels',
    'pack_loc_samples',
    'rank_classes',
    'sample_name',
]

#: Number of ranked predictions in ``loc_labels`` (at most; min(5, C)).
LOC_TOPK = 5


def sample_name(sample: DataSample | None, position: int) -> str:
    """``sample_idx=…`` (and the image path) of a sample, for messages."""
    if sample is None:
        return f'batch position {position}'
    idx = sample.get('sample_idx', None)
    name = (
        f'sample_idx={idx}'
        if idx is not None
        else f'batch position {position}'
    )
    path = sample.get('img_path', None)
    return f'{name} ({path})' if path is not None else name


def check_gt_labels(
    data_samples: Sequence[DataSample | None] | None,
    num_classes: int,
    owner: str,
) -> None:
    """Raise ``ValueError`` naming every sample with a label outside [0, C).

    Args:
        data_samples: The batch's samples (``None`` entries are skipped).
        num_classes (int): C.
        owner (str): Model name for the message.
    """
    samples = [
        (pos, sample)
        for pos, sample in enumerate(data_samples or ())
        if sample is not None and 'gt_label' in sample
    ]
    if not samples:
        return
    labels = [sample.gt_label.reshape(-1) for _, sample in samples]
    flat = torch.cat(labels)
    # One reduction (one device sync) for the batch; the loop below only
    # runs to name the offenders.
    if not flat.numel() or bool(((flat >= 0) & (flat < num_classes)).all()):
        return
    bad = [
        f'{sample_name(sample, pos)}: {label.tolist()}'
        for (pos, sample), label in zip(samples, labels)
        if label.numel()
        and (int(label.min()) < 0 or int(label.max()) >= num_classes)
    ]
    raise ValueError(
        f'{owner}: gt_label outside [0, {num_classes}) for ' + '; '.join(bad)
    )


def rank_classes(logits: torch.Tensor, topk: int = LOC_TOPK) -> torch.Tensor:
    """Top-min(topk, C) classes by logit, descending, ties by class index.

    Args:
        logits (torch.Tensor): (B, C).
        topk (int): Number of ranked classes at most.

    Returns:
        torch.Tensor: int64 (B, min(topk, C)).
    """
    ranking = torch.sort(logits.detach(), dim=1, descending=True, stable=True)
    return ranking.indices[:, : min(topk, logits.size(1))]


def _check_finite_logits(
    logits: torch.Tensor,
    data_samples: Sequence[DataSample | None],
    owner: str,
) -> None:
    bad = ~torch.isfinite(logits.detach()).all(dim=1)
    if bool(bad.any()):
        names = ', '.join(
            sample_name(data_samples[i], i)
            for i in torch.nonzero(bad).flatten().tolist()
        )
        raise FloatingPointError(
            f'{owner}: NaN or inf in the logits of {names} '
            '(a broken checkpoint or fp16 overflow?)'
        )


def pack_loc_samples(
    logits: torch.Tensor,
    data_samples: Sequence[DataSample | None] | None,
    class_maps: Callable[[int, torch.Tensor], torch.Tensor],
    owner: str,
) -> list[DataSample]:
    """Fill ``pred_score``, ``pred_label``, ``loc_labels`` and ``loc_maps``.

    Args:
        logits (torch.Tensor): (B, C) logits of the batch.
        data_samples: The batch's samples or ``None``; their ``gt_label``
            (if any) is appended to ``loc_labels`` and checked against C.
        class_maps: ``class_maps(i, labels)`` returns the raw maps
            (K, h, w) of image i for the int64 class indices ``labels`` (K,).
        owner (str): Model name used in error messages.

    Returns:
        list[DataSample]: The given samples (new ones where ``None``) with
        ``pred_score`` (C,) softmax of the logits, ``pred_label`` (1,) the
        top-1 class, ``loc_labels`` int64 (K,) and ``loc_maps`` float32
        (K, h, w), detached and un-normalised.

    Raises:
        ValueError: A ``gt_label`` is outside [0, C).
        FloatingPointError: NaN or inf in the logits or in a map; the
            message names the samples.
    """
    batch = logits.size(0)
    if data_samples is None:
        data_samples = [None] * batch
    if len(data_samples) != batch:
        raise ValueError(
            f'{owner}: {len(data_samples)} data samples for a batch of '
            f'{batch} images'
        )
    num_classes = logits.size(1)
    check_gt_labels(data_samples, num_classes, owner)
    _check_finite_logits(logits, data_samples, owner)
    scores = logits.detach().float().softmax(dim=1)
    ranked = rank_classes(logits)
    outputs, maps = [], []
    for i, sample in enumerate(data_samples):
        sample = DataSample() if sample is None else sample
        labels = ranked[i]
        if 'gt_label' in sample:
            gt = sample.gt_label.reshape(-1).to(labels.device).long()
            labels = torch.cat([labels, gt])
        sample.set_pred_score(scores[i])
        sample.set_pred_label(ranked[i, :1])
        sample.set_field(labels.long(), 'loc_labels', dtype=torch.Tensor)
        maps.append(class_maps(i, labels).detach().float())
        outputs.append(sample)
    if not bool(torch.isfinite(torch.cat([m.flatten() for m in maps])).all()):
        bad = [i for i, m in enumerate(maps) if not torch.isfinite(m).all()]
        names = ', '.join(sample_name(data_samples[i], i) for i in bad)
        raise FloatingPointError(
            f'{owner}: NaN or inf in the localization maps of {names} '
            '(a broken checkpoint or fp16 overflow?)'
        )
    for sample, cams in zip(outputs, maps):
        sample.set_field(cams, 'loc_maps', dtype=torch.Tensor)
    return outputs
