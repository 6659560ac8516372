"""SSTDataPreprocessor: single/multi-view stacking, normalisation, view checks.

``wsol_sst.md`` §6.1 (B×V×3×H×W or B×3×H×W) and §11 (a view count that does
not match the pipeline's setting is an error).
"""

from __future__ import annotations

import pytest
import torch
from mmpretrain.structures import DataSample

from projects.wsol_sst.models.data_preprocessor import SSTDataPreprocessor
from projects.wsol_sst.models.localizer import SSTLocalizer
from shared.registry import MODELS

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


def uint8_images(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)


def reference(batch: torch.Tensor) -> torch.Tensor:
    """BGR uint8 -> RGB, (x - mean) / std per channel, written out."""
    rgb = batch.float()[..., [2, 1, 0], :, :]
    out = torch.empty_like(rgb)
    for c in range(3):
        out[..., c, :, :] = (rgb[..., c, :, :] - MEAN[c]) / STD[c]
    return out


@pytest.fixture
def preprocessor() -> SSTDataPreprocessor:
    return MODELS.build(
        dict(type='SSTDataPreprocessor', mean=MEAN, std=STD, to_rgb=True)
    )


def test_multi_view_list_is_stacked_and_normalised(preprocessor):
    views = [uint8_images(11, 3, 8, 10, seed=s) for s in range(2)]
    ds = [DataSample().set_gt_label(1), DataSample().set_gt_label(4)]
    out = preprocessor(dict(inputs=views, data_samples=ds))
    assert out['inputs'].shape == (2, 11, 3, 8, 10)
    assert out['inputs'].dtype == torch.float32
    torch.testing.assert_close(out['inputs'], reference(torch.stack(views)))
    assert out['data_samples'] is not None
    assert [int(s.gt_label) for s in out['data_samples']] == [1, 4]


def test_single_view_list_and_stacked_tensor(preprocessor):
    images = [uint8_images(3, 6, 7, seed=s) for s in range(3)]
    out = preprocessor(dict(inputs=images))
    torch.testing.assert_close(out['inputs'], reference(torch.stack(images)))
    assert out['data_samples'] is None
    stacked = preprocessor(dict(inputs=torch.stack(images)))
    torch.testing.assert_close(stacked['inputs'], out['inputs'])


def test_without_normalisation_only_converts():
    pre = SSTDataPreprocessor()
    batch = uint8_images(2, 3, 4, 4)
    torch.testing.assert_close(
        pre(dict(inputs=batch))['inputs'], batch.float()
    )


def test_view_count_checks():
    pre = SSTDataPreprocessor(mean=MEAN, std=STD, num_views=11)
    pre(dict(inputs=[uint8_images(11, 3, 4, 4)]))
    pre(dict(inputs=[uint8_images(3, 4, 4)]))  # training: one view
    with pytest.raises(ValueError, match=r'V=2 .*num_views=11'):
        pre(dict(inputs=[uint8_images(2, 3, 4, 4)]))
    sample = DataSample(metainfo=dict(num_views=2))
    free = SSTDataPreprocessor()
    free(dict(inputs=[uint8_images(2, 3, 4, 4)], data_samples=[sample]))
    with pytest.raises(ValueError, match=r'num_views=2 .*V=1'):
        free(dict(inputs=[uint8_images(1, 3, 4, 4)], data_samples=[sample]))


@pytest.mark.parametrize(
    'inputs, match',
    [
        ([uint8_images(3, 4, 4), uint8_images(3, 4, 5)], r'one shape'),
        ([uint8_images(4, 4, 4)], r'\(B, 3, H, W\)'),
        ([uint8_images(4, 4)], r'\(B, 3, H, W\)'),
        ([], r'empty batch'),
    ],
)
def test_bad_inputs(preprocessor, inputs, match):
    with pytest.raises(ValueError, match=match):
        preprocessor(dict(inputs=inputs))


def test_sample_count_mismatch(preprocessor):
    with pytest.raises(ValueError, match=r'1 data samples for 2 images'):
        preprocessor(
            dict(
                inputs=[uint8_images(3, 4, 4)] * 2,
                data_samples=[DataSample()],
            )
        )


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(mean=MEAN), r'both mean and std'),
        (dict(mean=MEAN[:2], std=STD[:2]), r'3 values'),
        (dict(mean=MEAN, std=[1.0, 0.0, 1.0]), r'std must be > 0'),
        (dict(num_views=0), r'num_views must be >= 1'),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SSTDataPreprocessor(**kwargs)


def test_test_step_through_the_localizer():
    """uint8 multi-view batch -> preprocessor -> one predict pass."""
    torch.manual_seed(0)
    model = SSTLocalizer(
        mode='spa',
        num_classes=5,
        cls_head=dict(mid_channels=16),
        data_preprocessor=dict(
            type='SSTDataPreprocessor',
            mean=MEAN,
            std=STD,
            to_rgb=True,
            num_views=3,
        ),
    ).eval()
    views = [uint8_images(3, 3, 64, 64, seed=s) for s in range(2)]
    ds = [DataSample().set_gt_label(2), DataSample().set_gt_label(0)]
    out = model.test_step(dict(inputs=views, data_samples=ds))
    assert [s.loc_labels[-1].item() for s in out] == [2, 0]
    assert out[0].loc_maps.shape == (6, 4, 4)
    with pytest.raises(ValueError, match=r'V=2 .*num_views=3'):
        model.test_step(dict(inputs=[v[:2] for v in views]))
