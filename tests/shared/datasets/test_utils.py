"""multilabel_target: {1, 0, -1} targets, positive wins over difficult."""

from __future__ import annotations

import pytest
import torch

from shared.datasets.utils import multilabel_target


def test_positive_difficult_negative():
    target = multilabel_target([0, 3], [1, 3], 5)
    assert target.dtype == torch.float32
    assert target.shape == (5,)
    # Class 3 is listed both as positive and as difficult: positive.
    assert target.tolist() == [1.0, -1.0, 0.0, 1.0, 0.0]


def test_tensor_inputs_and_no_difficult():
    target = multilabel_target(torch.tensor([2]), None, 3)
    assert target.tolist() == [0.0, 0.0, 1.0]
    target = multilabel_target(torch.tensor([], dtype=torch.long), [0], 2)
    assert target.tolist() == [-1.0, 0.0]


@pytest.mark.parametrize(
    'pos, diff, match',
    [([3], None, 'gt_label'), ([0], [-1], 'gt_label_difficult')],
)
def test_out_of_range(pos, diff, match):
    with pytest.raises(ValueError, match=match):
        multilabel_target(pos, diff, 3)
