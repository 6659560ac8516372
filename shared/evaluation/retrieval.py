"""Retrieval measures of the SAN fork's SBIR evaluation (``evaluation.md``
§7).

Embeddings are L2-normalised and scored by their dot product (cosine
similarity). Each query ranks the gallery by descending score, ties by
ascending gallery index (a stable sort). An item is relevant when its label
equals the query's. Per query:

- ``AP``: mean over the relevant items of (relevant items up to its rank) /
  rank, over the whole ranking (mAP@all);
- ``P@K``: relevant items among the first ``K`` / ``K``, also when ``K``
  exceeds the gallery;
- ``RR``: 1 / rank of the first relevant item.

A query without any relevant item scores 0 on all three (torchmetrics'
default, which the fork used). Nothing depends on torchmetrics or on
``np.in1d``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ['retrieval_metrics']

#: Norms below this are clamped, as ``torch.nn.functional.normalize`` does:
#: an all-zero embedding stays zero and scores 0 against everything.
_NORM_EPS = 1e-12


def _embeddings(value, name: str) -> np.ndarray:
    """Validate an ``(n, D)`` embedding matrix; return it L2-normalised in
    float64."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    emb = np.asarray(value)
    if emb.dtype.kind not in 'biuf':
        raise TypeError(f'{name} must be real, got dtype {emb.dtype}')
    if emb.ndim != 2:
        raise ValueError(f'{name} must have shape (n, D), got {emb.shape}')
    emb = emb.astype(np.float64)
    finite = np.isfinite(emb)
    if not finite.all():
        row = int(np.argwhere(~finite)[0, 0])
        raise ValueError(f'{name} row {row} has non-finite values')
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.maximum(norm, _NORM_EPS)


def _labels(value, length: int, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    labels = np.asarray(value)
    if labels.shape != (length,):
        raise ValueError(
            f'{name} must have shape ({length},) to match the embeddings, '
            f'got {labels.shape}'
        )
    return labels


def _topk(topk: int | Sequence[int]) -> tuple[int, ...]:
    ks = (topk,) if isinstance(topk, (int, np.integer)) else tuple(topk)
    if not ks:
        raise ValueError('topk must name at least one K')
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f'topk values must be integers, got {k!r}')
        if k < 1:
            raise ValueError(f'topk values must be >= 1, got {k}')
    return tuple(int(k) for k in ks)


def _exclude(
    exclude_self, num_queries: int, num_gallery: int
) -> np.ndarray | None:
    """Return the (Nq,) gallery index to drop per query (-1: none)."""
    if exclude_self is None or exclude_self is False:
        return None
    if exclude_self is True:
        if num_queries != num_gallery:
            raise ValueError(
                'exclude_self=True means query i is gallery item i, but '
                f'there are {num_queries} queries and {num_gallery} gallery '
                'items; pass a (Nq,) array of gallery indices instead'
            )
        return np.arange(num_queries)
    if isinstance(exclude_self, torch.Tensor):
        exclude_self = exclude_self.detach().cpu().numpy()
    idx = np.asarray(exclude_self)
    if idx.shape != (num_queries,) or idx.dtype.kind not in 'iu':
        raise ValueError(
            'exclude_self must be None, True or an integer array of shape '
            f'({num_queries},), got {idx.dtype} {idx.shape}'
        )
    bad = (idx < -1) | (idx >= num_gallery)
    if bad.any():
        q = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f'exclude_self[{q}] = {idx[q]} is not a gallery index in '
            f'[0, {num_gallery}) nor -1'
        )
    return idx.astype(np.int64)


