"""Dataset adapters and box/mask-aware transforms (``datasets.md``).

Importing this package registers every adapter in DATASETS and every
transform in TRANSFORMS (mmpretrain's registries, via
:mod:`shared.registry`). mmpretrain's own ``CUB``, ``ImageNet``, ``VOC``
and ``CustomDataset`` are reused, not re-registered.
"""

from .base import CheckedDatasetMixin, DatasetSampleError, SampleLoadError
from .multilabel import COCOMultiLabel, VOCClassList
from .parsing import AnnotationError, AnnotationFileNotFoundError
from .san_formats import (
    SANInitFileDataset,
    SANInMemoryDataset,
    SANTxtListDataset,
)
from .sbir import SANSBIRDataset
from .transforms import (
    LoadLocAnnotations,
    LocCenterCrop,
    LocRandomCrop,
    LocRandomFlip,
    LocRandomResizedCrop,
    LocResize,
    PackLocInputs,
    PackPairInputs,
)
from .utils import multilabel_target
from .wsol import CUBLoc, ImageNetLoc, WSOLListDataset, WSOLMetaDataset

__all__ = [
    'AnnotationError',
    'AnnotationFileNotFoundError',
    'COCOMultiLabel',
    'CUBLoc',
    'CheckedDatasetMixin',
    'DatasetSampleError',
    'ImageNetLoc',
    'LoadLocAnnotations',
    'LocCenterCrop',
    'LocRandomCrop',
    'LocRandomFlip',
    'LocRandomResizedCrop',
    'LocResize',
    'PackLocInputs',
    'PackPairInputs',
    'SANInMemoryDataset',
    'SANInitFileDataset',
    'SANSBIRDataset',
    'SANTxtListDataset',
    'SampleLoadError',
    'VOCClassList',
    'WSOLListDataset',
    'WSOLMetaDataset',
    'multilabel_target',
]
