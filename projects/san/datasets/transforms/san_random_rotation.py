"""``SANRandomRotation``: the fork's sketch rotation (san.md §3.3).

FearsomeTuna/SAN ``tool/sbir_train.py`` augments training sketches with
torchvision's ``RandomRotation((-20, 20), fill=255)`` on PIL images: a
uniform angle, nearest-neighbour sampling about the image centre, the same
output size (no ``expand``) and white corners. This transform restates it
on the (H, W, C) uint8 arrays of an mmcv pipeline, sampling through PIL's
``Image.rotate`` exactly as torchvision's PIL path does, with the angle
drawn from NumPy's global generator so that mmengine's seeding makes it
reproducible.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from PIL import Image

from shared.registry import TRANSFORMS

__all__ = ['SANRandomRotation']

_PIL_INTERPOLATION = {
    'nearest': Image.Resampling.NEAREST,
    'bilinear': Image.Resampling.BILINEAR,
    'bicubic': Image.Resampling.BICUBIC,
}


@TRANSFORMS.register_module()
class SANRandomRotation(BaseTransform):
    """Rotate ``results['img']`` by a uniformly drawn angle.

    The angle (degrees, counter-clockwise, as PIL and torchvision) is drawn
    from U(lo, hi) with ``np.random``; the image keeps its size (no
    ``expand``), rotates about its centre ``(W / 2, H / 2)`` and the
    uncovered corners take ``fill``. With ``interpolation='nearest'`` and
    ``fill=255`` this equals torchvision's ``RandomRotation(degrees,
    fill=255)`` for the same angle.

    Required keys: ``img`` ((H, W) or (H, W, C) uint8). Modified keys:
    ``img``. Added keys: ``rotation_angle`` (float, degrees; 0.0 when the
    rotation was skipped by ``prob``). Boxes and masks are not rotated, so
    the transform is meant for classification and retrieval pipelines.

    Args:
        degrees (float | Sequence[float]): ``d >= 0`` for the range
            [-d, d], or an explicit ``(lo, hi)`` with ``lo <= hi``.
            Defaults to 20, the fork's value.
        fill (int | Sequence[int]): Value of the uncovered pixels, one
            value for every channel or one per channel (in the array's
            channel order), each in [0, 255]. Defaults to 255 (white).
        interpolation (str): 'nearest', 'bilinear' or 'bicubic'. Defaults
            to 'nearest', as torchvision's ``RandomRotation``.
        prob (float): Probability of rotating, in [0, 1]. Defaults to 1.0.

    Raises:
        ValueError: A negative ``degrees``, ``lo > hi``, a ``fill`` outside
            [0, 255], an unknown ``interpolation`` or ``prob`` outside
            [0, 1].
        TypeError: ``degrees``, ``fill`` or ``prob`` of the wrong type.
    """

    def __init__(
        self,
        degrees: float | Sequence[float] = 20,
        fill: int | Sequence[int] = 255,
        interpolation: str = 'nearest',
        prob: float = 1.0,
    ) -> None:
        super().__init__()
        self.degrees = self._parse_degrees(degrees)
        self.fill = self._parse_fill(fill)
        if interpolation not in _PIL_INTERPOLATION:
            raise ValueError(
                f'SANRandomRotation: interpolation must be one of '
                f'{sorted(_PIL_INTERPOLATION)}, got {interpolation!r}'
            )
        self.interpolation = interpolation
        if isinstance(prob, bool) or not isinstance(prob, numbers.Real):
            raise TypeError(
                f'SANRandomRotation: prob must be a number, got {prob!r}'
            )
        if not 0.0 <= prob <= 1.0:
            raise ValueError(
                f'SANRandomRotation: prob must be in [0, 1], got {prob!r}'
            )
        self.prob = float(prob)

    @staticmethod
    def _parse_degrees(degrees) -> tuple[float, float]:
        def number(value) -> bool:
            return isinstance(value, numbers.Real) and not isinstance(
                value, bool
            )

        if number(degrees):
            if degrees < 0:
                raise ValueError(
                    f'SANRandomRotation: degrees must be >= 0 when it is a '
                    f'single number, got {degrees!r}'
                )
            return (-float(degrees), float(degrees))
        if (
            isinstance(degrees, Sequence)
            and not isinstance(degrees, str)
            and len(degrees) == 2
            and all(number(d) for d in degrees)
        ):
            lo, hi = (float(d) for d in degrees)
            if lo > hi:
                raise ValueError(
                    f'SANRandomRotation: degrees=(lo, hi) needs lo <= hi, '
                    f'got {tuple(degrees)!r}'
                )
            return (lo, hi)
        raise TypeError(
            f'SANRandomRotation: degrees must be a number or a (lo, hi) '
            f'pair of numbers, got {degrees!r}'
        )

    @staticmethod
    def _parse_fill(fill) -> tuple[int, ...] | int:
        values = (
            [fill]
            if isinstance(fill, numbers.Real)
            else list(fill)
            if isinstance(fill, Sequence) and not isinstance(fill, str)
            else None
        )
        if (
            not values
            or any(
                isinstance(v, bool) or not isinstance(v, numbers.Integral)
                for v in values
            )
            or isinstance(fill, bool)
        ):
            raise TypeError(
                f'SANRandomRotation: fill must be an int or a sequence of '
                f'ints, got {fill!r}'
            )
        if any(not 0 <= v <= 255 for v in values):
            raise ValueError(
                f'SANRandomRotation: fill values must be in [0, 255] '
                f'(uint8 images), got {fill!r}'
            )
        if isinstance(fill, numbers.Integral):
            return int(fill)
        return tuple(int(v) for v in values)

    @cache_randomness
    def _random_angle(self) -> float:
        """The angle in degrees, or 0.0 when ``prob`` skips the rotation."""
        if self.prob < 1.0 and np.random.rand() >= self.prob:
            return 0.0
        return float(np.random.uniform(*self.degrees))

    def rotate(self, img: np.ndarray, angle: float) -> np.ndarray:
        """Rotate ``img`` by ``angle`` degrees (counter-clockwise).

        Args:
            img (np.ndarray): (H, W) or (H, W, C) uint8 image.
            angle (float): Angle in degrees.

        Returns:
            np.ndarray: The rotated image, same shape and dtype.

        Raises:
            TypeError: ``img`` is not a uint8 array.
            ValueError: ``img`` is not 2-D/3-D, or a per-channel ``fill``
                has the wrong number of values.
        """
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
            raise TypeError(
                f'SANRandomRotation: results["img"] must be a uint8 numpy '
                f'array, got '
                f'{getattr(img, "dtype", type(img).__name__)}'
            )
        if img.ndim not in (2, 3):
            raise ValueError(
                f'SANRandomRotation: results["img"] must be (H, W) or '
                f'(H, W, C), got shape {img.shape}'
            )
        channels = 1 if img.ndim == 2 else img.shape[2]
        fill = self.fill
        if isinstance(fill, tuple):
            if len(fill) != channels:
                raise ValueError(
                    f'SANRandomRotation: fill has {len(fill)} values but the '
                    f'image has {channels} channels'
                )
        else:
            fill = (fill,) * channels
        resample = _PIL_INTERPOLATION[self.interpolation]
        planes = img[..., None] if img.ndim == 2 else img
        # Channel by channel in 'L' mode: any channel count, and the same
        # sampling PIL applies to each band of an RGB image.
        out = np.stack(
            [
                np.asarray(
                    Image.fromarray(
                        np.ascontiguousarray(planes[..., c])
                    ).rotate(
                        angle,
                        resample=resample,
                        expand=False,
                        fillcolor=fill[c],
                    )
                )
                for c in range(channels)
            ],
            axis=-1,
        )
        return out[..., 0] if img.ndim == 2 else out

    def transform(self, results: dict) -> dict:
        """Rotate ``results['img']`` and record ``rotation_angle``."""
        angle = self._random_angle()
        if angle != 0.0:
            results['img'] = self.rotate(results['img'], angle)
        results['rotation_angle'] = angle
        return results

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(degrees={self.degrees}, '
            f'fill={self.fill}, interpolation={self.interpolation!r}, '
            f'prob={self.prob})'
        )
