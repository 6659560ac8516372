"""Turn a training checkpoint into a publishable weights file.

The output keeps only ``state_dict`` (tensors, moved to the CPU) and a
``meta`` dict reduced to JSON primitives (``str``, ``int``, ``float``,
``bool``, ``None`` and nested lists / string-keyed dicts of those; numpy
scalars become Python scalars, anything else is dropped). The optimizer,
the parameter schedulers, the message hub, RNG states and every other
top-level key are dropped, so the file holds no pickle globals beyond
torch's defaults and loads with plain ``torch.load(f, weights_only=True)``.
A bare state dict of tensors is accepted as input too.

The input is read through :func:`shared.utils.checkpoint.safe_load`: files
holding globals outside the training-checkpoint allowlist are refused
unless ``--trust-source`` is given.

The output is ``OUT_DIR/{stem}_{YYYYMMDD}-{sha256[:8]}.pth``: ``stem`` is
``--name`` or the input file stem (pass the config stem), the date is
today's and the hash is that of the written file. The file is written to a
temporary name in ``OUT_DIR``, checked, hashed and renamed atomically; its
path is printed on stdout.

Examples::

    python tools/model_converters/publish_model.py \\
        work_dirs/tscam_deit-s_cub/epoch_60.pth publish/ \\
        --name tscam_deit-s_8xb16-60e_cub
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import os.path as osp
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if sys.path[0] != REPO_ROOT:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from shared.utils.checkpoint import (  # noqa: E402
    UnsafeCheckpointError,
    UnsupportedSchemeError,
    list_checkpoint_globals,
    safe_load,
)
from shared.utils.compat import apply_patches  # noqa: E402

__all__ = [
    'PublishError',
    'extract_state_dict',
    'main',
    'parse_args',
    'primitive_meta',
    'publish',
]

PRIMITIVES = (str, int, float, bool, type(None))
_DROP = object()


class PublishError(RuntimeError):
    """The input cannot be published (no state dict, unsafe output, ...)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Strip a training checkpoint to state_dict + primitive '
        'meta and save it as OUT_DIR/{stem}_{YYYYMMDD}-{sha256[:8]}.pth.'
    )
    parser.add_argument('input', metavar='IN', help='checkpoint to publish')
    parser.add_argument(
        'out_dir', metavar='OUT_DIR', help='folder for the published file'
    )
    parser.add_argument(
        '--name',
        metavar='STEM',
        help='output name stem (default: the input file stem; pass the '
        'config stem)',
    )
    parser.add_argument(
        '--trust-source',
        action='store_true',
        help='load an input that holds arbitrary pickle globals (this '
        'EXECUTES code from the file: only for files you trust). The '
        'output is clean either way.',
    )
    return parser.parse_args(argv)


#: ``meta`` keys that only a resumed training run uses.
RESUME_ONLY_META = ('rng_state', 'world_size', 'schedule')


def _primitive(value: Any) -> Any:
    """``value`` reduced to JSON primitives, or ``_DROP``."""
    if isinstance(value, np.generic):
        value = value.item()
    if type(value) in PRIMITIVES:
        return value
    if isinstance(value, list | tuple):
        items = (_primitive(v) for v in value)
        return [v for v in items if v is not _DROP]
    if isinstance(value, Mapping):
        return primitive_meta(value)
    return _DROP


def primitive_meta(meta: Mapping) -> dict:
    """Reduce ``meta`` to a dict of JSON primitives.

    Entries with non-string keys or values that are not primitives (after
    converting numpy scalars with ``.item()``) are dropped; tuples become
    lists and mappings plain dicts.
    """
    out = {}
    for key, value in meta.items():
        if type(key) is not str:
            continue
        value = _primitive(value)
        if value is not _DROP:
            out[key] = value
    return out


def _cpu_tensor(key: str, value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise PublishError(
            f'state_dict entry {key!r} is a {type(value).__name__}, not a '
            'tensor'
        )
    tensor = value.detach().cpu()
    if type(tensor) is not torch.Tensor:  # Parameter or another subclass
        tensor = tensor.as_subclass(torch.Tensor)
    if tensor.untyped_storage().nbytes() != tensor.nbytes:
        tensor = tensor.clone()  # a view: do not save its whole storage
    return tensor


def extract_state_dict(ckpt: Any) -> tuple[OrderedDict, dict]:
    """Split a loaded checkpoint into (CPU tensor state dict, meta).

    Raises:
        PublishError: ``ckpt`` has no ``state_dict`` and is not itself a
            dict of tensors, or the state dict holds non-tensor values.
    """
    if not isinstance(ckpt, Mapping):
        raise PublishError(
            f'the input is a {type(ckpt).__name__}, not a checkpoint dict'
        )
    if 'state_dict' in ckpt:
        state_dict = ckpt['state_dict']
        meta = ckpt.get('meta')
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state_dict, meta = ckpt, None
    else:
        raise PublishError(
            "the input has no 'state_dict' and is not a bare state dict of "
            f'tensors (top-level keys: {sorted(map(str, ckpt))})'
        )
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise PublishError("the input's 'state_dict' is empty or not a dict")
    out = OrderedDict(
        (str(k), _cpu_tensor(str(k), v)) for k, v in state_dict.items()
    )
    metadata = getattr(state_dict, '_metadata', None)
    if isinstance(metadata, Mapping):  # module versions (load_state_dict)
        out._metadata = primitive_meta(metadata)
    meta = primitive_meta(meta) if isinstance(meta, Mapping) else {}
    # Resume-only state of tools/train.py: meaningless for published weights
    # (and incomplete once its tensors are dropped).
    for key in RESUME_ONLY_META:
        meta.pop(key, None)
    return out, meta


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def publish(
    src: str,
    out_dir: str,
    name: str | None = None,
    *,
    trust_source: bool = False,
) -> str:
    """Publish ``src`` into ``out_dir``; return the output path."""
    ckpt = safe_load(src, map_location='cpu', trust_source=trust_source)
    state_dict, meta = extract_state_dict(ckpt)
    dropped = sorted(str(k) for k in ckpt if k not in ('state_dict', 'meta'))
    if dropped and 'state_dict' in ckpt:
        print(f'dropped: {", ".join(dropped)}', file=sys.stderr)
    stem = name or osp.splitext(osp.basename(src))[0]
    if not stem or os.sep in stem or (os.altsep and os.altsep in stem):
        raise PublishError(f'invalid output stem {stem!r}')
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{stem}.', suffix='.pth.tmp', dir=out_dir
    )
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save({'state_dict': state_dict, 'meta': meta}, f)
            f.flush()
            os.fsync(f.fileno())
        extra = list_checkpoint_globals(tmp)
        if extra != []:
            raise PublishError(
                f'the published file would hold non-default pickle globals '
                f'{extra}; refusing to write it'
            )
        date = datetime.date.today().strftime('%Y%m%d')
        out = osp.join(out_dir, f'{stem}_{date}-{_sha256(tmp)[:8]}.pth')
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    apply_patches()
    try:
        out = publish(
            args.input,
            args.out_dir,
            args.name,
            trust_source=args.trust_source,
        )
    except (
        FileNotFoundError,
        UnsafeCheckpointError,
        UnsupportedSchemeError,
        PublishError,
    ) as exc:
        print(f'{type(exc).__name__}: {exc}', file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
