"""SAN-only transforms: ``SANRandomRotation`` and ``SANResizeShortMax``."""

from .san_random_rotation import SANRandomRotation
from .san_resize_short_max import SANResizeShortMax, short_max_size

__all__ = ['SANRandomRotation', 'SANResizeShortMax', 'short_max_size']
