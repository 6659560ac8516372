"""Tests of shared/datasets/parsing.py and the policy mixin's helpers."""

from __future__ import annotations

import numpy as np
import pytest

from shared.datasets.base import boxes_out_of_bounds, clip_boxes
from shared.datasets.parsing import (
    AnnotationError,
    AnnotationFileNotFoundError,
    check_box,
    check_same_keys,
    parse_float,
    parse_int,
    read_lines,
    split_line,
)


def test_read_lines_strips_and_keeps_editor_line_numbers(tmp_path):
    path = tmp_path / 'a.txt'
    path.write_bytes(b'1 a.jpg\r\n\r\n  2 b.jpg  \n\n3 c.jpg')
    assert read_lines(path) == [(1, '1 a.jpg'), (3, '2 b.jpg'), (5, '3 c.jpg')]


def test_read_lines_errors(tmp_path):
    with pytest.raises(
        AnnotationFileNotFoundError, match='nope.txt: images file not found'
    ):
        read_lines(tmp_path / 'nope.txt', what='images')
    empty = tmp_path / 'e.txt'
    empty.write_text('\n \n')
    with pytest.raises(
        AnnotationError,
        match=r'e\.txt: annotation file is '
        'empty',
    ):
        read_lines(empty)
    assert read_lines(empty, allow_empty=True) == []
    binary = tmp_path / 'b.txt'
    binary.write_bytes(b'\xff\xfe\x00')
    with pytest.raises(AnnotationError, match='not UTF-8'):
        read_lines(binary)


def test_error_text_names_file_line_and_the_line():
    err = AnnotationError('f.txt', 7, 'bad label', 'x' * 300)
    assert str(err) == 'f.txt:7: bad label | ' + 'x' * 200
    assert err.ref == 'f.txt:7'
    assert str(AnnotationError('f.txt', None, 'empty')) == 'f.txt: empty'


def test_token_and_number_parsing():
    assert split_line('f', 1, 'a b  c', num=3) == ['a', 'b', 'c']
    assert split_line('f', 1, 'a,b', sep=',', min_num=2) == ['a', 'b']
    with pytest.raises(AnnotationError, match='f:2: expected 3 tokens, got 2'):
        split_line('f', 2, 'a b', num=3)
    with pytest.raises(AnnotationError, match='at least 3'):
        split_line('f', 2, 'a b', min_num=3)
    assert parse_int('12', 'f', 1) == 12
    with pytest.raises(
        AnnotationError, match="f:4: label '1.5' is not an integer"
    ):
        parse_int('1.5', 'f', 4, what='label')
    assert parse_float('60.0', 'f', 1) == 60.0
    for token in ('nan', 'inf', 'x'):
        with pytest.raises(AnnotationError, match='f:3'):
            parse_float(token, 'f', 3)


def test_check_box():
    assert check_box([1, 2, 3, 4], 'f', 1).dtype == np.float64
    check_box([1, 2, 1, 2], 'f', 1)  # degenerate but not inverted
    with pytest.raises(AnnotationError, match='f:9: inverted box'):
        check_box([5, 0, 4, 1], 'f', 9)
    with pytest.raises(AnnotationError, match='non-finite'):
        check_box([0, 0, float('inf'), 1], 'f', 9)
    with pytest.raises(AnnotationError, match='needs 4 numbers'):
        check_box([0, 0, 1], 'f', 9)


def test_check_same_keys_names_the_missing_key_and_files():
    check_same_keys({'a': {1: ('x', 1)}, 'b': {1: ('y', 1)}})
    with pytest.raises(AnnotationError) as exc:
        check_same_keys(
            {'a.txt': {1: ('x', 1), 2: ('x', 2)}, 'b.txt': {1: ('y', 1)}}
        )
    assert str(exc.value) == 'a.txt:2: image id 2 is missing from b.txt'


def test_out_of_bounds_and_clip_use_edge_coordinates():
    boxes = np.array([[0, 0, 10, 20], [-1, 0, 5, 5], [0, 0, 10.5, 5]])
    assert boxes_out_of_bounds(boxes, 20, 10).tolist() == [False, True, True]
    assert clip_boxes(boxes, 20, 10).tolist() == [
        [0, 0, 10, 20],
        [0, 0, 5, 5],
        [0, 0, 10, 5],
    ]
