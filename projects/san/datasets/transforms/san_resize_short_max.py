"""``SANResizeShortMax``: torchvision's ``Resize(short, max_size=max_long)``.

FearsomeTuna/SAN ``tool/sbir_train.py`` validates on sketches resized with
``transforms.Resize(224, max_size=225)`` before ``CenterCrop(224)``: the
short side becomes 224 unless the long side would then exceed 225, in
which case the long side becomes 225 and the short side shrinks. This
transform restates that rule, with torchvision's integer truncation, on
the (H, W, C) arrays of an mmcv pipeline.
"""

from __future__ import annotations

import numbers

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform

from shared.registry import TRANSFORMS

__all__ = ['SANResizeShortMax', 'short_max_size']

#: The interpolations each backend of ``mmcv.imresize`` accepts.
_INTERPOLATIONS = {
    'pillow': ('nearest', 'bilinear', 'bicubic', 'box', 'lanczos', 'hamming'),
    'cv2': ('nearest', 'bilinear', 'bicubic', 'area', 'lanczos'),
}


def short_max_size(
    height: int, width: int, short: int, max_long: int | None
) -> tuple[int, int]:
    """Output ``(h, w)`` of torchvision's ``Resize(short, max_size)``.

    The short side becomes ``short`` and the long side
    ``int(short * long / short_side)`` (truncated); if that exceeds
    ``max_long``, the long side becomes ``max_long`` and the short side
    ``int(max_long * short / new_long)``, truncated again and computed from
    the already truncated ``new_long`` (torchvision's
    ``_compute_resized_output_size``). Ties (a square image) count as
    ``width <= height``.

    Args:
        height (int): Input height, pixels.
        width (int): Input width, pixels.
        short (int): Target short side, pixels.
        max_long (int | None): Upper bound of the long side, pixels, or
            None for no bound.

    Returns:
        tuple[int, int]: ``(new_h, new_w)`` in pixels.
    """
    short_side, long_side = (
        (width, height) if width <= height else (height, width)
    )
    new_short, new_long = short, int(short * long_side / short_side)
    if max_long is not None and new_long > max_long:
        new_short, new_long = int(max_long * new_short / new_long), max_long
    if width <= height:
        return new_long, new_short
    return new_short, new_long


@TRANSFORMS.register_module()
class SANResizeShortMax(BaseTransform):
    """Resize the short side to ``short``, capping the long side.

    Equals ``torchvision.transforms.Resize(short, max_size=max_long)`` on
    a PIL image when ``backend='pillow'`` (PIL's resampling, antialiased,
    on every channel); see :func:`short_max_size` for the size rule. An
    image already of the output size is returned unchanged, as
    torchvision does.

    Required keys: ``img`` ((H, W) or (H, W, C); uint8 with pillow).
    Modified keys: ``img``, ``img_shape``. Added keys: ``scale_factor``
    ((w_scale, h_scale), the output over the input size, as mmcv's
    ``Resize``).

    Args:
        short (int): Target short side, pixels, >= 1. Defaults to 224.
        max_long (int | None): Largest allowed long side, pixels; must be
            greater than ``short`` (torchvision's rule); None disables the
            cap. Defaults to 225, the fork's sketch validation value.
        interpolation (str): An mmcv name: 'nearest', 'bilinear',
            'bicubic', 'box', 'lanczos' or 'hamming' with pillow;
            'nearest', 'bilinear', 'bicubic', 'area' or 'lanczos' with cv2.
            Defaults to 'bilinear'.
        backend (str): 'pillow' (torchvision-exact) or 'cv2'. Defaults to
            'pillow'.

    Raises:
        TypeError: ``short`` or ``max_long`` is not an int.
        ValueError: ``short < 1``, ``max_long <= short``, an unknown
            ``backend`` or an ``interpolation`` the backend lacks.
    """

    def __init__(
        self,
        short: int = 224,
        max_long: int | None = 225,
        interpolation: str = 'bilinear',
        backend: str = 'pillow',
    ) -> None:
        super().__init__()
        for name, value in (('short', short), ('max_long', max_long)):
            if value is None and name == 'max_long':
                continue
            if isinstance(value, bool) or not isinstance(
                value, numbers.Integral
            ):
                raise TypeError(
                    f'SANResizeShortMax: {name} must be an int, got {value!r}'
                )
        if short < 1:
            raise ValueError(
                f'SANResizeShortMax: short must be >= 1, got {short}'
            )
        if max_long is not None and max_long <= short:
            raise ValueError(
                f'SANResizeShortMax: max_long must be greater than short '
                f'(torchvision Resize rule), got max_long={max_long}, '
                f'short={short}'
            )
        if backend not in _INTERPOLATIONS:
            raise ValueError(
                f'SANResizeShortMax: backend must be one of '
                f'{list(_INTERPOLATIONS)}, got {backend!r}'
            )
        if interpolation not in _INTERPOLATIONS[backend]:
            raise ValueError(
                f'SANResizeShortMax: interpolation must be one of '
                f'{list(_INTERPOLATIONS[backend])} with backend={backend!r}, '
                f'got {interpolation!r}'
            )
        self.short = int(short)
        self.max_long = None if max_long is None else int(max_long)
        self.interpolation = interpolation
        self.backend = backend

    def transform(self, results: dict) -> dict:
        """Resize ``results['img']``; update ``img_shape``/``scale_factor``."""
        img = results['img']
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
            raise ValueError(
                f'SANResizeShortMax: results["img"] must be an (H, W) or '
                f'(H, W, C) numpy array, got '
                f'{getattr(img, "shape", type(img).__name__)}'
            )
        if self.backend == 'pillow' and img.dtype != np.uint8:
            raise TypeError(
                f'SANResizeShortMax: the pillow backend needs a uint8 image, '
                f'got {img.dtype}'
            )
        height, width = img.shape[:2]
        new_h, new_w = short_max_size(height, width, self.short, self.max_long)
        if (new_h, new_w) != (height, width):
            img = mmcv.imresize(
                img,
                (new_w, new_h),
                interpolation=self.interpolation,
                backend=self.backend,
            )
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['scale_factor'] = (new_w / width, new_h / height)
        return results

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(short={self.short}, '
            f'max_long={self.max_long}, '
            f'interpolation={self.interpolation!r}, backend={self.backend!r})'
        )
