"""SAN data transforms (the fork's SBIR sketch augmentation and resize)."""

from .transforms import SANRandomRotation, SANResizeShortMax

__all__ = ['SANRandomRotation', 'SANResizeShortMax']
