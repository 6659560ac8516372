"""Safe checkpoint loading: the only module that unpickles anything.

Every load of a checkpoint or weight file in the repository goes through
:func:`safe_load`. Zip checkpoints are inspected *without* unpickling
(:func:`torch.serialization.get_unsafe_globals_in_checkpoint`) and then loaded
with ``weights_only=True``:

* no foreign globals (pure tensor state dicts): plain ``weights_only=True``;
* only globals of :data:`TRAINING_CHECKPOINT_GLOBALS` (what mmengine's message
  hub stores in our own training checkpoints): ``weights_only=True`` inside a
  scoped :func:`torch.serialization.safe_globals`;
* anything else: :class:`UnsafeCheckpointError`, nothing is executed.

``trust_source=True`` is passed only by the converters' ``--trust-source``
flag and is the one ``weights_only=False`` load of the repository.

:func:`register_checkpoint_loaders` (called by
:func:`shared.utils.compat.apply_patches`) routes mmengine's
``CheckpointLoader`` schemes here, which covers ``--resume``, ``load_from``,
``tools/test.py``, ``init_cfg=dict(type='Pretrained')`` and
``mmpretrain.apis.init_model``.
"""

from __future__ import annotations

import io
import logging
import os
import os.path as osp
import pickle
import re
import warnings
from collections.abc import Callable
from typing import IO, Any

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log

__all__ = [
    'UnsafeCheckpointError',
    'UnsupportedSchemeError',
    'safe_load',
    'training_checkpoint_globals',
    'list_checkpoint_globals',
    'register_checkpoint_loaders',
    'save_state_dict',
    'load_pickle_trusted',
    'load_pickle_safe',
]

#: Statistic methods that mmengine's ``HistoryBuffer`` pickles by name.
HISTORY_BUFFER_METHODS = frozenset({'min', 'max', 'mean', 'current'})
#: URL schemes handled by :func:`safe_load` besides local paths.
URL_SCHEMES = ('http://', 'https://')
MAPPED_SCHEMES = (
    'torchvision://',
    'modelzoo://',
    'open-mmlab://',
    'openmmlab://',
    'mmcls://',
)
#: mmengine schemes we refuse (remote storage we cannot inspect safely).
UNSUPPORTED_SCHEMES = ('pavi://', r'(\S+\:)?s3://', r'(\S+\:)?petrel://')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickle globals outside the allowlist.

    Nothing of the file was executed when this is raised.
    """


class UnsupportedSchemeError(ValueError):
    """A checkpoint path uses a URL scheme that :func:`safe_load` refuses."""


def _guarded_getattr(obj: Any, name: str, *default: Any) -> Any:
    """Stand-in for ``builtins.getattr`` inside training checkpoints.

    mmengine's ``HistoryBuffer`` pickles its statistic table as
    ``getattr(HistoryBuffer, 'min')``. Allowlisting the real ``getattr`` would
    expose any attribute of any allowlisted object (``__init__``,
    ``__globals__``, ...), so only those four lookups are answered.

    Raises:
        UnsafeCheckpointError: for any other object or name.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if (
        obj is HistoryBuffer
        and not default
        and isinstance(name, str)
        and name in HISTORY_BUFFER_METHODS
    ):
        return getattr(obj, name)
    raise UnsafeCheckpointError(
        f'checkpoint calls getattr({obj!r}, {name!r}); only '
        f'getattr(HistoryBuffer, one of {sorted(HISTORY_BUFFER_METHODS)}) '
        'is accepted in a training checkpoint'
    )


