"""Models shared by every project: the vanilla CAM baseline and the
predict-mode packing of the localization-map contract."""

from .cam_classifier import CAMClassifier
from .loc_outputs import (
    LOC_TOPK,
    check_gt_labels,
    pack_loc_samples,
    rank_classes,
    sample_name,
)

__all__ = [
    'CAMClassifier',
    'LOC_TOPK',
    'check_gt_labels',
    'pack_loc_samples',
    'rank_classes',
    'sample_name',
]
