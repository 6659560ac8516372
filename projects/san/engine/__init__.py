"""SAN engine parts: the SBIR phase switch and the retrieval-gallery hook."""

from .gallery_hook import SANGalleryHook
from .sbir_phase_hook import SANSBIRPhaseHook

__all__ = ['SANGalleryHook', 'SANSBIRPhaseHook']