def training_checkpoint_globals() -> list[Any]:
    """Return the globals allowed in this project's training checkpoints.

    Exactly what mmengine's message-hub state pickles: ``HistoryBuffer``, a
    guarded ``getattr``, numpy arrays, scalars and numeric dtypes (numpy-2
    names and the numpy-1 ``numpy.core`` aliases). Object arrays are refused
    (``ObjectDType`` is not listed).

    Returns:
        list: entries for :func:`torch.serialization.safe_globals` (objects,
        or ``(object, 'module.name')`` pairs for aliased names).
    """
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    from numpy._core import multiarray

    dtype_names = ['BoolDType', 'Float16DType', 'Float32DType', 'Float64DType']
    for bits in (8, 16, 32, 64):
        dtype_names += [f'Int{bits}DType', f'UInt{bits}DType']
    # The C-named aliases (LongDType, ULongLongDType, ...) are the same
    # classes as the sized ones above on every platform numpy supports.
    entries: list[Any] = [
        HistoryBuffer,
        (_guarded_getattr, 'builtins.getattr'),
        (multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy._core.multiarray.scalar'),
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
    ]
    for name in dtype_names:
        entries.append((getattr(np.dtypes, name), f'numpy.dtypes.{name}'))
    return entries


def _allowlist_names(entries: list[Any]) -> set[str]:
    names = set()
    for entry in entries:
        if isinstance(entry, tuple):
            names.add(entry[1])
        else:
            names.add(f'{entry.__module__}.{entry.__qualname__}')
    return names


def _rewind(f: IO[bytes] | str) -> None:
    if hasattr(f, 'seek'):
        f.seek(0)


def _is_zip(f: IO[bytes] | str) -> bool:
    """Whether ``torch.load`` will read ``f`` as a zip checkpoint.

    torch's own test (the zip magic at offset 0) is used, not
    :func:`zipfile.is_zipfile`, which also accepts data with a zip appended.
    """
    with torch.serialization._open_file_like(f, 'rb') as opened:
        result = torch.serialization._is_zipfile(opened)
    _rewind(f)
    return result


def list_checkpoint_globals(f: IO[bytes] | str) -> list[str]:
    """List the non-default pickle globals of a checkpoint without loading it.

    Uses :func:`torch.serialization.get_unsafe_globals_in_checkpoint`, which
    reads the same ``data.pkl`` record as ``torch.load``.

    Args:
        f: path or seekable binary file of a ``torch.save`` zip checkpoint.

    Returns:
        list[str]: sorted ``module.name`` strings that torch's weights-only
        unpickler does not allow by default.
    """
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(f)
    except ValueError as exc:
        raise UnsafeCheckpointError(
            f'{_name(f)} is not a torch.save checkpoint: {exc}'
        ) from None
    finally:
        _rewind(f)
    return sorted(found)


def _name(f: IO[bytes] | str) -> str:
    return f if isinstance(f, str) else getattr(f, 'name', repr(f))


def _unsafe_message(name: str, bad: list[str]) -> str:
    return (
        f'refusing to load {name}: it contains pickle globals outside the '
        f'allowlist: {", ".join(bad)}. Only tensor state dicts and this '
        "project's own training checkpoints are accepted. If you trust the "
        'file, convert it once with a converter from tools/model_converters/ '
        '(or tools/dataset_converters/san_imgs_to_raw.py) and its '
        '--trust-source flag.'
    )


def _refusal(name: str, exc: Exception) -> UnsafeCheckpointError:
    """Turn torch's weights-only refusal into our error (no unsafe advice)."""
    text = str(exc)
    found = re.findall(r'GLOBAL ([\w.]+)', text)
    if found:
        return UnsafeCheckpointError(_unsafe_message(name, sorted(set(found))))
    first = text.strip().splitlines()[-1] if text.strip() else repr(exc)
    if 'Unsupported operand' in text:
        first += (
            ' (the weights-only reader understands pickle protocol 2, which '
            'mmengine.dump and torch.save write; re-dump the file with '
            'protocol 2)'
        )
    return UnsafeCheckpointError(
        f'refusing to load {name}: {first}. Only tensor state dicts and '
        "this project's own training checkpoints are accepted; convert a "
        "trusted file with a converter's --trust-source flag."
    )


def _reject_object_arrays(obj: Any, name: str) -> Any:
    """Refuse numpy object arrays anywhere in a loaded structure."""
    import numpy as np

    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                raise UnsafeCheckpointError(
                    f'refusing to load {name}: it holds a numpy array of '
                    f'dtype {item.dtype} (object arrays are not accepted)'
                )
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return obj


def _weights_only_load(f, map_location: Any, name: str, allow) -> Any:
    try:
        if allow:
            with torch.serialization.safe_globals(allow):
                out = torch.load(
                    f, map_location=map_location, weights_only=True
                )
        else:
            out = torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if isinstance(exc, UnsafeCheckpointError):
            raise
        raise _refusal(name, exc) from None
    return _reject_object_arrays(out, name)


def _load_inspected(
    f: IO[bytes] | str, map_location: Any, trust_source: bool
) -> Any:
    name = _name(f)
    if trust_source:
        if _is_zip(f):
            found = list_checkpoint_globals(f)
            print_log(
                f'--trust-source: loading {name} with weights_only=False; '
                f'its non-default globals: {found or "none"}',
                logger='current',
                level=logging.WARNING,
            )
        else:
            print_log(
                f'--trust-source: loading legacy pickle {name} with '
                'weights_only=False (its globals cannot be listed before '
                'loading)',
                logger='current',
                level=logging.WARNING,
            )
        # The only weights_only=False of the repository (--trust-source).
        return torch.load(f, map_location=map_location, weights_only=False)
    allow = training_checkpoint_globals()
    if _is_zip(f):
        found = list_checkpoint_globals(f)
        bad = [g for g in found if g not in _allowlist_names(allow)]
        if bad:
            raise UnsafeCheckpointError(_unsafe_message(name, bad))
        return _weights_only_load(
            f, map_location, name, allow if found else []
        )
    # Legacy (non-zip) pickles cannot be listed beforehand: the weights-only
    # unpickler refuses unknown globals while reading, before executing them.
    return _weights_only_load(f, map_location, name, allow)


def _tensor_from_bytes(data: bytes) -> Any:
    """``torch.storage._load_from_bytes`` with ``weights_only=True``."""
    return torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)


