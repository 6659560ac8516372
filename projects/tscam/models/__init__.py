"""TS-CAM models: DeiT (and Conformer-S) backbones, head and classifier."""

from .attention import ClassTokenAttention, attention_rollout
from .tscam_classifier import TSCAMClassifier
from .tscam_conformer import TSCAMConformer
from .tscam_deit import TSCAMDeiT
from .tscam_head import TSCAMHead

__all__ = [
    'ClassTokenAttention',
    'TSCAMClassifier',
    'TSCAMConformer',
    'TSCAMDeiT',
    'TSCAMHead',
    'attention_rollout',
]
