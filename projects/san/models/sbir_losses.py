"""Metric-learning losses of the SAN fork's SBIR training (san.md §3.3).

Both losses act on L2-normalised embeddings; the caller normalises them
(``F.normalize`` along the feature axis), as the fork's ``tool/sbir_train.py``
does before calling its criteria.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ['sbir_contrastive_loss', 'sbir_triplet_loss']


def _check_pair(
    sketch_emb: torch.Tensor,
    photo_emb: torch.Tensor,
    sketch_labels: torch.Tensor,
    photo_labels: torch.Tensor,
) -> None:
    if sketch_emb.dim() != 2 or sketch_emb.shape != photo_emb.shape:
        raise ValueError(
            'sbir_contrastive_loss: sketch_emb and photo_emb must both be '
            f'(B, D), got {tuple(sketch_emb.shape)} and '
            f'{tuple(photo_emb.shape)}'
        )
    batch = sketch_emb.shape[0]
    if batch < 1:
        raise ValueError('sbir_contrastive_loss: empty batch (B = 0)')
    for name, labels in (
        ('sketch_labels', sketch_labels),
        ('photo_labels', photo_labels),
    ):
        if labels.shape != (batch,):
            raise ValueError(
                f'sbir_contrastive_loss: {name} must be ({batch},), got '
                f'{tuple(labels.shape)}'
            )


def sbir_contrastive_loss(
    sketch_emb: torch.Tensor,
    photo_emb: torch.Tensor,
    sketch_labels: torch.Tensor,
    photo_labels: torch.Tensor,
    margin: float = 0.7,
) -> torch.Tensor:
    """Contrastive loss with hard-negative mining (the fork's
    ``ContrastiveLossHardNegative``).

    With d(a, b) = ‖a − b‖₂ the Euclidean distance (not squared; the fork
    takes ``torch.cdist`` for the negatives and squares only the positive
    ``pairwise_distance``):

    - pos = mean of d(s_i, p_i)² over the batch's own pairs with
      y_s[i] = y_p[i]; 0 when there is none (upstream: NaN);
    - neg = mean of max(0, margin − d)² over the k = min(⌊B/2⌋, #neg)
      smallest d(s_i, p_j) among all pairs (i, j) with y_s[i] ≠ y_p[j];
      0 when k = 0 (upstream: NaN);
    - L = (pos + neg) / 2.

    Distances are exact (no matrix-product shortcut and no ``eps`` inside
    the norm); a zero negative distance gets a zero gradient, as in
    ``cdist``.

    Args:
        sketch_emb (Tensor): (B, D) L2-normalised sketch embeddings.
        photo_emb (Tensor): (B, D) L2-normalised photo embeddings; row i is
            the photo paired with sketch i.
        sketch_labels (Tensor): (B,) integer classes of the sketches.
        photo_labels (Tensor): (B,) integer classes of the photos.
        margin (float): Margin of the negative term (distance units).
            Defaults to 0.7.

    Returns:
        Tensor: Scalar loss (squared distance units).

    Raises:
        ValueError: Mismatched or non-(B, D) shapes, or an empty batch.
    """
    _check_pair(sketch_emb, photo_emb, sketch_labels, photo_labels)
    same = sketch_labels == photo_labels
    if bool(same.any()):
        diff = sketch_emb[same] - photo_emb[same]
        pos = diff.pow(2).sum(dim=1).mean()
    else:
        pos = sketch_emb.new_zeros(())
    dist = torch.cdist(
        sketch_emb.unsqueeze(0),
        photo_emb.unsqueeze(0),
        compute_mode='donot_use_mm_for_euclid_dist',
    ).squeeze(0)
    neg_dist = dist[sketch_labels.unsqueeze(1) != photo_labels.unsqueeze(0)]
    k = min(sketch_emb.shape[0] // 2, neg_dist.numel())
    if k > 0:
        hardest = torch.topk(neg_dist, k, largest=False, sorted=False).values
        neg = (margin - hardest).clamp(min=0).pow(2).mean()
    else:
        neg = sketch_emb.new_zeros(())
    return (pos + neg) / 2


def sbir_triplet_loss(
    sketch_emb: torch.Tensor,
    positive_emb: torch.Tensor,
    negative_emb: torch.Tensor,
    margin: float = 0.7,
) -> torch.Tensor:
    """Triplet margin loss on L2-normalised embeddings (phase 3).

    ``torch.nn.functional.triplet_margin_loss`` (p = 2, its ``eps`` = 1e-6
    inside the norm, mean over the batch), as the fork's
    ``nn.TripletMarginLoss(margin)``: mean_i max(0, d(s_i, p⁺_i) −
    d(s_i, p⁻_i) + margin).

    Args:
        sketch_emb (Tensor): (B, D) anchors.
        positive_emb (Tensor): (B, D) same-class photos.
        negative_emb (Tensor): (B, D) other-class photos.
        margin (float): Margin (distance units). Defaults to 0.7.

    Returns:
        Tensor: Scalar loss.
    """
    shapes = {tuple(t.shape) for t in (sketch_emb, positive_emb, negative_emb)}
    if len(shapes) != 1 or sketch_emb.dim() != 2:
        raise ValueError(
            'sbir_triplet_loss: the three embeddings must have one (B, D) '
            f'shape, got {sorted(shapes)}'
        )
    return F.triplet_margin_loss(
        sketch_emb, positive_emb, negative_emb, margin=margin
    )
