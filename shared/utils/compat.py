"""Compatibility patches for the pinned stack (``apply_patches()``).

Called by every entry point (``tools/*.py``, ``register_all_modules`` and the
test suite) before a config is read. Each patch targets a measured
incompatibility of mmengine 0.10.7 / mmpretrain 1.2.0 with torch >= 2.6,
setuptools >= 82 or numpy >= 2.4:

1. ``checkpoint-loaders``: mmengine's ``CheckpointLoader`` schemes load
   through :func:`shared.utils.checkpoint.safe_load` (torch >= 2.6 refuses
   every mmengine training checkpoint with ``weights_only=True``; we never
   fall back to unpickling arbitrary globals).
2. ``pkg-resources``: only when ``import pkg_resources`` fails, importlib
   versions of ``is_installed``, ``get_installed_path`` and
   ``package2module`` replace mmengine's in every module that bound them.
3. ``np-in1d``: only when numpy lacks it, ``np.in1d`` becomes
   ``np.isin(...).ravel()``
   (mmpretrain's retrieval metrics call it).
4. ``warning-filters``: silence mmcv-lite's "Fail to import
   MultiScaleDeformableAttention", the setuptools ``pkg_resources``
   deprecation and mmengine's "FileClient"/"HardDiskBackend" notices.
5. ``atomic-local-writes``: mmengine's local file backend writes through a
   temporary file and ``os.replace``, so a crash while saving a checkpoint
   leaves the previous one and ``last_checkpoint`` intact.
6. ``safe-pickle-files``: ``mmengine.load`` of ``.pkl``/``.pickle`` files
   (annotation files, dumped results) reads through the weights-only
   unpickler of :func:`shared.utils.checkpoint.load_pickle_safe` instead of
   plain :mod:`pickle`.
7. ``hue-shift``: mmcv's ``adjust_hue`` (mmpretrain's ``ColorJitter``)
   computes the hue shift as ``np.uint8(hue_factor * 255)``, which numpy
   >= 2 refuses for a negative factor (``OverflowError``; numpy 1 wrapped
   it modulo 256). The replacement wraps explicitly, so the result equals
   mmcv's under numpy 1.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import logging
import os
import os.path as osp
import warnings
from pathlib import Path

import numpy as np

__all__ = ['apply_patches', 'CompatError', 'MMENGINE_VERSION']

MMENGINE_VERSION = '0.10.7'
_APPLIED: list[str] = []

_NOISY_LOG_MESSAGES = (
    '"FileClient" will be deprecated',
    '"HardDiskBackend" is the alias',
)


class CompatError(RuntimeError):
    """The environment cannot be patched safely."""


def _check_environment() -> None:
    if os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'):
        raise CompatError(
            'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: it silently re-enables '
            'unsafe pickle loading of third-party files. Unset it (our own '
            'checkpoints load without it).'
        )
    version = md.version('mmengine')
    if version != MMENGINE_VERSION:
        raise CompatError(
            f'mmengine {version} is installed but shared/utils/compat.py '
            f'patches mmengine {MMENGINE_VERSION} internals. Fix: make setup '
            '(pip install -c requirements/constraints.txt --no-deps '
            '-r requirements/openmmlab.txt)'
        )


# -- 2. pkg_resources ---------------------------------------------------------
def _distribution(package: str):
    try:
        return md.distribution(package)
    except md.PackageNotFoundError:
        return None


def is_installed(package: str) -> bool:
    """importlib version of ``mmengine.utils.is_installed``."""
    if _distribution(package) is not None:
        return True
    spec = importlib.util.find_spec(package)
    return spec is not None and spec.origin is not None


def package2module(package: str) -> str:
    """importlib version of ``mmengine.utils.package_utils.package2module``."""
    dist = _distribution(package)
    if dist is None:
        raise md.PackageNotFoundError(package)
    top_level = dist.read_text('top_level.txt')
    if top_level:
        return top_level.split('\n')[0]
    files = [str(f) for f in dist.files or ()]
    for f in files:
        if f.endswith('__init__.py') and f.count('/') == 1:
            return f.split('/')[0]
    raise ValueError(f'can not infer the module name of {package}')


def get_installed_path(package: str) -> str:
    """importlib version of ``mmengine.utils.get_installed_path``."""
    dist = _distribution(package)
    if dist is None:
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise md.PackageNotFoundError(package)
        if spec.origin is None:
            raise RuntimeError(
                f'{package} is a namespace package, which is '
                'invalid for `get_install_path`'
            )
        return osp.dirname(spec.origin)
    location = str(Path(dist.locate_file('')))
    possible = osp.join(location, package)
    if osp.exists(possible):
        return possible
    return osp.join(location, package2module(package))


def _patch_pkg_resources() -> bool:
    try:
        import pkg_resources  # noqa: F401

        return False
    except ImportError:
        pass
    modules = (
        'mmengine.utils.package_utils',
        'mmengine.utils',
        'mmengine.config.config',
        'mmengine.hub.hub',
    )
    replacements = dict(
        is_installed=is_installed,
        get_installed_path=get_installed_path,
        package2module=package2module,
    )
    for name in modules:
        module = importlib.import_module(name)
        for attr, func in replacements.items():
            if hasattr(module, attr):
                setattr(module, attr, func)
    return True


# -- 3. np.in1d ---------------------------------------------------------------
def in1d(ar1, ar2, assume_unique=False, invert=False, *, kind=None):
    """``np.in1d`` as numpy < 2.4 defined it: ``np.isin(...).ravel()``."""
    return np.isin(
        ar1, ar2, assume_unique=assume_unique, invert=invert, kind=kind
    ).ravel()


def _patch_in1d() -> bool:
    if hasattr(np, 'in1d'):
        return False
    np.in1d = in1d
    return True


# -- 4. warnings --------------------------------------------------------------
class _NoiseFilter(logging.Filter):
    """Drop mmengine's FileClient/HardDiskBackend deprecation notices."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not any(m in msg for m in _NOISY_LOG_MESSAGES)


