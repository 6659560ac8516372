"""Protocol presets and score-map resizing (``evaluation.md`` §2).

The three reference protocols resize the native score map of the
ground-truth class to the evaluated frame differently:

========== ======= ============= ==========================================
preset     dtype   interpolation normalisation
========== ======= ============= ==========================================
wsoleval   float64 INTER_CUBIC   :func:`~.wsol.normalize_cam` after resize
tscam      float32 INTER_LINEAR  :func:`~.wsol.normalize_cam` after resize
spa        float32 INTER_LINEAR  (m - min) / (max - min + 1e-10) at native
                                 size **before** resize; SOS maps: none,
                                 clamp at 0 after resize
========== ======= ============= ==========================================

The target size is given as (H, W) and passed to OpenCV as (W, H).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from .wsol import (
    _check_thresholds,
    _preset_boxes,
    _reject_torch,
    normalize_cam,
)

__all__ = [
    'ProtocolPreset',
    'PRESETS',
    'get_preset',
    'resize_cam',
    'preset_boxes',
]


@dataclass(frozen=True)
class ProtocolPreset:
    """Map-resizing rules of one reference protocol (``evaluation.md`` §2).

    Attributes:
        name (str): Preset name (``'wsoleval'``, ``'tscam'`` or ``'spa'``).
        dtype (str): numpy dtype the map is cast to before resizing.
        interpolation (int): OpenCV interpolation flag of the resize.
        normalize (str): ``'after'``: :func:`normalize_cam` on the resized
            map; ``'before'``: (m - min) / (max - min + 1e-10) on the native
            map, then resize.
        sos_variant (bool): Whether the preset has an SOS variant (no
            normalisation, clamp at 0 after resize), selected with
            ``resize_cam(..., sos=True)``.
    """

    name: str
    dtype: str
    interpolation: int
    normalize: Literal['after', 'before']
    sos_variant: bool = False


PRESETS: dict[str, ProtocolPreset] = {
    'wsoleval': ProtocolPreset(
        'wsoleval', 'float64', cv2.INTER_CUBIC, 'after'
    ),
    'tscam': ProtocolPreset('tscam', 'float32', cv2.INTER_LINEAR, 'after'),
    'spa': ProtocolPreset(
        'spa', 'float32', cv2.INTER_LINEAR, 'before', sos_variant=True
    ),
}

#: Added to the range by the ``spa`` min-max (WGOL/SPA code).
SPA_EPS = 1e-10


def get_preset(preset: str | ProtocolPreset) -> ProtocolPreset:
    """Look up a preset by name (a :class:`ProtocolPreset` passes through).

    Args:
        preset (str | ProtocolPreset): ``'wsoleval'``, ``'tscam'``,
            ``'spa'`` or a preset instance.

    Returns:
        ProtocolPreset: The preset.

    Raises:
        ValueError: Unknown preset name or type.
    """
    if isinstance(preset, ProtocolPreset):
        return preset
    if isinstance(preset, str) and preset in PRESETS:
        return PRESETS[preset]
    raise ValueError(
        f'unknown protocol preset {preset!r}; expected one of '
        f'{sorted(PRESETS)}'
    )


def _check_size(size) -> tuple[int, int]:
    """Validate a target size (H, W) of two positive integers."""
    try:
        values = tuple(size)
    except TypeError:
        raise ValueError(f'size must be (H, W), got {size!r}') from None
    if len(values) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        for v in values
    ):
        raise ValueError(f'size must be two integers (H, W), got {size!r}')
    if min(values) <= 0:
        raise ValueError(f'size must be positive, got {size!r}')
    return int(values[0]), int(values[1])


def resize_cam(
    cam: np.ndarray,
    size: tuple[int, int],
    preset: str | ProtocolPreset,
    *,
    sos: bool = False,
) -> np.ndarray:
    """Resize a native score map to the evaluated frame under a preset.

    ``wsoleval``: float64, ``cv2.resize(INTER_CUBIC)``, then
    :func:`normalize_cam`. ``tscam``: float32, ``INTER_LINEAR``, then
    :func:`normalize_cam`. ``spa``: float32, (m - min) / (max - min + 1e-10)
    at native size first, then ``INTER_LINEAR``; with ``sos=True`` no
    normalisation and the resized map is clamped at 0. float16 maps are cast
    to float32 first; the map is then cast to the preset's dtype.

    Args:
        cam (np.ndarray): (h, w) float native score map (any scale).
        size (tuple[int, int]): Evaluated frame (H, W) in pixels; passed to
            OpenCV as (W, H).
        preset (str | ProtocolPreset): ``'wsoleval'``, ``'tscam'``,
            ``'spa'`` or a preset instance.
        sos (bool): SOS variant (keyword-only; only for presets with
            ``sos_variant``, i.e. ``spa``).

    Returns:
        np.ndarray: (H, W) map in the preset's dtype; in [0, 1] unless
        ``sos`` (then >= 0, unscaled). A constant map gives all zeros.

    Raises:
        TypeError: Torch tensors or non-floating maps.
        ValueError: cam not 2-D or empty, NaN or +-inf values, invalid
            size, unknown preset, or ``sos`` with a preset without an SOS
            variant.
    """
    _reject_torch(cam, 'cam')
    p = get_preset(preset)
    height, width = _check_size(size)
    if sos and not p.sos_variant:
        raise ValueError(f'preset {p.name!r} has no SOS variant')
    m = np.asarray(cam)
    if m.dtype.kind != 'f':
        raise TypeError(f'cam must be a floating array, got {m.dtype}')
    if m.ndim != 2:
        raise ValueError(f'cam must be 2-D (h, w), got shape {m.shape}')
    if m.size == 0:
        raise ValueError(f'cam is empty: {m.shape}')
    if m.dtype == np.float16:
        m = m.astype(np.float32)
    if not np.isfinite(m).all():
        raise ValueError('cam contains NaN or +-inf')
    # Always a fresh contiguous array: the caller's map is never modified.
    m = np.array(m, dtype=p.dtype, order='C', copy=True)
    if p.normalize == 'before' and not sos:
        lo, hi = m.min(), m.max()
        m = (m - lo) / (hi - lo + SPA_EPS)
    out = cv2.resize(m, (width, height), interpolation=p.interpolation)
    out = out.reshape(height, width)  # cv2 drops unit dimensions
    if sos:
        return np.maximum(out, 0).astype(p.dtype, copy=False)
    if p.normalize == 'after':
        return normalize_cam(out)
    return out.astype(p.dtype, copy=False)


def preset_boxes(
    cam: np.ndarray,
    thresholds: float | np.ndarray | list[float],
    preset: str | ProtocolPreset,
) -> np.ndarray:
    """One predicted box per threshold under a preset's box rule (§2).

    ``wsoleval``: largest contour of u > int(tau max u), clipped, empty
    [0, 0, 0, 0]; ``tscam``: the same unclipped, empty [0, 0, 1, 1];
    ``spa``: the box around every pixel with v >= tau, empty [0, 0, 0, 0].
    The metrics, :class:`~shared.visualization.CAMVisualizationHook` and
    ``tools/visualization/vis_cam.py`` all draw boxes with this function.

    Args:
        cam (np.ndarray): (H, W) float map in the evaluated frame, as
            :func:`resize_cam` returns it (in [0, 1] for the contour
            presets).
        thresholds (float | np.ndarray | list[float]): tau in [0, 1], scalar
            or (T,).
        preset (str | ProtocolPreset): ``'wsoleval'``, ``'tscam'``,
            ``'spa'`` or a preset instance.

    Returns:
        np.ndarray: int64 (T, 4) boxes [x0, y0, x1, y1] in pixels (T = 1
        for a scalar threshold).

    Raises:
        TypeError: Torch tensors or non-floating maps.
        ValueError: Unknown preset, cam not 2-D, non-finite, or (contour
            presets) outside [0, 1], or thresholds outside [0, 1].
    """
    _reject_torch(cam, 'cam')
    p = get_preset(preset)
    taus = _check_thresholds(thresholds)
    m = np.asarray(cam)
    if m.dtype.kind != 'f':
        raise TypeError(f'cam must be a floating array, got {m.dtype}')
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f'cam must be a non-empty (H, W) map, got {m.shape}')
    if not np.isfinite(m).all():
        raise ValueError('cam contains NaN or +-inf')
    return _preset_boxes(m, taus, p.name)
