"""SS-PRL multi-label AP (``evaluation.md`` §6, §10 item 9)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from shared.evaluation.multilabel import (
    average_precision_per_class,
    mean_average_precision,
)
from tests.reference.sspr_ap import (
    sspr_average_precision,
    sspr_mean_average_precision,
)
from tests.shared.datasets.logs import captured_log

TOL = 1e-12  # on AP as a fraction in [0, 1]


def _targets(rng, shape, p_pos=0.3, p_ignore=0.15) -> np.ndarray:
    """Random {1, 0, -1} targets; every class keeps at least one row."""
    u = rng.random(shape)
    t = np.where(u < p_pos, 1, 0)
    t[u > 1 - p_ignore] = -1
    t[0] = np.where(t[0] == -1, 0, t[0])
    return t


def _check_against_reference(scores, targets, tie_shift) -> None:
    ours = average_precision_per_class(scores, targets, tie_shift)
    ref = sspr_average_precision(scores, targets, tie_shift)
    np.testing.assert_allclose(ours / 100, ref, rtol=0, atol=TOL)
    assert mean_average_precision(
        scores, targets, tie_shift=tie_shift
    ) == pytest.approx(sspr_mean_average_precision(scores, targets, tie_shift))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('tie_shift', [1e-5, 0.0])
def test_random_scores_match_sklearn_with_shift(dtype, tie_shift):
    rng = np.random.default_rng(0)
    for n, c in ((1, 3), (7, 4), (60, 9)):
        scores = rng.normal(0, 3, (n, c)).astype(dtype)
        _check_against_reference(scores, _targets(rng, (n, c)), tie_shift)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('tie_shift', [1e-5, 0.0])
def test_tie_heavy_scores_match_sklearn_with_shift(dtype, tie_shift):
    rng = np.random.default_rng(1)
    # Exact ties, and values 3e-6 apart that the 1e-5 shift reorders.
    levels = np.array([-2.0, 0.0, 3e-6, 0.5, 1.0, 1.0 + 3e-6], dtype)
    reordered = 0
    for _ in range(20):
        n, c = rng.integers(2, 40), rng.integers(1, 6)
        scores = rng.choice(levels, (n, c))
        targets = _targets(rng, (n, c), p_pos=rng.uniform(0.1, 0.9))
        _check_against_reference(scores, targets, tie_shift)
        reordered += np.any(
            sspr_average_precision(scores, targets, 1e-5)
            != sspr_average_precision(scores, targets, 0.0)
        )
    assert reordered >= 5  # the data exercise the shift


def test_closed_forms():
    scores = np.array([[0.9], [0.8], [0.7], [0.6]], np.float32)
    # Positives at ranks 1 and 3: (1/1 + 2/3) / 2.
    ap = average_precision_per_class(scores, np.array([[1], [0], [1], [0]]))
    assert ap[0] == pytest.approx(100 * 5 / 6, abs=1e-12)
    # Two positives tied with one negative form one step: 2/3. The shift
    # moves both positives below the negative, still tied with each other,
    # which gives the same value: exact ties are unaffected.
    tied = np.full((3, 1), 0.5, np.float32)
    y = np.array([[1], [1], [0]])
    for shift in (0.0, 1e-5):
        assert average_precision_per_class(tied, y, shift)[0] == (
            pytest.approx(100 * 2 / 3, abs=1e-12)
        )
    # mmpretrain's docstring example (no positive for the last class).
    pred = np.array(
        [
            [0.9, 0.8, 0.3, 0.2],
            [0.1, 0.2, 0.2, 0.1],
            [0.7, 0.5, 0.9, 0.3],
            [0.8, 0.1, 0.1, 0.2],
        ],
        np.float32,
    )
    true = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]])
    assert mean_average_precision(pred, true) == pytest.approx(
        100 * (1 + 5 / 6 + 1 + 0) / 4, abs=1e-12
    )


def test_near_tie_changes_ap_only_through_the_shift():
    # The positive beats the negative by 4e-6 < 1e-5: the shift (in float32)
    # puts it below, as SS-PRL does.
    scores = np.array([[1.0 + 4e-6], [1.0]], np.float32)
    targets = np.array([[1], [0]])
    assert average_precision_score([1, 0], scores[:, 0]) == 1.0
    assert average_precision_per_class(scores, targets, 0.0)[0] == 100.0
    assert mean_average_precision(scores, targets) == 50.0
    assert sspr_mean_average_precision(scores, targets) == 50.0
    # A gap larger than the shift is unaffected.
    far = np.array([[1.0 + 4e-5], [1.0]], np.float32)
    assert mean_average_precision(far, targets) == 100.0


def test_shift_is_computed_in_the_scores_dtype():
    # float32(1 + 1e-5) - float32(1e-5) rounds to exactly 1.0 in float32: a
    # tie with the negative (AP 1/2). The same value in float64 stays above.
    scores = np.array([[1.0 + 1e-5], [1.0]], np.float32)
    targets = np.array([[1], [0]])
    assert mean_average_precision(scores, targets) == 50.0
    assert sspr_mean_average_precision(scores, targets) == 50.0
    wide = scores.astype(np.float64)
    assert mean_average_precision(wide, targets) == 100.0
    assert sspr_mean_average_precision(wide, targets) == 100.0
    assert mean_average_precision(torch.from_numpy(scores), targets) == 50.0


def test_ignored_entries_are_dropped_per_class():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(30, 3))
    targets = _targets(rng, (30, 3))
    ap = average_precision_per_class(scores, targets)
    for j in range(3):
        keep = targets[:, j] >= 0
        alone = average_precision_per_class(
            scores[keep, j : j + 1], targets[keep, j : j + 1]
        )
        assert ap[j] == pytest.approx(alone[0], abs=1e-12)
    # Changing an ignored entry's score changes nothing.
    moved = scores.copy()
    moved[targets == -1] = 100.0
    np.testing.assert_array_equal(
        average_precision_per_class(moved, targets), ap
    )


def test_torch_input_and_inputs_untouched():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(20, 4)).astype(np.float32)
    targets = _targets(rng, (20, 4))
    before = scores.copy(), targets.copy()
    expected = average_precision_per_class(scores, targets)
    np.testing.assert_array_equal(before[0], scores)
    np.testing.assert_array_equal(before[1], targets)
    got = average_precision_per_class(
        torch.from_numpy(scores), torch.from_numpy(targets).float()
    )
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float64


def test_class_without_positive_gives_zero_and_warns():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(10, 3)).astype(np.float32)
    targets = _targets(rng, (10, 3))
    targets[:, 1] = np.where(targets[:, 1] == 1, 0, targets[:, 1])
    targets[0, 0] = 1
    targets[0, 2] = 1
    with captured_log(logging.WARNING) as records:
        ap = average_precision_per_class(
            scores, targets, class_names=['cat', 'dog', 'cow']
        )
    assert ap[1] == 0.0
    messages = [r.getMessage() for r in records]
    assert len(messages) == 1
    assert '1 (dog)' in messages[0] and 'cat' not in messages[0]
    with captured_log(logging.WARNING) as records:
        value = mean_average_precision(scores, targets)
    assert value == pytest.approx(ap.mean(), abs=1e-12)  # stays in the mean
    assert 'class(es) 1 ' in records[0].getMessage()
    ref = sspr_average_precision(scores, targets)
    np.testing.assert_allclose(ap / 100, ref, rtol=0, atol=TOL)


def test_all_ignored_class_raises():
    scores = np.zeros((3, 3), np.float32)
    targets = np.array([[1, -1, 0], [0, -1, 1], [1, -1, 0]])
    with pytest.raises(ValueError, match=r'class\(es\) 1 have no evaluated'):
        mean_average_precision(scores, targets)
    with pytest.raises(ValueError, match=r'1 \(b\)'):
        average_precision_per_class(scores, targets, class_names='abc')
    with pytest.raises(ValueError, match='no evaluated'):
        mean_average_precision(np.zeros((0, 2)), np.zeros((0, 2)))


@pytest.mark.parametrize(
    ('scores', 'targets', 'match'),
    [
        (np.zeros((2, 2)), np.array([[1, 2], [0, 0]]), r'\{1, 0, -1\}'),
        (np.zeros((2, 2)), np.array([[1, 255], [0, 0]]), 'targets == 255'),
        (np.zeros((2, 2)), np.array([[1, 0.5], [0, 0]]), r'\[0\.5\]'),
        (np.zeros((2, 2)), np.array([[1, np.nan], [0, 0]]), 'nan'),
        (np.zeros((2, 2)), np.zeros((2, 3)), 'shape'),
        (np.zeros(4), np.zeros(4), r'\(N, C\)'),
        (np.array([[0.0, np.nan], [0, 0]]), np.eye(2), 'row 0, class 1'),
        (np.array([[0.0, 1], [np.inf, 0]]), np.eye(2), 'row 1, class 0'),
        (np.zeros((2, 0)), np.zeros((2, 0)), 'no class'),
    ],
)
def test_invalid_inputs_raise(scores, targets, match):
    with pytest.raises(ValueError, match=match):
        mean_average_precision(scores, targets)


def test_invalid_tie_shift_and_names_raise():
    with pytest.raises(ValueError, match='tie_shift'):
        average_precision_per_class(np.eye(2), np.eye(2), -1e-5)
    with pytest.raises(ValueError, match='2 class names for 3'):
        average_precision_per_class(
            np.eye(3), np.eye(3), class_names=['a', 'b']
        )
