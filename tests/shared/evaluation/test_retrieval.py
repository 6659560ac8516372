"""Retrieval measures (``evaluation.md`` §7, §10 item 10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmpretrain.evaluation import RetrievalAveragePrecision

from shared.evaluation.retrieval import retrieval_metrics
from tests.reference.retrieval_bruteforce import bruteforce_retrieval

# Unit vectors (after normalisation) whose entries are 0, +-1 or +-1/2:
# every dot product is exact, so ties are exact whatever the summation
# order. The last one is all-zero (scores 0 against everything).
DYADIC = np.array(
    [
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 0, -1],
        [1, 1, 1, 1],
        [1, -1, 1, -1],
        [-1, -1, 1, 1],
        [0, 0, 0, 0],
    ],
    dtype=np.float64,
)


def _exclude_list(exclude, num_queries: int) -> list[int] | None:
    if exclude is None:
        return None
    if exclude is True:
        return list(range(num_queries))
    return np.asarray(exclude).tolist()


def _compare(query, qlab, gallery, glab, topk, exclude=None, **kwargs):
    got = retrieval_metrics(
        query,
        qlab,
        gallery,
        glab,
        topk=topk,
        exclude_self=exclude,
        per_query=True,
        **kwargs,
    )
    ref = bruteforce_retrieval(
        query.tolist(),
        qlab.tolist(),
        gallery.tolist(),
        glab.tolist(),
        topk,
        _exclude_list(exclude, len(query)),
    )
    assert sorted(got) == sorted(ref)
    for key, values in ref.items():
        np.testing.assert_allclose(got[key], values, rtol=1e-12, atol=1e-12)
    means = retrieval_metrics(
        query, qlab, gallery, glab, topk=topk, exclude_self=exclude
    )
    assert means['mAP'] == pytest.approx(np.mean(ref['AP']), abs=1e-12)
    assert means['MRR'] == pytest.approx(np.mean(ref['RR']), abs=1e-12)
    for k in topk:
        assert means[f'P@{k}'] == pytest.approx(
            np.mean(ref[f'P@{k}']), abs=1e-12
        )
    return got


@pytest.mark.parametrize('chunk', [1, 5, 1024])
def test_random_embeddings_match_bruteforce(chunk):
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(40, 8))
    glab = rng.integers(0, 4, 40)
    query = rng.normal(size=(13, 8)).astype(np.float32)
    qlab = np.r_[rng.integers(0, 4, 11), 9, 9]  # two with no relevant item
    got = _compare(query, qlab, gallery, glab, (1, 5, 10, 50), chunk=chunk)
    assert got['AP'][-1] == got['RR'][-1] == got['P@5'][-1] == 0.0


def test_tied_scores_rank_by_gallery_index():
    rng = np.random.default_rng(1)
    for _ in range(10):
        scale = 2.0 ** rng.integers(-2, 3, (30, 1))  # exact rescaling
        gallery = DYADIC[rng.integers(0, len(DYADIC), 30)] * scale
        query = DYADIC[rng.integers(0, len(DYADIC) - 1, 9)]
        glab = rng.integers(0, 3, 30)
        qlab = rng.integers(0, 4, 9)
        _compare(query, qlab, gallery, glab, (1, 3, 30), chunk=4)


def test_hand_cases():
    # Identical gallery items: the relevant one at the higher index ranks
    # second; RR 1/2, AP 1/2, P@1 0.
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    glab = np.array([0, 1, 1])
    got = retrieval_metrics(
        np.array([[2.0, 0.0]]), [1], gallery, glab, topk=(1, 2, 10)
    )
    # Relevant at ranks 2 and 3: AP = (1/2 + 2/3) / 2.
    assert got == pytest.approx(
        {
            'mAP': 100 * 7 / 12,
            'P@1': 0.0,
            'P@2': 50.0,
            'P@10': 20.0,  # K beyond the gallery still divides by K
            'MRR': 50.0,
        },
        abs=1e-12,
    )
    none = retrieval_metrics(np.array([[1.0, 0.0]]), [7], gallery, glab)
    assert none == {'mAP': 0.0, 'P@10': 0.0, 'MRR': 0.0}


def test_exclude_self_equals_removing_the_item():
    rng = np.random.default_rng(2)
    emb = DYADIC[rng.integers(0, len(DYADIC), 25)]
    labels = rng.integers(0, 3, 25)
    labels[-1] = 5  # its only relevant item is itself
    got = _compare(emb, labels, emb, labels, (1, 10, 40), exclude=True)
    assert got['AP'][-1] == 0.0
    for q in range(25):
        keep = np.arange(25) != q
        alone = retrieval_metrics(
            emb[q : q + 1],
            labels[q : q + 1],
            emb[keep],
            labels[keep],
            topk=(1, 10, 40),
            per_query=True,
        )
        for key, values in alone.items():
            assert got[key][q] == values[0], (q, key)
    # Array form: -1 keeps everything.
    exclude = np.where(np.arange(25) % 2 == 0, np.arange(25), -1)
    _compare(emb, labels, emb, labels, (10,), exclude=exclude, chunk=3)
    torch_form = retrieval_metrics(
        emb, labels, emb, labels, exclude_self=torch.from_numpy(exclude)
    )
    assert torch_form == retrieval_metrics(
        emb, labels, emb, labels, exclude_self=exclude
    )


# mmpretrain calls np.array(tensor, copy=False) through its to_tensor.
@pytest.mark.filterwarnings(
    'ignore:__array__ implementation:DeprecationWarning'
)
def test_equals_mmpretrain_ir_ap_without_ties():
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=(60, 16))
    glab = np.arange(60) % 6
    query = rng.normal(size=(20, 16))
    qlab = rng.integers(0, 6, 20)  # every query has relevant items
    gn = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    sim = torch.from_numpy(qn @ gn.T)
    target = torch.from_numpy(qlab[:, None] == glab[None, :]).long()
    expected = RetrievalAveragePrecision.calculate(
        sim, target, topk=len(gallery), mode='IR'
    )
    got = retrieval_metrics(query, qlab, gallery, glab)['mAP']
    assert got == pytest.approx(expected, rel=1e-12)


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(4)
    gallery = rng.normal(size=(12, 5)).astype(np.float32)
    query = rng.normal(size=(4, 5)).astype(np.float32)
    glab, qlab = rng.integers(0, 3, 12), rng.integers(0, 3, 4)
    a = retrieval_metrics(query, qlab, gallery, glab, topk=3)
    b = retrieval_metrics(
        torch.from_numpy(query),
        torch.from_numpy(qlab),
        torch.from_numpy(gallery),
        torch.from_numpy(glab),
        topk=3,
    )
    assert a == b and set(a) == {'mAP', 'P@3', 'MRR'}
    empty = retrieval_metrics(query[:0], qlab[:0], gallery, glab, per_query=1)
    assert all(v.shape == (0,) for v in empty.values())


@pytest.mark.parametrize(
    ('kwargs', 'error', 'match'),
    [
        (dict(gallery_emb=np.zeros((3, 4))), ValueError, 'dimension 5'),
        (dict(gallery_emb=np.zeros((0, 5)), gl=[]), ValueError, 'empty'),
        (dict(query_emb=np.full((2, 5), np.nan)), ValueError, 'query_emb row'),
        (
            dict(gallery_emb=np.eye(3, 5) + [[0], [np.inf], [0]]),
            ValueError,
            'gallery_emb row 1',
        ),
        (dict(gl=[0, 1]), ValueError, 'gallery_labels'),
        (dict(topk=0), ValueError, '>= 1'),
        (dict(topk=(1.5,)), TypeError, 'integers'),
        (dict(chunk=0), ValueError, 'chunk'),
        (dict(exclude_self=True), ValueError, 'query i is gallery item i'),
        (dict(exclude_self=np.array([0, 3])), ValueError, r'\[1\] = 3'),
        (dict(exclude_self=np.array([0])), ValueError, r'shape \(2,\)'),
        (dict(query_emb=np.zeros((0, 5)), ql=[]), ValueError, 'no query'),
    ],
)
def test_errors(kwargs, error, match):
    args = dict(
        query_emb=np.ones((2, 5)),
        ql=[0, 1],
        gallery_emb=np.eye(3, 5),
        gl=[0, 1, 1],
    )
    args.update(kwargs)
    options = {
        k: args.pop(k) for k in ('topk', 'chunk', 'exclude_self') if k in args
    }
    with pytest.raises(error, match=match):
        retrieval_metrics(
            args['query_emb'],
            args['ql'],
            args['gallery_emb'],
            args['gl'],
            **options,
        )