def load_pickle_safe(f: IO[bytes]) -> Any:
    """Read a plain (non-torch) pickle with torch's weights-only unpickler.

    Accepts what :func:`safe_load` accepts (primitives, containers, numpy
    values, tensors); any other global raises
    :class:`UnsafeCheckpointError` before it is called. Used for mmengine's
    ``.pkl`` annotation and result files.
    """
    from torch import _weights_only_unpickler as wou

    name = _name(f)
    allow = [
        *training_checkpoint_globals(),
        # Plain pickles store tensors as torch.save bytes; read those with
        # weights_only=True instead of torch's unrestricted default.
        (_tensor_from_bytes, 'torch.storage._load_from_bytes'),
    ]
    try:
        with (
            torch.serialization.safe_globals(allow),
            warnings.catch_warnings(),
        ):
            # Plain pickles use protocols 4/5; the unpickler handles them.
            warnings.filterwarnings(
                'ignore', message='Detected pickle protocol'
            )
            out = wou.Unpickler(f).load()
    except pickle.UnpicklingError as exc:
        raise _refusal(name, exc) from None
    return _reject_object_arrays(out, name)


def _resolve_url(src: str) -> str:
    """Map mmengine's model-zoo schemes to an http(s) URL."""
    from mmengine.runner.checkpoint import (
        get_external_models,
        get_mmcls_models,
        get_torchvision_models,
    )

    if src.startswith(('torchvision://', 'modelzoo://')):
        return get_torchvision_models()[src.split('://', 1)[1]]
    if src.startswith(('open-mmlab://', 'openmmlab://')):
        url = get_external_models()[src.split('://', 1)[1]]
        if not url.startswith(URL_SCHEMES):
            raise UnsupportedSchemeError(
                f'{src} maps to the non-URL path {url}; pass a local path'
            )
        return url
    if src.startswith('mmcls://'):
        return get_mmcls_models()[src.split('://', 1)[1]]
    return src


def _download(url: str) -> str:
    """Download ``url`` into the torch hub cache once; return the path.

    In distributed runs local rank 0 downloads and the others wait.
    """
    from torch.hub import download_url_to_file, get_dir

    cache = osp.join(get_dir(), 'checkpoints')
    os.makedirs(cache, exist_ok=True)
    dst = osp.join(cache, osp.basename(url.split('?', 1)[0]))
    rank, world_size = get_dist_info()
    local_rank = int(os.environ.get('LOCAL_RANK', rank))
    if local_rank == 0 and not osp.isfile(dst):
        print_log(
            f'Downloading {url} to {dst}', logger='current', level=logging.INFO
        )
        download_url_to_file(url, dst, progress=False)
    if world_size > 1:
        torch.distributed.barrier()
    return dst