def _patch_warnings() -> bool:
    warnings.filterwarnings(
        'ignore',
        message='Fail to import ``MultiScaleDeformableAttention``',
        module=r'mmcv\.cnn\.bricks\.transformer',
    )
    warnings.filterwarnings(
        'ignore', message='pkg_resources is deprecated as an API'
    )
    from mmengine.logging import MMLogger

    if getattr(MMLogger, '_compat_noise_filter', False):
        return True
    original_init = MMLogger.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.addFilter(_NoiseFilter())

    MMLogger.__init__ = __init__
    MMLogger._compat_noise_filter = True
    for instance in MMLogger._instance_dict.values():
        instance.addFilter(_NoiseFilter())
    return True


# -- 5. atomic writes ---------------------------------------------------------
def _atomic_write(data, filepath, mode, encoding=None) -> None:
    filepath = os.fspath(filepath)
    directory = osp.dirname(osp.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{osp.basename(filepath)}.tmp{os.getpid()}')
    try:
        with open(tmp, mode, encoding=encoding) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _patch_atomic_writes() -> bool:
    from mmengine.fileio.backends.local_backend import LocalBackend

    if getattr(LocalBackend, '_compat_atomic', False):
        return True

    def put(self, obj: bytes, filepath) -> None:
        """Write bytes atomically (temporary file + ``os.replace``)."""
        _atomic_write(obj, filepath, 'wb')

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        """Write text atomically (temporary file + ``os.replace``)."""
        _atomic_write(obj, filepath, 'w', encoding)

    LocalBackend.put = put
    LocalBackend.put_text = put_text
    LocalBackend._compat_atomic = True
    return True


# -- 6. pickle files ----------------------------------------------------------
def _patch_pickle_handler() -> bool:
    from mmengine.fileio.handlers import PickleHandler, file_handlers

    from shared.utils.checkpoint import load_pickle_safe

    class SafePickleHandler(PickleHandler):
        """mmengine's pickle handler on the weights-only unpickler."""

        def load_from_fileobj(self, file, **kwargs):
            return load_pickle_safe(file)

    for ext in ('pkl', 'pickle'):
        if not isinstance(file_handlers.get(ext), SafePickleHandler):
            file_handlers[ext] = SafePickleHandler()
    return True


# -- 7. hue shift -------------------------------------------------------------
_MMCV_ADJUST_HUE = None


def adjust_hue(img: np.ndarray, hue_factor: float, backend=None) -> np.ndarray:
    """``mmcv.adjust_hue`` with the uint8 hue shift wrapped modulo 256.

    Args:
        img (ndarray): ``(H, W, 3)`` BGR image (uint8 for pillow).
        hue_factor (float): Hue shift in ``[-0.5, 0.5]`` turns.
        backend (str | None): ``'cv2'`` or ``'pillow'``; None takes mmcv's
            ``imread_backend``.

    Returns:
        ndarray: The hue-shifted image, same dtype.
    """
    import cv2
    from mmcv.image import photometric
    from PIL import Image

    if backend is None:
        backend = photometric.imread_backend
    if backend not in ('cv2', 'pillow'):
        raise ValueError(
            f'backend: {backend} is not supported. Supported backends are '
            "'cv2', 'pillow'"
        )
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f'hue_factor:{hue_factor} is not in [-0.5, 0.5].')
    if not (isinstance(img, np.ndarray) and img.ndim in (2, 3)):
        raise TypeError('img should be ndarray with dim=[2 or 3].')
    # numpy 1 truncated toward zero, then wrapped into uint8.
    shift = np.uint8(int(hue_factor * 255) % 256)
    if backend == 'pillow':
        if img.dtype != np.uint8:
            raise TypeError('Pillow backend only support uint8 type')
        if img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(
                'adjust_hue: the pillow backend needs an (H, W, 3) BGR '
                f'image, got shape {img.shape}'
            )
        pil_image = Image.fromarray(np.ascontiguousarray(img[..., ::-1]))
        h, s, v = pil_image.convert('HSV').split()
        np_h = np.array(h, dtype=np.uint8)
        np_h += shift  # uint8 addition wraps across the hue circle
        h = Image.fromarray(np_h, 'L')
        out = Image.merge('HSV', (h, s, v)).convert('RGB')
        return np.array(out, dtype=img.dtype)[..., ::-1]
    dtype = img.dtype
    hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
    h, s, v = cv2.split(hsv)
    h = h.astype(np.uint8)
    h += shift
    return cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR_FULL).astype(
        dtype
    )


