"""pack_loc_samples and friends: the localization-map output contract.

``evaluation.md`` §2.1 / ``tscam.md`` §2: ``pred_score`` is the softmax,
``loc_labels`` the top-min(5, C) classes (ties by class index) followed by
the ground-truth class(es), ``loc_maps`` one raw float32 map per label.
"""

from __future__ import annotations

import pytest
import torch
from mmpretrain.structures import DataSample

from shared.models.loc_outputs import (
    LOC_TOPK,
    check_gt_labels,
    pack_loc_samples,
    rank_classes,
    sample_name,
)


def maps_of(grid: torch.Tensor):
    """class_maps for per-class maps grid (B, C, h, w)."""
    return lambda i, labels: grid[i, labels]


def labelled(labels, start: int = 0, path: bool = False) -> list[DataSample]:
    out = []
    for i, label in enumerate(labels):
        meta = dict(sample_idx=start + i)
        if path:
            meta['img_path'] = f'dir/img_{start + i}.jpg'
        out.append(DataSample(metainfo=meta).set_gt_label(label))
    return out


def test_rank_classes_breaks_ties_by_class_index():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 2.0, 3.0], [0.0] * 7])
    ranked = rank_classes(logits)
    assert ranked.dtype == torch.int64
    assert ranked.tolist() == [[1, 2, 4, 6, 5], [0, 1, 2, 3, 4]]
    assert rank_classes(logits, topk=2).tolist() == [[1, 2], [0, 1]]


def test_rank_classes_caps_at_the_number_of_classes():
    logits = torch.tensor([[0.5, -1.0, 2.0]])
    assert LOC_TOPK == 5
    assert rank_classes(logits).tolist() == [[2, 0, 1]]


def test_pack_fills_every_field():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 8, generator=gen)
    grid = torch.randn(3, 8, 4, 4, generator=gen, requires_grad=True)
    data = labelled([2, 7, 7])
    out = pack_loc_samples(logits, data, maps_of(grid), 'Model')
    assert out == data  # filled in place
    for i, sample in enumerate(out):
        ranked = torch.sort(logits[i], descending=True, stable=True).indices
        torch.testing.assert_close(sample.pred_score, logits[i].softmax(0))
        assert sample.pred_label.tolist() == [ranked[0].item()]
        expected = ranked[:5].tolist() + [data[i].gt_label.item()]
        assert sample.loc_labels.tolist() == expected
        assert sample.loc_labels.dtype == torch.int64
        assert sample.loc_maps.dtype == torch.float32
        assert not sample.loc_maps.requires_grad
        assert torch.equal(sample.loc_maps, grid[i, expected].detach())


def test_pack_without_samples_and_with_several_gt_labels():
    logits = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    grid = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)
    out = pack_loc_samples(logits, None, maps_of(grid), 'Model')
    assert [s.loc_labels.tolist() for s in out] == [[2, 1, 0], [0, 1, 2]]
    assert out[0].loc_maps.dtype == torch.float32  # cast from float64
    multi = [DataSample().set_gt_label(torch.tensor([0, 2])), None]
    out = pack_loc_samples(logits, multi, maps_of(grid), 'Model')
    assert out[0].loc_labels.tolist() == [2, 1, 0, 0, 2]  # duplicates kept
    assert out[0].loc_maps.shape == (5, 2, 2)
    assert out[1].loc_labels.tolist() == [0, 1, 2]


def test_pack_keeps_raw_negative_maps():
    logits = torch.zeros(1, 2)
    grid = -torch.ones(1, 2, 3, 3)
    out = pack_loc_samples(logits, None, maps_of(grid), 'Model')
    assert (out[0].loc_maps == -1).all()


def test_batch_size_mismatch():
    with pytest.raises(ValueError, match='2 data samples for a batch of 3'):
        pack_loc_samples(
            torch.zeros(3, 4), labelled([0, 1]), maps_of(None), 'Model'
        )


def test_non_finite_logits_name_the_samples():
    logits = torch.zeros(3, 4)
    logits[0, 1] = float('nan')
    logits[2, 3] = float('inf')
    grid = torch.zeros(3, 4, 2, 2)
    with pytest.raises(FloatingPointError) as err:
        pack_loc_samples(
            logits, labelled([0, 1, 2], 50, path=True), maps_of(grid), 'Net'
        )
    message = str(err.value)
    assert message.startswith('Net: NaN or inf in the logits')
    assert 'sample_idx=50 (dir/img_50.jpg)' in message
    assert 'sample_idx=52 (dir/img_52.jpg)' in message
    assert 'sample_idx=51' not in message


def test_non_finite_maps_name_the_samples():
    logits = torch.zeros(2, 4)
    grid = torch.zeros(2, 4, 2, 2)
    grid[1, :, 0, 0] = float('nan')
    with pytest.raises(FloatingPointError) as err:
        pack_loc_samples(logits, None, maps_of(grid), 'Net')
    message = str(err.value)
    assert 'localization maps of batch position 1' in message
    assert 'position 0' not in message


def test_check_gt_labels():
    check_gt_labels(labelled([0, 4]), 5, 'Net')
    check_gt_labels(None, 5, 'Net')
    check_gt_labels([None, DataSample()], 5, 'Net')  # nothing to check
    with pytest.raises(ValueError) as err:
        check_gt_labels(labelled([0, 5, -1, 3], start=9), 5, 'Net')
    message = str(err.value)
    assert message.startswith('Net: gt_label outside [0, 5)')
    assert 'sample_idx=10: [5]' in message and 'sample_idx=11: [-1]' in message
    assert 'sample_idx=9' not in message and 'sample_idx=12' not in message
    multi = [DataSample().set_gt_label(torch.tensor([1, 7]))]
    with pytest.raises(ValueError, match=r'batch position 0: \[1, 7\]'):
        check_gt_labels(multi, 5, 'Net')


def test_pack_checks_gt_labels_before_anything_else():
    with pytest.raises(ValueError, match='sample_idx=1: \\[4\\]'):
        pack_loc_samples(
            torch.zeros(2, 4), labelled([0, 4]), maps_of(None), 'Net'
        )


def test_sample_name():
    assert sample_name(None, 3) == 'batch position 3'
    assert sample_name(DataSample(), 2) == 'batch position 2'
    sample = DataSample(metainfo=dict(sample_idx=7, img_path='a/b.jpg'))
    assert sample_name(sample, 0) == 'sample_idx=7 (a/b.jpg)'