def retrieval_metrics(
    query_emb: np.ndarray | torch.Tensor,
    query_labels: np.ndarray | torch.Tensor | Sequence,
    gallery_emb: np.ndarray | torch.Tensor,
    gallery_labels: np.ndarray | torch.Tensor | Sequence,
    topk: int | Sequence[int] = (10,),
    exclude_self: bool | np.ndarray | torch.Tensor | None = None,
    per_query: bool = False,
    chunk: int = 1024,
) -> dict[str, float] | dict[str, np.ndarray]:
    """mAP@all, precision@K and MRR of cosine retrieval, in percent.

    Scores are computed in float64 on CPU, ``chunk`` queries at a time, so
    the working memory is ``O(chunk x Ng)`` (at most about 30 bytes per
    query-gallery pair).

    Args:
        query_emb: ``(Nq, D)`` query embeddings (numpy array or tensor).
        query_labels: ``(Nq,)`` query labels (any type comparable by ``==``).
        gallery_emb: ``(Ng, D)`` gallery embeddings, ``Ng >= 1``.
        gallery_labels: ``(Ng,)`` gallery labels.
        topk (int | Sequence[int]): The ``K`` of the precision@K values.
        exclude_self: Removes a query's own item when the queries are part
            of the gallery. ``None`` (default) removes nothing; ``True``
            means query ``i`` is gallery item ``i`` (requires ``Nq = Ng``);
            an integer ``(Nq,)`` array gives per query the gallery index to
            remove, ``-1`` for none. A removed item takes no rank and is
            never relevant (``P@K`` still divides by ``K``).
        per_query (bool): Return per-query values instead of the means.
        chunk (int): Number of queries scored at once.

    Returns:
        dict: With ``per_query=False``: floats ``'mAP'``, ``'P@{K}'`` per
        ``K`` and ``'MRR'``, the means over queries in percent. With
        ``per_query=True``: float64 ``(Nq,)`` arrays ``'AP'``, ``'P@{K}'``
        and ``'RR'`` in percent, whose means are exactly the values above.
        Empty queries give empty arrays.

    Raises:
        TypeError: On non-numeric embeddings or non-integer ``topk``.
        ValueError: On an embedding-dimension mismatch, an empty gallery,
            non-finite embeddings, label lengths that do not match, an
            invalid ``exclude_self``, ``K < 1``, ``chunk < 1`` or, for the
            means, no query.
    """
    query = _embeddings(query_emb, 'query_emb')
    gallery = _embeddings(gallery_emb, 'gallery_emb')
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f'query embeddings have dimension {query.shape[1]} but gallery '
            f'embeddings have dimension {gallery.shape[1]}'
        )
    num_queries, num_gallery = len(query), len(gallery)
    if num_gallery == 0:
        raise ValueError('the gallery is empty: nothing to retrieve')
    qlabels = _labels(query_labels, num_queries, 'query_labels')
    glabels = _labels(gallery_labels, num_gallery, 'gallery_labels')
    ks = _topk(topk)
    excluded = _exclude(exclude_self, num_queries, num_gallery)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)):
        raise TypeError(f'chunk must be an integer, got {chunk!r}')
    if chunk < 1:
        raise ValueError(f'chunk must be >= 1, got {chunk}')
    if num_queries == 0 and not per_query:
        raise ValueError('no query: the means are undefined')

    ap = np.zeros(num_queries, dtype=np.float64)
    rr = np.zeros(num_queries, dtype=np.float64)
    hits = {k: np.zeros(num_queries, dtype=np.int64) for k in ks}
    ranks = np.arange(1, num_gallery + 1, dtype=np.float64)
    for start in range(0, num_queries, chunk):
        stop = min(start + chunk, num_queries)
        scores = query[start:stop] @ gallery.T  # (n, Ng)
        relevant = qlabels[start:stop, None] == glabels[None, :]
        if excluded is not None:
            rows = np.flatnonzero(excluded[start:stop] >= 0)
            cols = excluded[start:stop][rows]
            # Last place (scores are >= -1) and never relevant: the item
            # takes no rank before any relevant one.
            scores[rows, cols] = -np.inf
            relevant[rows, cols] = False
        order = np.argsort(-scores, axis=1, kind='stable')
        del scores
        rel = np.take_along_axis(relevant, order, axis=1)
        del order, relevant
        found = np.cumsum(rel, axis=1, dtype=np.int32)  # (n, Ng)
        num_rel = found[:, -1]
        has_rel = num_rel > 0
        precision_sum = np.where(rel, found / ranks, 0.0).sum(axis=1)
        ap[start:stop][has_rel] = precision_sum[has_rel] / num_rel[has_rel]
        first = np.argmax(rel, axis=1)
        rr[start:stop][has_rel] = 1.0 / (first[has_rel] + 1)
        for k in ks:
            hits[k][start:stop] = found[:, min(k, num_gallery) - 1]

    out = {'AP': 100.0 * ap}
    for k in ks:
        out[f'P@{k}'] = 100.0 * hits[k] / k
    out['RR'] = 100.0 * rr
    if per_query:
        return out
    means = {'mAP': float(out['AP'].mean())}
    for k in ks:
        means[f'P@{k}'] = float(out[f'P@{k}'].mean())
    means['MRR'] = float(out['RR'].mean())
    return means
