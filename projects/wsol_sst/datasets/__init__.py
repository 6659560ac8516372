"""WSOL-SST data transforms: the multi-view test pipeline (§6.1)."""

from .transforms import SSTPackMultiViewInputs, SSTTenCropWithLocView

__all__ = ['SSTPackMultiViewInputs', 'SSTTenCropWithLocView']
