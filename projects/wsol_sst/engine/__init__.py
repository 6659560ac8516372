"""WSOL-SST training engine: the per-module optimizer constructor and the
schedule hooks (epoch gates, dynamic lr decay, staged warmup)."""

from .hooks import SSTDynamicLrDecayHook, SSTEpochGateHook, SSTStagedWarmupHook
from .optim import SST_MODULES, SSTOptimWrapperConstructor, unwrap_model

__all__ = [
    'SST_MODULES',
    'SSTDynamicLrDecayHook',
    'SSTEpochGateHook',
    'SSTOptimWrapperConstructor',
    'SSTStagedWarmupHook',
    'unwrap_model',
]
