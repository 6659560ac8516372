"""Retrieval measures by their definitions (``evaluation.md`` §7,
``san.md`` §3.4), one query and one gallery item at a time in plain Python.

Cosine score of L2-normalised embeddings (an all-zero embedding scores 0);
descending score, ties by ascending gallery index; relevant = same label;
AP over the whole ranking, P@K divided by K, RR = 1 / first relevant rank;
0 for all three without a relevant item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ['bruteforce_retrieval']


def _normalise(vector: Sequence[float]) -> list[float]:
    values = [float(v) for v in vector]
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0.0:
        return values
    return [v / norm for v in values]


def bruteforce_retrieval(
    query_emb,
    query_labels,
    gallery_emb,
    gallery_labels,
    topk: Sequence[int] = (10,),
    exclude: Sequence[int] | None = None,
) -> dict[str, list[float]]:
    """Per-query ``AP``, ``P@K`` and ``RR`` in percent.

    Args:
        query_emb: (Nq, D) nested sequence / array.
        query_labels: (Nq,) labels.
        gallery_emb: (Ng, D).
        gallery_labels: (Ng,).
        topk (Sequence[int]): The K values.
        exclude (Sequence[int], optional): Per query the gallery index left
            out of its ranking, or -1.

    Returns:
        dict[str, list[float]]: ``'AP'``, ``'P@{K}'``, ``'RR'`` per query.
    """
    gallery = [_normalise(g) for g in gallery_emb]
    out: dict[str, list[float]] = {'AP': [], 'RR': []}
    for k in topk:
        out[f'P@{k}'] = []
    for qi, q in enumerate(query_emb):
        q = _normalise(q)
        items = []
        for gi, g in enumerate(gallery):
            if exclude is not None and exclude[qi] == gi:
                continue
            score = sum(a * b for a, b in zip(q, g))
            items.append((score, gi))
        ranking = sorted(items, key=lambda item: (-item[0], item[1]))
        relevant = [
            gallery_labels[gi] == query_labels[qi] for _, gi in ranking
        ]
        num_relevant = sum(relevant)
        ap = 0.0
        rr = 0.0
        seen = 0
        for rank, is_relevant in enumerate(relevant, start=1):
            if is_relevant:
                seen += 1
                ap += seen / rank
                if rr == 0.0:
                    rr = 1.0 / rank
        out['AP'].append(100.0 * ap / num_relevant if num_relevant else 0.0)
        out['RR'].append(100.0 * rr)
        for k in topk:
            out[f'P@{k}'].append(100.0 * sum(relevant[:k]) / k)
    return out
