"""``SANRetrievalMetric`` against a brute-force AP / RR / P@K, and under
2-process gloo with padded sharding (``san.md`` §3.4, §6 item 22)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.dataset import DefaultSampler

from projects.san.evaluation.retrieval_metric import SANRetrievalMetric
from shared.registry import METRICS

DIM = 6


def brute_force(query, qlabel, gallery, glabels, k=10):
    """AP, RR and P@k (fractions) of one query by explicit loops."""

    def unit(vector):
        norm = math.sqrt(sum(v * v for v in vector))
        return [v / norm for v in vector] if norm > 0 else list(vector)

    q = unit(query)
    scores = [sum(a * b for a, b in zip(q, unit(row))) for row in gallery]
    order = sorted(range(len(gallery)), key=lambda j: (-scores[j], j))
    relevant = [glabels[j] == qlabel for j in order]
    total = sum(relevant)
    if total == 0:
        return 0.0, 0.0, 0.0
    found, precision_sum, rr = 0, 0.0, 0.0
    for rank, rel in enumerate(relevant, start=1):
        if rel:
            found += 1
            precision_sum += found / rank
            if rr == 0.0:
                rr = 1.0 / rank
    hits = sum(relevant[:k])
    return precision_sum / total, rr, hits / k


def make_case(num_queries: int, num_gallery: int, seed: int = 0):
    """Queries and a gallery with many exact score ties.

    Most gallery rows are positive multiples of a one-hot vector: their
    normalised form is exactly that one-hot vector, so their scores equal a
    query coordinate exactly whatever the summation order, and rows sharing
    a direction tie. The last query's label never occurs in the gallery.
    """
    rng = np.random.default_rng(seed)
    gallery = np.zeros((num_gallery, DIM))
    for j in range(num_gallery):
        if j % 5 == 4:
            gallery[j] = rng.normal(size=DIM)  # some rows without ties
        else:
            gallery[j, rng.integers(DIM)] = rng.integers(1, 4)
    glabels = rng.integers(0, 4, num_gallery)
    queries = rng.normal(size=(num_queries, DIM))
    qlabels = rng.integers(0, 4, num_queries)
    qlabels[-1] = 9
    return (
        torch.tensor(queries, dtype=torch.float32),
        torch.tensor(qlabels),
        torch.tensor(gallery, dtype=torch.float32),
        torch.tensor(glabels),
    )


def samples_of(queries, qlabels, gallery, glabels) -> list[dict]:
    """Predictions as the Evaluator hands them to ``process()`` (dicts that
    reference one gallery)."""
    return [
        dict(
            embedding=queries[i],
            gt_label=qlabels[i : i + 1],
            gallery_embeddings=gallery,
            gallery_labels=glabels,
            sample_idx=i,
        )
        for i in range(len(queries))
    ]


def run_metric(metric, samples, batch: int = 3) -> dict:
    for start in range(0, len(samples), batch):
        metric.process(None, samples[start : start + batch])
    return metric.evaluate(len(samples))


def test_registered():
    metric = METRICS.build(dict(type='SANRetrievalMetric'))
    assert isinstance(metric, SANRetrievalMetric)
    assert metric.topk == (10,)


@pytest.mark.parametrize('topk', [10, (1, 5, 10, 40)])
def test_equals_brute_force_with_ties_and_no_relevant(topk):
    queries, qlabels, gallery, glabels = make_case(9, 23)
    # The case really has tied scores among gallery rows of one direction.
    assert len({tuple(r) for r in (gallery > 0).int().tolist()}) < 23
    metric = SANRetrievalMetric(topk=topk)
    out = run_metric(metric, samples_of(queries, qlabels, gallery, glabels))

    ks = (topk,) if isinstance(topk, int) else topk
    refs = {k: [] for k in ks}
    for q in range(len(queries)):
        for k in ks:
            refs[k].append(
                brute_force(
                    queries[q].double().tolist(),
                    int(qlabels[q]),
                    gallery.double().tolist(),
                    glabels.tolist(),
                    k=k,
                )
            )
    ref = refs[ks[0]]
    assert ref[-1] == (0.0, 0.0, 0.0)  # the query with no relevant item
    assert list(out) == [
        'retrieval/mAP',
        'retrieval/MRR',
        *[f'retrieval/P@{k}' for k in ks],
    ]
    assert out['retrieval/mAP'] == pytest.approx(
        100 * np.mean([r[0] for r in ref]), abs=1e-9
    )
    assert out['retrieval/MRR'] == pytest.approx(
        100 * np.mean([r[1] for r in ref]), abs=1e-9
    )
    for k in ks:
        assert out[f'retrieval/P@{k}'] == pytest.approx(
            100 * np.mean([r[2] for r in refs[k]]), abs=1e-9
        )


def test_tie_order_is_gallery_index():
    # Three gallery rows tie for the query; only the last one is relevant.
    gallery = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    glabels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    metric = SANRetrievalMetric(topk=1)
    out = run_metric(
        metric, samples_of(query, torch.tensor([1]), gallery, glabels)
    )
    # Ranks: 0, 1, 2 (tie, by index), then 3. Relevant at ranks 3 and 4.
    assert out['retrieval/MRR'] == pytest.approx(100 / 3)
    assert out['retrieval/mAP'] == pytest.approx(100 * (1 / 3 + 2 / 4) / 2)
    assert out['retrieval/P@1'] == 0.0


def test_samples_with_different_galleries_in_one_batch():
    q1, l1, g1, gl1 = make_case(4, 11, seed=1)
    q2, l2, g2, gl2 = make_case(4, 7, seed=2)
    mixed = samples_of(q1, l1, g1, gl1) + samples_of(q2, l2, g2, gl2)
    mixed = [mixed[i] for i in (0, 4, 1, 5, 2, 6, 3, 7)]
    got = run_metric(SANRetrievalMetric(), mixed, batch=8)
    separate = SANRetrievalMetric()
    separate.process(None, samples_of(q1, l1, g1, gl1))
    separate.process(None, samples_of(q2, l2, g2, gl2))
    assert got == pytest.approx(separate.evaluate(8), abs=1e-9)


def test_errors():
    queries, qlabels, gallery, glabels = make_case(2, 5)
    metric = SANRetrievalMetric()
    wrong_dim = samples_of(queries[:, :4], qlabels, gallery, glabels)
    with pytest.raises(ValueError, match='dimension 4 .* dimension 6'):
        metric.process(None, wrong_dim)
    empty = samples_of(queries, qlabels, gallery[:0], glabels[:0])
    with pytest.raises(ValueError, match='gallery is empty'):
        metric.process(None, empty)
    no_gallery = [dict(embedding=queries[0], gt_label=qlabels[:1])]
    with pytest.raises(ValueError, match='SANGalleryHook'):
        metric.process(None, no_gallery)
    with pytest.raises(ValueError, match='topk values must be >= 1'):
        SANRetrievalMetric(topk=0)
    with pytest.raises(TypeError, match='integers'):
        SANRetrievalMetric(topk=(10, 2.5))


# -- two gloo processes -------------------------------------------------------

NUM_QUERIES = 11  # odd: DefaultSampler pads rank 1 with query 0
NUM_GALLERY = 13


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world
    )
    samples = samples_of(*make_case(NUM_QUERIES, NUM_GALLERY))
    sampler = DefaultSampler(samples, shuffle=False)  # round_up pads
    mine = [samples[i] for i in sampler]
    assert len(mine) == 6
    metric = SANRetrievalMetric(topk=(1, 10))
    results = run_metric_shard(metric, mine, NUM_QUERIES)
    if rank == 0:
        with open(out, 'w') as f:
            json.dump(results, f)
    dist.destroy_process_group()


def run_metric_shard(metric, mine, size):
    for start in range(0, len(mine), 2):
        metric.process(None, mine[start : start + 2])
    return metric.evaluate(size)


def test_two_process_gloo_equals_single_process(tmp_path):
    out = str(tmp_path / 'ddp.json')
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    mp.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / 'init'), out),
        nprocs=2,
        join=True,
    )
    with open(out) as f:
        ddp = json.load(f)
    samples = samples_of(*make_case(NUM_QUERIES, NUM_GALLERY))
    single = run_metric(SANRetrievalMetric(topk=(1, 10)), samples, batch=2)
    assert ddp == single
    # Counting the padded query 0 twice would change the means.
    padded = run_metric(
        SANRetrievalMetric(topk=(1, 10)), samples + samples[:1], batch=2
    )
    assert padded != single