def _patch_adjust_hue() -> bool:
    import mmcv
    import mmcv.image
    from mmcv.image import photometric

    global _MMCV_ADJUST_HUE
    if photometric.adjust_hue is not adjust_hue:
        _MMCV_ADJUST_HUE = photometric.adjust_hue  # kept for the tests
    for module in (mmcv, mmcv.image, photometric):
        module.adjust_hue = adjust_hue
    return True


def apply_patches() -> list[str]:
    """Apply the compatibility patches once; safe to call repeatedly.

    Returns:
        list[str]: names of the patches in effect, in the order applied
        (the tools log them).

    Raises:
        CompatError: mmengine is not 0.10.7, or
            ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set.
    """
    _check_environment()
    if _APPLIED:
        return list(_APPLIED)
    applied = []
    # Filters first: importing mmengine.runner pulls in mmcv-lite warnings.
    if _patch_warnings():
        applied.append('warning-filters')
    from shared.utils.checkpoint import register_checkpoint_loaders

    register_checkpoint_loaders()
    applied.append('checkpoint-loaders')
    if _patch_pkg_resources():
        applied.append('pkg-resources')
    if _patch_in1d():
        applied.append('np-in1d')
    if _patch_atomic_writes():
        applied.append('atomic-local-writes')
    if _patch_pickle_handler():
        applied.append('safe-pickle-files')
    if _patch_adjust_hue():
        applied.append('hue-shift')
    # Recorded only once every patch succeeded, so a failure is retried.
    _APPLIED.extend(applied)
    return list(_APPLIED)
