"""``SANGalleryHook`` in a real Runner's validation and test loops
(``san.md`` §3.4): the gallery is re-embedded with the current weights
before every validation and test run, the test never sees the validation
gallery, and ``SANRetrievalMetric`` scores the result.

The model is a tiny retriever with the gallery interface of
``GalleryRetrievalMixin`` (``prepare_gallery`` / predictions carrying the
gallery); the end-to-end test runs the real SBIR model.
"""

from __future__ import annotations

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch import nn
from torch.utils.data import Dataset

from projects.san.engine.gallery_hook import SANGalleryHook
from projects.san.evaluation.retrieval_metric import SANRetrievalMetric
from shared.registry import HOOKS


class Points(Dataset):
    """``n`` fixed 2-d points with labels."""

    def __init__(self, points, labels):
        self.points = torch.tensor(points, dtype=torch.float32)
        self.labels = torch.tensor(labels)
        self.metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return len(self.points)

    def __getitem__(self, i):
        sample = DataSample().set_gt_label(self.labels[i])
        return dict(inputs=self.points[i], data_samples=sample)


class TinyRetriever(BaseModel):
    """Embedding = a linear map; records every gallery it prepares."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(2, 2)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(2))
            self.proj.bias.zero_()
        self.prepared: list[tuple] = []

    def prepare_gallery(self, dataloader, modality='photo'):
        if isinstance(dataloader, dict):
            dataloader = Runner.build_dataloader(dataloader)
        points = dataloader.dataset.points
        with torch.no_grad():
            self.gallery_embeddings = self.proj(points)
        self.gallery_labels = dataloader.dataset.labels.clone()
        self.prepared.append(
            (len(points), modality, self.proj.weight.detach().clone())
        )

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        emb = self.proj(x)
        if mode == 'loss':
            return dict(loss=emb.pow(2).mean())
        if mode == 'predict':
            out = []
            for e, sample in zip(emb, data_samples):
                sample.set_field(e.detach(), 'embedding')
                sample.set_field(self.gallery_embeddings, 'gallery_embeddings')
                sample.set_field(self.gallery_labels, 'gallery_labels')
                out.append(sample)
            return out
        return emb


QUERIES = Points([[1.0, 0.1], [0.1, 1.0], [1.0, 1.2]], [0, 1, 1])
VAL_GALLERY = Points([[1.0, 0.0], [0.0, 1.0], [1.0, 0.9]], [0, 1, 0])
TEST_GALLERY = Points(
    [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [2.0, 0.1], [0.1, 2.0]],
    [1, 0, 1, 0, 1],
)


def loader(dataset, batch_size=2):
    return dict(
        dataset=dataset,
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=batch_size,
        num_workers=0,
    )


def test_registered_and_errors():
    hook = HOOKS.build(dict(type='SANGalleryHook'))
    assert hook.modality == 'photo'
    with pytest.raises(ValueError, match="modality must be one of .*'video'"):
        SANGalleryHook(modality='video')
    with pytest.raises(TypeError, match='val_gallery must be'):
        SANGalleryHook(val_gallery='photos.txt')


def test_val_and_test_runs_embed_their_own_gallery(tmp_path):
    model = TinyRetriever()
    runner = Runner(
        model=model,
        work_dir=str(tmp_path),
        train_dataloader=loader(QUERIES),
        val_dataloader=loader(QUERIES),
        test_dataloader=loader(QUERIES),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5)),
        train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
        val_cfg=dict(),
        test_cfg=dict(),
        val_evaluator=dict(type='SANRetrievalMetric', topk=1),
        test_evaluator=dict(type='SANRetrievalMetric', topk=1),
        custom_hooks=[
            dict(
                type='SANGalleryHook',
                val_gallery=loader(VAL_GALLERY),
                test_gallery=loader(TEST_GALLERY),
            )
        ],
        default_hooks=dict(checkpoint=None),
        default_scope='mmpretrain',
    )
    runner.train()
    # One validation per epoch, each with the weights of that epoch.
    assert [(n, m) for n, m, _ in model.prepared] == [(3, 'photo')] * 2
    assert not torch.equal(model.prepared[0][2], model.prepared[1][2])
    assert torch.equal(model.prepared[1][2], model.proj.weight.detach())

    metrics = runner.test()
    assert model.prepared[-1][0] == 5  # the test gallery, not the val one
    # Same numbers as scoring the final embeddings directly.
    with torch.no_grad():
        queries = model.proj(QUERIES.points)
        gallery = model.proj(TEST_GALLERY.points)
    direct = SANRetrievalMetric(topk=1)
    direct.process(
        None,
        [
            dict(
                embedding=queries[i],
                gt_label=QUERIES.labels[i : i + 1],
                gallery_embeddings=gallery,
                gallery_labels=TEST_GALLERY.labels,
            )
            for i in range(3)
        ],
    )
    assert metrics == direct.evaluate(3)


def test_missing_gallery_and_model_without_gallery(tmp_path):
    class Plain(BaseModel):
        def forward(self, inputs, data_samples=None, mode='tensor'):
            return inputs

    class FakeRunner:
        def __init__(self, model):
            self.model = model

    hook = SANGalleryHook(val_gallery=loader(VAL_GALLERY))
    with pytest.raises(ValueError, match='test_gallery is None'):
        hook.before_test_epoch(FakeRunner(TinyRetriever()))
    with pytest.raises(TypeError, match='Plain has no prepare_gallery'):
        hook.before_val_epoch(FakeRunner(Plain()))
    # A sketch gallery (zero-shot) is prepared with modality 'sketch'.
    model = TinyRetriever()
    hook = SANGalleryHook(test_gallery=loader(TEST_GALLERY), modality='sketch')
    hook.before_test_epoch(FakeRunner(model))
    assert model.prepared[0][:2] == (5, 'sketch')


# -- two gloo processes: sharded gallery and queries --------------------------

NUM_IMAGES = (7, 9)  # (queries, gallery): both odd, both padded on rank 1
TINY_BACKBONE = dict(
    type='SANMixedNet',
    layer_types=('res', 'res'),
    layers=(1, 1),
    widths=(8, 16),
)


class Images(Dataset):
    """Deterministic uint8 images with labels, as ``PackInputs`` gives."""

    def __init__(self, num: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.randint(
            0, 256, (num, 3, 32, 32), dtype=torch.uint8, generator=gen
        )
        self.labels = torch.arange(num) % 3
        self.metainfo = dict(classes=('a', 'b', 'c'))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        sample = DataSample().set_gt_label(int(self.labels[i]))
        sample.set_metainfo(dict(sample_idx=i))
        return dict(inputs=self.images[i], data_samples=sample)


def _retrieval_numbers() -> dict:
    """Gallery hook + real retriever + metric on the current process group."""
    import projects.san.models.embedding_retriever  # noqa: F401
    import projects.san.models.mixed_net  # noqa: F401
    import projects.san.models.sbir_data_preprocessor  # noqa: F401
    from shared.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='SANEmbeddingRetriever',
            backbone=TINY_BACKBONE,
            data_preprocessor=dict(
                type='SANSBIRDataPreprocessor',
                mean=[127.0] * 3,
                std=[64.0] * 3,
            ),
        )
    )
    model.eval()

    class RunnerStub:  # what the hook reads from a runner
        pass

    runner = RunnerStub()
    runner.model = model
    hook = SANGalleryHook(
        test_gallery=loader(Images(NUM_IMAGES[1], seed=1), batch_size=2)
    )
    hook.before_test_epoch(runner)
    assert model.gallery_embeddings.shape[0] == NUM_IMAGES[1]

    queries = Runner.build_dataloader(loader(Images(NUM_IMAGES[0], seed=2)))
    metric = SANRetrievalMetric(topk=(1, 10))
    for batch in queries:
        outputs = model.test_step(batch)
        metric.process(batch, [o.to_dict() for o in outputs])
    return metric.evaluate(NUM_IMAGES[0])


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    import json

    import torch.distributed as dist

    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world
    )
    results = _retrieval_numbers()
    if rank == 0:
        with open(out, 'w') as f:
            json.dump(results, f)
    dist.destroy_process_group()


def test_two_process_gloo_gallery_and_queries_equal_single_process(tmp_path):
    import json
    import os

    import torch.multiprocessing as mp

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
    single = _retrieval_numbers()
    assert set(ddp) == {
        'retrieval/mAP',
        'retrieval/MRR',
        'retrieval/P@1',
        'retrieval/P@10',
    }
    assert ddp == pytest.approx(single, abs=1e-9)
