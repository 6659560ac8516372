"""Annotation parsing shared by every adapter (``datasets.md`` §2.1).

One line-oriented reader, number parsing with file:line errors, a key-join
check and box validation. Every error is an :class:`AnnotationError` whose
text is ``"<path>:<line>: <message> | <first 200 chars of the line>"`` so a
user can jump to the offending annotation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    'AnnotationError',
    'AnnotationFileNotFoundError',
    'check_box',
    'check_same_keys',
    'parse_float',
    'parse_int',
    'read_lines',
    'split_line',
]


class AnnotationError(ValueError):
    """A defect in an annotation file, located by path and line.

    Args:
        path (str | os.PathLike): The annotation file.
        line_no (int | None): 1-based line number (or an id / element name
            for JSON and XML files); ``None`` when the whole file is at
            fault.
        message (str): What is wrong.
        line (str | None): The offending line; its first 200 characters are
            appended to the message.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        line_no: int | str | None,
        message: str,
        line: str | None = None,
    ):
        self.path = str(path)
        self.line_no = line_no
        self.message = message
        self.line = line
        where = self.path if line_no is None else f'{self.path}:{line_no}'
        text = f'{where}: {message}'
        if line is not None:
            text += f' | {line[:200]}'
        super().__init__(text)

    @property
    def ref(self) -> str:
        """``'path:line'`` (or just the path)."""
        if self.line_no is None:
            return self.path
        return f'{self.path}:{self.line_no}'


class AnnotationFileNotFoundError(AnnotationError, FileNotFoundError):
    """An annotation file that does not exist."""

    def __init__(self, path: str | os.PathLike, what: str = 'annotation'):
        super().__init__(path, None, f'{what} file not found')


def read_lines(
    path: str | os.PathLike,
    what: str = 'annotation',
    allow_empty: bool = False,
) -> list[tuple[int, str]]:
    """Read a text annotation file as ``(line_no, line)`` pairs.

    Line endings (``\\n``, ``\\r\\n``) and surrounding whitespace are
    stripped; blank lines are skipped but still counted, so ``line_no`` is
    the editor's line number.

    Args:
        path (str | os.PathLike): The file.
        what (str): Its role, used in error messages.
        allow_empty (bool): Return ``[]`` for a file without content lines
            instead of raising.

    Returns:
        list[tuple[int, str]]: 1-based line numbers and stripped lines.

    Raises:
        AnnotationFileNotFoundError: If the file does not exist.
        AnnotationError: If it is empty and ``allow_empty`` is false, or is
            not UTF-8 text.
    """
    if not os.path.isfile(path):
        raise AnnotationFileNotFoundError(path, what)
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise AnnotationError(path, None, f'not UTF-8 text ({err})') from err
    lines = [
        (i, line.strip())
        for i, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not lines and not allow_empty:
        raise AnnotationError(path, None, f'{what} file is empty')
    return lines


def split_line(
    path: str | os.PathLike,
    line_no: int,
    line: str,
    num: int | None = None,
    min_num: int | None = None,
    sep: str | None = None,
) -> list[str]:
    """Split a line into tokens and check their count.

    Args:
        path, line_no, line: Where the line comes from (for errors).
        num (int | None): Exact number of tokens required.
        min_num (int | None): Minimum number of tokens required.
        sep (str | None): Separator; ``None`` splits on any whitespace.

    Returns:
        list[str]: The tokens, each stripped.
    """
    tokens = [t.strip() for t in line.split(sep)]
    if num is not None and len(tokens) != num:
        raise AnnotationError(
            path, line_no, f'expected {num} tokens, got {len(tokens)}', line
        )
    if min_num is not None and len(tokens) < min_num:
        raise AnnotationError(
            path,
            line_no,
            f'expected at least {min_num} tokens, got {len(tokens)}',
            line,
        )
    return tokens


def parse_int(
    token: str, path, line_no, line: str | None = None, what: str = 'value'
) -> int:
    """Parse an integer token or raise an :class:`AnnotationError`."""
    try:
        return int(token)
    except (TypeError, ValueError):
        raise AnnotationError(
            path, line_no, f'{what} {token!r} is not an integer', line
        ) from None


def parse_float(
    token: str, path, line_no, line: str | None = None, what: str = 'value'
) -> float:
    """Parse a finite float token or raise an :class:`AnnotationError`."""
    try:
        value = float(token)
    except (TypeError, ValueError):
        raise AnnotationError(
            path, line_no, f'{what} {token!r} is not a number', line
        ) from None
    if not math.isfinite(value):
        raise AnnotationError(
            path, line_no, f'{what} {token!r} is not finite', line
        )
    return value


def check_box(
    box: Sequence[float], path, line_no, line: str | None = None
) -> np.ndarray:
    """Validate one ``xyxy`` box: finite and not inverted.

    A zero-width or zero-height box is allowed (it is a degenerate but valid
    annotation that transforms drop); ``x1 < x0`` or ``y1 < y0`` is not.

    Returns:
        numpy.ndarray: The box as float64 (4,).
    """
    arr = np.asarray(box, dtype=np.float64)
    if arr.shape != (4,):
        raise AnnotationError(
            path, line_no, f'a box needs 4 numbers, got {arr.size}', line
        )
    if not np.isfinite(arr).all():
        raise AnnotationError(path, line_no, f'non-finite box {box}', line)
    if arr[2] < arr[0] or arr[3] < arr[1]:
        raise AnnotationError(
            path,
            line_no,
            f'inverted box [x0={arr[0]:g}, y0={arr[1]:g}, x1={arr[2]:g}, '
            f'y1={arr[3]:g}] (x1 < x0 or y1 < y0)',
            line,
        )
    return arr


def check_same_keys(
    tables: Mapping[str, Mapping], what: str = 'image id'
) -> None:
    """Raise unless every table has the same key set.

    Args:
        tables (Mapping[str, Mapping]): File path -> ``{key: (value,
            line_no)}`` (or any mapping keyed by the join key).
        what (str): Name of the key, for the message.

    Raises:
        AnnotationError: Naming the first key present in one file and
            missing from another, with the line where it appears.
    """
    paths = list(tables)
    if not paths:
        return
    union: set = set()
    for table in tables.values():
        union.update(table)
    for key in sorted(union, key=str):
        have = [p for p in paths if key in tables[p]]
        if len(have) == len(paths):
            continue
        missing = [p for p in paths if key not in tables[p]]
        src = have[0]
        entry = tables[src][key]
        line_no = entry[-1] if isinstance(entry, tuple) else None
        raise AnnotationError(
            src,
            line_no,
            f'{what} {key!r} is missing from {", ".join(missing)}',
        )


def first_items(items: Iterable, n: int = 5) -> list:
    """The first ``n`` items of an iterable (for warnings)."""
    out = []
    for item in items:
        if len(out) == n:
            break
        out.append(item)
    return out
