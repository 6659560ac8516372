"""``SANSBIRDataPreprocessor`` (san.md §3.3)."""

from __future__ import annotations

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmpretrain.structures import DataSample

from projects.san.models.sbir_data_preprocessor import SANSBIRDataPreprocessor
from shared.registry import MODELS

SK_MEAN, SK_STD = (10.0, 20.0, 30.0), (2.0, 4.0, 8.0)
PH_MEAN, PH_STD = (100.0, 110.0, 120.0), (50.0, 60.0, 70.0)


def _pre(**kw):
    kw.setdefault('sketch_mean', SK_MEAN)
    kw.setdefault('sketch_std', SK_STD)
    kw.setdefault('photo_mean', PH_MEAN)
    kw.setdefault('photo_std', PH_STD)
    return MODELS.build(dict(type='SANSBIRDataPreprocessor', **kw))


def _imgs(n, seed, size=(5, 4)):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8)
        for _ in range(n)
    ]


def _expected(imgs, mean, std, to_rgb=True):
    """Per pixel: flip BGR→RGB, then (x − mean_c) / std_c."""
    out = torch.empty(len(imgs), 3, *imgs[0].shape[1:])
    for b, img in enumerate(imgs):
        for c in range(3):
            src = 2 - c if to_rgb else c
            out[b, c] = (img[src].float() - mean[c]) / std[c]
    return out


def test_pair_batch_from_pseudo_collate():
    sketches, photos, negs = _imgs(3, 0), _imgs(3, 1), _imgs(3, 2)
    samples = [
        dict(inputs=[s, p, n], data_samples=DataSample())
        for s, p, n in zip(sketches, photos, negs)
    ]
    batch = pseudo_collate(samples)
    out = _pre()(batch, True)
    views = out['inputs']
    assert isinstance(views, list) and len(views) == 3
    for v in views:
        assert v.dtype == torch.float32 and v.shape == (3, 3, 5, 4)
    torch.testing.assert_close(views[0], _expected(sketches, SK_MEAN, SK_STD))
    torch.testing.assert_close(views[1], _expected(photos, PH_MEAN, PH_STD))
    torch.testing.assert_close(views[2], _expected(negs, PH_MEAN, PH_STD))
    assert len(out['data_samples']) == 3


def test_stacked_views_and_no_rgb_flip():
    sketches, photos = _imgs(2, 3), _imgs(2, 4)
    data = dict(inputs=[torch.stack(sketches), torch.stack(photos)])
    out = _pre(to_rgb=False)(data)
    torch.testing.assert_close(
        out['inputs'][0], _expected(sketches, SK_MEAN, SK_STD, False)
    )
    torch.testing.assert_close(
        out['inputs'][1], _expected(photos, PH_MEAN, PH_STD, False)
    )


@pytest.mark.parametrize(
    ('modality', 'stats'),
    [
        (None, (SK_MEAN, SK_STD)),
        ('sketch', (SK_MEAN, SK_STD)),
        ('photo', (PH_MEAN, PH_STD)),
    ],
)
def test_single_view_uses_sample_modality(modality, stats):
    imgs = _imgs(2, 5)
    samples = [DataSample() for _ in imgs]
    if modality is not None:
        for s in samples:
            s.set_metainfo(dict(modality=modality))
    out = _pre()(dict(inputs=imgs, data_samples=samples))
    assert isinstance(out['inputs'], torch.Tensor)
    torch.testing.assert_close(out['inputs'], _expected(imgs, *stats))
    # A stacked tensor gives the same.
    out2 = _pre()(dict(inputs=torch.stack(imgs), data_samples=samples))
    torch.testing.assert_close(out2['inputs'], out['inputs'])


def test_mean_std_default_for_both_modalities():
    pre = SANSBIRDataPreprocessor(mean=(1, 2, 3), std=(4, 5, 6))
    imgs = _imgs(2, 6)
    out = pre(dict(inputs=[imgs, imgs]))
    torch.testing.assert_close(out['inputs'][0], out['inputs'][1])
    torch.testing.assert_close(
        out['inputs'][0], _expected(imgs, (1, 2, 3), (4, 5, 6))
    )


def test_errors():
    pre = _pre()
    mixed = [DataSample(), DataSample()]
    mixed[0].set_metainfo(dict(modality='photo'))
    with pytest.raises(ValueError, match='one modality'):
        pre(dict(inputs=_imgs(2, 0), data_samples=mixed))
    odd = [DataSample()]
    odd[0].set_metainfo(dict(modality='image'))
    with pytest.raises(ValueError, match="'image'"):
        pre(dict(inputs=_imgs(1, 0), data_samples=odd))
    with pytest.raises(ValueError, match='same batch size'):
        pre(dict(inputs=[_imgs(2, 0), _imgs(3, 1)]))
    with pytest.raises(ValueError, match='one shape'):
        pre(dict(inputs=_imgs(1, 0) + _imgs(1, 1, size=(4, 4))))
    with pytest.raises(ValueError, match='photo_std must be > 0'):
        _pre(photo_std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match='sketch_mean needs 3 values'):
        _pre(sketch_mean=(1.0,))


def test_statistics_are_not_in_the_state_dict():
    assert _pre().state_dict() == {}
