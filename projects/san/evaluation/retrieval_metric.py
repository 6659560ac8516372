"""``SANRetrievalMetric``: mAP, MRR and precision@K of sketch-based image
retrieval (``san.md`` §3.4, ``evaluation.md`` §7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from shared.evaluation.retrieval import retrieval_metrics
from shared.registry import METRICS

__all__ = ['SANRetrievalMetric']


def _as_tensor(value, name: str, index: int) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f'SANRetrievalMetric: data sample {index} has {name} of type '
            f'{type(value).__name__}, expected a tensor'
        )
    return value.detach().cpu()


def _field(sample: Mapping, key: str, index: int):
    if key not in sample or sample[key] is None:
        hint = ''
        if key.startswith('gallery'):
            hint = (
                '; the model stores the gallery in each prediction once it '
                'has embedded one: add SANGalleryHook(val_gallery=..., '
                'test_gallery=...) to custom_hooks'
            )
        raise ValueError(
            f'SANRetrievalMetric: data sample {index} has no {key!r}{hint}'
        )
    return sample[key]


def _label(value, index: int) -> int:
    label = _as_tensor(value, 'gt_label', index).reshape(-1)
    if label.numel() != 1:
        raise ValueError(
            'SANRetrievalMetric: a query needs exactly one gt_label, data '
            f'sample {index} has {label.numel()}'
        )
    return int(label.item())


@METRICS.register_module()
class SANRetrievalMetric(BaseMetric):
    """Cosine retrieval of a gallery by each query: mAP, MRR and P@K.

    The model's ``predict`` gives one data sample per query with its
    ``embedding`` (D,), its ``gt_label`` and references to the gallery
    (``gallery_embeddings`` (Ng, D), ``gallery_labels`` (Ng,)), embedded
    once per evaluation by :class:`SANGalleryHook`. ``process`` scores the
    queries against the whole gallery with
    :func:`shared.evaluation.retrieval.retrieval_metrics` and keeps only
    the per-query AP, RR and P@K (``O(queries)`` memory). Queries are
    sharded by ``DefaultSampler(shuffle=False)``; mmengine's
    ``collect_results`` truncates the gathered records to the dataset
    length, which drops the padded duplicates, so every query counts once.

    Definitions (``san.md`` §3.4): cosine scores of L2-normalised
    embeddings; descending rank, ties by gallery index; relevant = same
    label; a query with no relevant item scores 0.

    Args:
        topk (int | Sequence[int]): The ``K`` of the precision@K values.
            Defaults to 10.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str | None): Key prefix. Defaults to ``'retrieval'``, so the
            keys are ``retrieval/mAP``, ``retrieval/MRR``, ``retrieval/P@10``.

    Raises:
        TypeError: Non-integer ``topk``.
        ValueError: ``K < 1``; in ``process``: a sample without embedding,
            label or gallery, an empty gallery, or a query/gallery
            embedding-dimension mismatch.
    """

    default_prefix = 'retrieval'

    def __init__(
        self,
        topk: int | Sequence[int] = 10,
        collect_device: str = 'cpu',
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        ks = (topk,) if isinstance(topk, (int, np.integer)) else tuple(topk)
        if not ks:
            raise ValueError('SANRetrievalMetric: topk names no K')
        for k in ks:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
                raise TypeError(
                    f'SANRetrievalMetric: topk values must be integers, got '
                    f'{k!r}'
                )
            if k < 1:
                raise ValueError(
                    f'SANRetrievalMetric: topk values must be >= 1, got {k}'
                )
        self.topk = tuple(int(k) for k in ks)

    def process(self, data_batch, data_samples: Sequence[Mapping]) -> None:
        """Reduce each query of the batch to its AP, RR and P@K.

        Args:
            data_batch: Unused.
            data_samples (Sequence[dict]): The model's predictions (as
                dicts), each with ``embedding``, ``gt_label``,
                ``gallery_embeddings`` and ``gallery_labels``.
        """
        # Queries of one batch share the gallery object; group by identity
        # so that each gallery is normalised once per batch.
        groups: dict[tuple[int, int], list[int]] = {}
        galleries: dict[tuple[int, int], tuple] = {}
        for i, sample in enumerate(data_samples):
            emb = _field(sample, 'gallery_embeddings', i)
            labels = _field(sample, 'gallery_labels', i)
            key = (id(emb), id(labels))
            groups.setdefault(key, []).append(i)
            galleries[key] = (emb, labels)

        records: list[dict | None] = [None] * len(data_samples)
        for key, indices in groups.items():
            emb, labels = galleries[key]
            gallery = _as_tensor(emb, 'gallery_embeddings', indices[0])
            gallery_labels = _as_tensor(labels, 'gallery_labels', indices[0])
            if gallery.ndim != 2 or gallery.shape[0] == 0:
                raise ValueError(
                    'SANRetrievalMetric: the gallery is empty or not (Ng, D): '
                    f'gallery_embeddings has shape {tuple(gallery.shape)}'
                )
            queries = []
            for i in indices:
                q = _as_tensor(
                    _field(data_samples[i], 'embedding', i), 'embedding', i
                ).reshape(-1)
                if q.numel() != gallery.shape[1]:
                    raise ValueError(
                        f'SANRetrievalMetric: query {i} has an embedding of '
                        f'dimension {q.numel()} but the gallery embeddings '
                        f'have dimension {gallery.shape[1]}'
                    )
                queries.append(q)
            qlabels = [
                _label(_field(data_samples[i], 'gt_label', i), i)
                for i in indices
            ]
            per_query = retrieval_metrics(
                torch.stack(queries),
                np.asarray(qlabels, dtype=np.int64),
                gallery,
                gallery_labels.reshape(-1).long(),
                topk=self.topk,
                per_query=True,
            )
            for row, i in enumerate(indices):
                records[i] = {
                    name: float(values[row])
                    for name, values in per_query.items()
                }
        self.results.extend(records)

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        """Mean AP, RR and P@K over the queries, in percent.

        Args:
            results (list[dict]): One record per query (padding removed).

        Returns:
            dict: ``mAP``, ``MRR`` and ``P@K`` for each K.
        """
        if not results:
            raise ValueError('SANRetrievalMetric: no query was evaluated')
        out = {'mAP': float(np.mean([r['AP'] for r in results]))}
        out['MRR'] = float(np.mean([r['RR'] for r in results]))
        for k in self.topk:
            out[f'P@{k}'] = float(np.mean([r[f'P@{k}'] for r in results]))
        return out