def safe_load(
    src: str | os.PathLike | IO[bytes],
    map_location: Any = 'cpu',
    *,
    trust_source: bool = False,
) -> Any:
    """Load a checkpoint or weight file without executing foreign code.

    Args:
        src: a local path; an ``http(s)://`` URL (downloaded into the torch
            hub cache); a ``torchvision://``, ``modelzoo://``,
            ``open-mmlab://``, ``openmmlab://`` or ``mmcls://`` name; or a
            seekable binary file object.
        map_location: as in :func:`torch.load`. Defaults to ``'cpu'``.
        trust_source: load with ``weights_only=False`` after listing the
            globals. Only the converters' ``--trust-source`` flag sets it.

    Returns:
        The unpickled object (usually a dict of tensors or a training
        checkpoint dict).

    Raises:
        FileNotFoundError: the local path does not exist.
        UnsupportedSchemeError: ``pavi://``, ``s3://``, ``petrel://`` or any
            other unknown scheme.
        UnsafeCheckpointError: the file holds globals outside the allowlist.
    """
    if hasattr(src, 'read'):
        return _load_inspected(src, map_location, trust_source)
    src = os.fspath(src)
    if '://' in src:
        scheme = src.split('://', 1)[0] + '://'
        if scheme in MAPPED_SCHEMES:
            src = _resolve_url(src)
            scheme = src.split('://', 1)[0] + '://'
        if scheme not in URL_SCHEMES:
            raise UnsupportedSchemeError(
                f'checkpoint scheme {scheme} is not supported ({src}); '
                'download the file and pass its local path'
            )
        path = _download(src)
        ckpt = _load_inspected(path, map_location, trust_source)
        if src.startswith('mmcls://'):
            from mmengine.runner.checkpoint import _process_mmcls_checkpoint

            ckpt = _process_mmcls_checkpoint(ckpt)
        return ckpt
    path = osp.expanduser(src)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file {path} does not exist')
    return _load_inspected(path, map_location, trust_source)


def load_pickle_trusted(path: str) -> Any:
    """Unpickle a non-torch pickle the user vouched for (--trust-source).

    Only the dataset and model converters call this, after their
    ``--trust-source`` flag was given.
    """
    print_log(
        f'--trust-source: unpickling {path}',
        logger='current',
        level=logging.WARNING,
    )
    with open(path, 'rb') as f:
        return pickle.load(f)


def save_state_dict(obj: Any, path: str) -> None:
    """Write ``obj`` with :func:`torch.save` atomically (temp + rename)."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{osp.basename(path)}.tmp{os.getpid()}')
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def load_from_local_safe(filename: str, map_location: Any = None) -> Any:
    """mmengine scheme loader for local paths (keeps the load_from_ prefix)."""
    return safe_load(filename, map_location)


def load_from_url_safe(filename: str, map_location: Any = None) -> Any:
    """mmengine scheme loader for URLs and model-zoo names."""
    return safe_load(filename, map_location)


def load_from_unsupported(filename: str, map_location: Any = None) -> Any:
    """mmengine scheme loader that refuses remote storage schemes."""
    scheme = filename.split('://', 1)[0] + '://'
    raise UnsupportedSchemeError(
        f'checkpoint scheme {scheme} is not supported ({filename}); '
        'download the file and pass its local path'
    )


def register_checkpoint_loaders() -> None:
    """Route every mmengine ``CheckpointLoader`` scheme through safe_load.

    This is the one ``force=True`` of the repository; it re-registers
    checkpoint-loader schemes, not registry entries.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    loaders: list[tuple[Any, Callable]] = [
        ('', load_from_local_safe),
        (list(URL_SCHEMES + MAPPED_SCHEMES), load_from_url_safe),
        (list(UNSUPPORTED_SCHEMES), load_from_unsupported),
    ]
    for prefixes, loader in loaders:
        CheckpointLoader.register_scheme(prefixes, loader, force=True)
