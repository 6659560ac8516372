"""``SANEmbeddingRetriever`` (san.md §2.5, §3.4 zero-shot)."""

from __future__ import annotations

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader

import projects.san.models.embedding_retriever  # noqa: F401  (registers)
import projects.san.models.mixed_net  # noqa: F401
from shared.registry import MODELS

BACKBONE = dict(
    type='SANMixedNet',
    layers=(1, 1, 1, 1),
    layer_types=('res',) * 4,
    widths=(32, 64, 64, 128),
)


def _retriever(**kw):
    return MODELS.build(
        dict(type='SANEmbeddingRetriever', backbone=BACKBONE, **kw)
    )


def _images(n, seed, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def test_embedding_is_pooled_last_stage():
    torch.manual_seed(0)
    model = _retriever().eval()
    x = _images(2, 0)
    with torch.no_grad():
        emb = model(x, mode='tensor')
        last = model.backbone(x)[-1]
    assert last.shape[:2] == (2, 128)
    assert emb.shape == (2, 128)
    # Global average pooling, one channel at a time.
    for n in range(2):
        for c in range(128):
            assert emb[n, c].item() == pytest.approx(
                last[n, c].sum().item() / last[n, c].numel(),
                rel=1e-5,
                abs=1e-6,
            )
    # One backbone for both modalities.
    with torch.no_grad():
        torch.testing.assert_close(model.extract_feat(x, 'photo'), emb)


def test_loads_a_classifier_checkpoint_backbone(tmp_path):
    torch.manual_seed(1)
    clf = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=BACKBONE,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=4,
                in_channels=128,
                init_cfg=None,
            ),
        )
    ).eval()
    model = _retriever().eval()
    result = model.load_state_dict(clf.state_dict(), strict=False)
    assert result.missing_keys == []
    assert set(result.unexpected_keys) == {'head.fc.weight', 'head.fc.bias'}
    x = _images(2, 1)
    with torch.no_grad():
        torch.testing.assert_close(
            model.extract_feat(x), clf.extract_feat(x)[-1]
        )


def test_loss_mode_is_refused():
    model = _retriever()
    with pytest.raises(ValueError, match='evaluation model'):
        model(_images(2, 0), [DataSample(), DataSample()], mode='loss')
    with pytest.raises(ValueError, match="mode must be 'predict'"):
        model(_images(2, 0), mode='feat')


def test_gallery_and_predict():
    torch.manual_seed(2)
    model = _retriever()
    imgs = [
        torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(5)
    ]
    items = [
        dict(inputs=img, data_samples=DataSample().set_gt_label(i % 2))
        for i, img in enumerate(imgs)
    ]
    loader = DataLoader(items, batch_size=2, collate_fn=pseudo_collate)
    model.prepare_gallery(loader, 'sketch')
    assert model.training  # restored
    assert model.gallery_embeddings.shape == (5, 128)
    assert model.gallery_labels.tolist() == [0, 1, 0, 1, 0]
    # The gallery equals an eval-mode embedding of the normalised images.
    model.eval()
    data = model.data_preprocessor(dict(inputs=imgs), False)
    with torch.no_grad():
        ref = model.extract_feat(data['inputs'])
        torch.testing.assert_close(model.gallery_embeddings, ref)
        out = model(data['inputs'][:2], mode='predict')
    assert len(out) == 2
    torch.testing.assert_close(out[1].embedding, ref[1])
    assert out[0].gallery_labels is model.gallery_labels
