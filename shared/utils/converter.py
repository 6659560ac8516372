"""What the checkpoint converters of ``tools/model_converters`` share.

Each converter supplies ``convert(ckpt, name) -> (state_dict, meta)`` and a
summary printer; this module gives them the command line (``IN OUT
[--trust-source]``), the safe load, the clean atomic write (``{'state_dict',
'meta'}``, or the bare state dict with ``flat=True``) and the exit-status
handling, plus the tensor and scalar clean-up of the output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .checkpoint import (
    UnsafeCheckpointError,
    UnsupportedSchemeError,
    safe_load,
    save_state_dict,
)

__all__ = [
    'ConversionError',
    'convert_file',
    'converter_parser',
    'plain_scalar',
    'plain_tensor',
    'run_converter',
]


class ConversionError(ValueError):
    """The input is not a checkpoint the converter can convert."""


def converter_parser(
    description: str, input_help: str
) -> argparse.ArgumentParser:
    """The ``IN OUT [--trust-source]`` parser of a converter."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('input', metavar='IN', help=input_help)
    parser.add_argument('output', metavar='OUT', help='converted file')
    parser.add_argument(
        '--trust-source',
        action='store_true',
        help='load an input that holds arbitrary pickle globals (this '
        'EXECUTES code from the file: only for files you trust). The '
        'output is clean either way.',
    )
    return parser


def plain_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A detached CPU tensor owning exactly its storage."""
    tensor = tensor.detach().cpu()
    if type(tensor) is not torch.Tensor:
        tensor = tensor.as_subclass(torch.Tensor)
    if tensor.untyped_storage().nbytes() != tensor.nbytes:
        tensor = tensor.clone()  # a view: do not save its whole storage
    return tensor


def plain_scalar(value: Any) -> int | float | None:
    """A Python number from an int/float/numpy/0-d tensor, else ``None``."""
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else None
    elif isinstance(value, np.ndarray | np.generic):
        value = value.item() if value.size == 1 else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def convert_file(
    src: str,
    dst: str,
    convert: Callable[[Any, str], tuple[dict, dict]],
    *,
    trust_source: bool = False,
    flat: bool = False,
) -> tuple[dict, int]:
    """Load ``src`` safely, convert it, write ``dst`` atomically.

    ``dst`` holds ``{'state_dict': …, 'meta': …}``, or with ``flat=True``
    the bare ``{name: tensor}`` state dict (``meta`` is then only returned,
    e.g. for the summary).

    Returns:
        tuple[dict, int]: The ``meta`` (written unless ``flat``) and the
        number of tensors.
    """
    ckpt = safe_load(src, map_location='cpu', trust_source=trust_source)
    state_dict, meta = convert(ckpt, src)
    save_state_dict(
        state_dict if flat else {'state_dict': state_dict, 'meta': meta}, dst
    )
    return meta, len(state_dict)


def run_converter(
    args: argparse.Namespace,
    convert: Callable[[Any, str], tuple[dict, dict]],
    summarize: Callable[[dict, int], Sequence[str]],
    *,
    flat: bool = False,
) -> int:
    """Convert ``args.input`` to ``args.output`` and print the summary.

    ``flat`` is passed to :func:`convert_file`.

    Returns:
        int: 0, or 1 after printing ``Type: message`` to stderr for a
        missing file, a refused pickle, an unsupported scheme or a
        :class:`ConversionError`.
    """
    from .compat import apply_patches

    apply_patches()
    try:
        meta, tensors = convert_file(
            args.input,
            args.output,
            convert,
            trust_source=args.trust_source,
            flat=flat,
        )
    except (
        FileNotFoundError,
        UnsafeCheckpointError,
        UnsupportedSchemeError,
        ConversionError,
    ) as exc:
        print(f'{type(exc).__name__}: {exc}', file=sys.stderr)
        return 1
    for line in summarize(meta, tensors):
        print(line)
    print(f'written: {args.output}')
    return 0
