"""``GalleryRetrievalMixin`` (san.md §3.4)."""

from __future__ import annotations

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader, Dataset

from projects.san.models.gallery_retrieval import GalleryRetrievalMixin
from projects.san.models.sbir_data_preprocessor import SANSBIRDataPreprocessor


class TinyGallery(Dataset):
    """Image i is constant i (uint8), labelled i % 3."""

    def __init__(self, n: int = 7) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        sample = DataSample().set_gt_label(i % 3)
        img = torch.full((3, 4, 4), i, dtype=torch.uint8)
        return dict(inputs=img, data_samples=sample)


class MeanRetriever(GalleryRetrievalMixin, BaseModel):
    """Embedding = per-channel mean of the normalised image (+10 if photo).

    Records the mode, grad state and modality of every extract_feat call.
    """

    def __init__(self) -> None:
        super().__init__(
            data_preprocessor=SANSBIRDataPreprocessor(
                mean=(0, 0, 0),
                std=(1, 1, 1),
                to_rgb=False,
                photo_mean=(1, 1, 1),
            )
        )
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls = []

    def extract_feat(self, inputs, modality='sketch'):
        self.calls.append((self.training, torch.is_grad_enabled(), modality))
        feat = inputs.mean(dim=(2, 3)) * self.scale
        return feat + (10.0 if modality == 'photo' else 0.0)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.predict(inputs, data_samples)


def _loader(n=7, batch_size=3):
    return DataLoader(
        TinyGallery(n), batch_size=batch_size, collate_fn=pseudo_collate
    )


@pytest.mark.parametrize('modality', ['photo', 'sketch'])
def test_prepare_gallery_embeds_in_order(modality):
    model = MeanRetriever()
    model.prepare_gallery(_loader(), modality)
    emb, labels = model.gallery_embeddings, model.gallery_labels
    assert emb.dtype == torch.float32 and emb.device.type == 'cpu'
    assert labels.dtype == torch.int64
    assert labels.tolist() == [i % 3 for i in range(7)]
    # Photo statistics subtract 1, then the photo branch adds 10.
    offset = 9.0 if modality == 'photo' else 0.0
    expected = torch.arange(7.0)[:, None].expand(7, 3) + offset
    torch.testing.assert_close(emb, expected)
    assert not emb.requires_grad
    assert {c[2] for c in model.calls} == {modality}


@pytest.mark.parametrize('train_mode', [True, False])
def test_prepare_gallery_uses_eval_no_grad_and_restores_mode(train_mode):
    model = MeanRetriever().train(train_mode)
    model.prepare_gallery(_loader())
    assert model.calls and all(
        not training and not grad for training, grad, _ in model.calls
    )
    assert model.training is train_mode


def test_prepare_gallery_from_config_forces_ordered_sampler():
    model = MeanRetriever()
    cfg = dict(
        batch_size=2,
        num_workers=0,
        dataset=dict(type=TinyGallery, n=5),
        sampler=dict(type='DefaultSampler', shuffle=True),
        collate_fn=dict(type='pseudo_collate'),
    )
    model.prepare_gallery(cfg, 'sketch')
    assert model.gallery_labels.tolist() == [0, 1, 2, 0, 1]
    torch.testing.assert_close(
        model.gallery_embeddings[:, 0], torch.arange(5.0)
    )
    # The caller's config is not modified.
    assert cfg['sampler']['shuffle'] is True


def test_empty_gallery_and_bad_arguments():
    model = MeanRetriever()
    with pytest.raises(ValueError, match='empty'):
        model.prepare_gallery(_loader(n=0))
    with pytest.raises(ValueError, match="'image'"):
        model.prepare_gallery(_loader(), 'image')
    with pytest.raises(TypeError, match='DataLoader or a dataloader config'):
        model.prepare_gallery([1, 2, 3])


def test_predict_attaches_gallery_references():
    model = MeanRetriever()
    queries = torch.arange(24.0).view(2, 3, 2, 2)
    samples = [DataSample().set_gt_label(1), DataSample().set_gt_label(2)]
    with pytest.raises(RuntimeError, match='SANGalleryHook'):
        model.predict(queries, samples)
    model.prepare_gallery(_loader())
    out = model.predict(queries, samples)
    assert len(out) == 2
    for i, sample in enumerate(out):
        assert sample.embedding.shape == (3,)
        assert sample.embedding.dtype == torch.float32
        torch.testing.assert_close(
            sample.embedding, queries[i].mean(dim=(1, 2))
        )
        assert sample.gallery_embeddings is model.gallery_embeddings
        assert sample.gallery_labels is model.gallery_labels
        assert sample.gt_label.item() == i + 1
    # The query modality comes from the samples' metainfo.
    for s in samples:
        s.set_metainfo(dict(modality='photo'))
    out = model.predict(queries, samples)
    torch.testing.assert_close(
        out[0].embedding, queries[0].mean(dim=(1, 2)) + 10
    )


def _gloo_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world
    )
    model = MeanRetriever()
    cfg = dict(
        batch_size=2,
        num_workers=0,
        dataset=dict(type=TinyGallery, n=5),  # 5 = 3 + 2: one padded item
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='pseudo_collate'),
    )
    model.prepare_gallery(cfg, 'photo')
    torch.save(
        dict(
            emb=model.gallery_embeddings,
            labels=model.gallery_labels,
            shard=len(model.calls),
        ),
        f'{out_dir}/rank{rank}.pth',
    )
    dist.destroy_process_group()


def test_two_process_gallery_is_complete_on_every_rank(tmp_path):
    import os

    import torch.multiprocessing as mp

    os.environ.setdefault('OMP_NUM_THREADS', '1')
    mp.spawn(
        _gloo_worker,
        args=(2, str(tmp_path / 'init'), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    single = MeanRetriever()
    single.prepare_gallery(_loader(n=5, batch_size=2), 'photo')
    for rank in range(2):
        got = torch.load(tmp_path / f'rank{rank}.pth', weights_only=True)
        # Each rank embedded only its shard (3 items = 2 batches)...
        assert got['shard'] == 2
        # ...but holds the whole gallery, in order, without the padding.
        assert got['labels'].tolist() == single.gallery_labels.tolist()
        torch.testing.assert_close(got['emb'], single.gallery_embeddings)
