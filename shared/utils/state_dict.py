"""State-dict helpers for loading foreign weight files into our modules.

Pretrained loaders and the model converters share them: unwrap the
container formats (``{'model': …}``, ``{'state_dict': …}``), strip a
``module.`` prefix, and compare a state dict with a module's, reporting
every missing, unexpected and mis-shaped key at once, then load.
"""

from __future__ import annotations

import logging
import os.path as osp
from collections.abc import Callable, Mapping, Sequence

import torch
from mmengine.logging import print_log
from torch import nn

__all__ = [
    'StateDictMismatchError',
    'compare_state_dicts',
    'load_state_dict_checked',
    'read_weight_file',
    'unwrap_state_dict',
]


class StateDictMismatchError(ValueError):
    """The keys or shapes of a weight file do not fit the model."""


def unwrap_state_dict(
    ckpt: Mapping,
    containers: Sequence[str] = ('state_dict', 'model'),
    prefix: str = 'module.',
    name: str = 'checkpoint',
) -> dict[str, torch.Tensor]:
    """The tensor state dict inside a checkpoint, prefix stripped.

    Args:
        ckpt (Mapping): A loaded checkpoint: a state dict or a dict holding
            one under one of ``containers``.
        containers (Sequence[str]): Wrapper keys tried in order.
        prefix (str): Removed from every key that starts with it (the
            ``DataParallel``/DDP ``module.``).
        name (str): File name for error messages.

    Returns:
        dict[str, torch.Tensor]: The tensors, in file order.

    Raises:
        TypeError: Not a mapping, or no tensors in it.
    """
    if not isinstance(ckpt, Mapping):
        raise TypeError(f'{name}: expected a dict, got {type(ckpt).__name__}')
    top_level = sorted(ckpt)[:10]
    for key in containers:
        if key in ckpt and isinstance(ckpt[key], Mapping):
            ckpt = ckpt[key]
            break
    state = {
        (k[len(prefix) :] if prefix and k.startswith(prefix) else k): v
        for k, v in ckpt.items()
        if isinstance(v, torch.Tensor)
    }
    if not state:
        raise TypeError(
            f'{name}: no tensors found (top-level keys: {top_level})'
        )
    return state


def compare_state_dicts(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]
) -> list[str]:
    """Every difference between two state dicts, one line each.

    Args:
        expected: The module's own state dict.
        given: The state dict to load.

    Returns:
        list[str]: ``missing KEY (shape)``, ``unexpected KEY (shape)`` and
        ``shape mismatch KEY: model (…) vs file (…)`` lines; empty when the
        keys and shapes agree.
    """
    lines = []
    for key, value in expected.items():
        if key not in given:
            lines.append(f'missing {key} {tuple(value.shape)}')
        elif tuple(given[key].shape) != tuple(value.shape):
            lines.append(
                f'shape mismatch {key}: model {tuple(value.shape)} vs file '
                f'{tuple(given[key].shape)}'
            )
    lines += [
        f'unexpected {key} {tuple(value.shape)}'
        for key, value in given.items()
        if key not in expected
    ]
    return lines


def load_state_dict_checked(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    target: str,
    may_be_missing: Callable[[str], bool] | None = None,
) -> int:
    """Load ``state`` into ``module`` after checking every key and shape.

    Args:
        module (nn.Module): Receives the tensors.
        state: The state dict to load (already renamed and filtered).
        source (str): File name for messages.
        target (str): What the module is, for messages (``'the DeiT
            backbone'``).
        may_be_missing (Callable[[str], bool] | None): Keys of the module
            for which it keeps its own value when the file lacks them.

    Returns:
        int: Number of tensors loaded (logged).

    Raises:
        StateDictMismatchError: Missing, unexpected or mis-shaped keys, all
            listed with both shapes.
    """
    own = module.state_dict()
    problems = [
        line
        for line in compare_state_dicts(own, state)
        if not (
            may_be_missing is not None
            and line.startswith('missing ')
            and may_be_missing(line.split()[1])
        )
    ]
    if problems:
        raise StateDictMismatchError(
            f'{source} does not fit {target} ({len(problems)} problems):\n  '
            + '\n  '.join(problems)
        )
    module.load_state_dict(state, strict=may_be_missing is None)
    print_log(
        f'loaded {len(state)} pretrained tensors from {source}',
        logger='current',
        level=logging.INFO,
    )
    return len(state)


def read_weight_file(
    path: str, expected_file: str | None = None
) -> dict[str, torch.Tensor]:
    """Load and unwrap a local pretrained weight file; nothing is downloaded.

    Args:
        path (str): Local file: a state dict, or one under ``state_dict`` /
            ``model``; ``module.`` is stripped. Read with
            :func:`shared.utils.checkpoint.safe_load` (``weights_only``).
        expected_file (str | None): Upstream file name, for the message
            when ``path`` does not exist.

    Returns:
        dict[str, torch.Tensor]: The state dict.

    Raises:
        FileNotFoundError: ``path`` does not exist (no download fallback).
        shared.utils.checkpoint.UnsafeCheckpointError: The file would need
            arbitrary unpickling; nothing in it was executed.
    """
    from .checkpoint import safe_load

    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        hint = f' (expected the upstream file {expected_file})'
        raise FileNotFoundError(
            f'pretrained weight file {path} does not exist'
            f'{hint if expected_file else ""}; nothing is downloaded: put '
            'the file there or set model.backbone.init_cfg.checkpoint (the '
            "config's pretrained path) to its local path"
        )
    return unwrap_state_dict(safe_load(path, map_location='cpu'), name=path)
