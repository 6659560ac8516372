"""unwrap_state_dict / compare_state_dicts: foreign weight-file helpers."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from shared.utils.state_dict import (
    StateDictMismatchError,
    compare_state_dicts,
    unwrap_state_dict,
)


def tensors() -> OrderedDict:
    return OrderedDict(
        [('a.weight', torch.randn(2, 3)), ('a.bias', torch.zeros(2))]
    )


def test_plain_state_dict_passes_through_in_order():
    sd = tensors()
    out = unwrap_state_dict(sd)
    assert list(out) == ['a.weight', 'a.bias']
    assert all(out[k] is sd[k] for k in sd)


@pytest.mark.parametrize('container', ['state_dict', 'model'])
def test_containers_and_module_prefix(container):
    sd = tensors()
    ckpt = {
        container: {f'module.{k}': v for k, v in sd.items()},
        'epoch': 5,
        'best_map': 0.3,
    }
    out = unwrap_state_dict(ckpt)
    assert list(out) == list(sd)
    assert all(torch.equal(out[k], sd[k]) for k in sd)


def test_state_dict_container_wins_over_model():
    first, second = tensors(), {'b': torch.ones(1)}
    out = unwrap_state_dict({'model': second, 'state_dict': first})
    assert list(out) == list(first)
    out = unwrap_state_dict(
        {'model': second, 'state_dict': first}, containers=('model',)
    )
    assert list(out) == ['b']


def test_prefix_only_stripped_at_the_start():
    out = unwrap_state_dict(
        {'module.x': torch.ones(1), 'backbone.module.y': torch.ones(1)}
    )
    assert list(out) == ['x', 'backbone.module.y']
    out = unwrap_state_dict({'module.x': torch.ones(1)}, prefix='')
    assert list(out) == ['module.x']


def test_non_tensor_values_are_dropped():
    out = unwrap_state_dict({'w': torch.ones(1), 'meta': {'x': 1}, 'n': 3})
    assert list(out) == ['w']


def test_errors_name_the_file():
    with pytest.raises(TypeError, match='w.pth: expected a dict, got list'):
        unwrap_state_dict([torch.ones(1)], name='w.pth')
    with pytest.raises(
        TypeError, match=r"w.pth: no tensors found .*\['epoch', 'meta'\]"
    ):
        unwrap_state_dict({'epoch': 1, 'meta': {'x': 2}}, name='w.pth')
    with pytest.raises(TypeError, match='no tensors found'):
        unwrap_state_dict({'model': {'x': 2}}, name='w.pth')


def test_compare_identical_is_empty():
    sd = tensors()
    assert compare_state_dicts(sd, {k: v.clone() for k, v in sd.items()}) == []


def test_compare_lists_every_difference_with_shapes():
    expected = tensors()
    given = {
        'a.weight': torch.zeros(3, 2),
        'extra.weight': torch.zeros(4, 1),
    }
    assert compare_state_dicts(expected, given) == [
        'shape mismatch a.weight: model (2, 3) vs file (3, 2)',
        'missing a.bias (2,)',
        'unexpected extra.weight (4, 1)',
    ]


def test_mismatch_error_is_a_value_error():
    assert issubclass(StateDictMismatchError, ValueError)
