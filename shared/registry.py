"""The registries every plugin registers into (layout B).

All 22 registries of :mod:`mmpretrain.registry` are re-exported unchanged, so
our modules share mmpretrain's ``mmpretrain`` scope and configs can mix our
types with mmpretrain's. Plugins and ``shared`` import registries only from
here; switching to a namespaced child scope later touches only this file.
"""

from mmpretrain.registry import (
    BATCH_AUGMENTS,
    DATA_SAMPLERS,
    DATASETS,
    EVALUATORS,
    HOOKS,
    LOG_PROCESSORS,
    LOOPS,
    METRICS,
    MODEL_WRAPPERS,
    MODELS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    PARAM_SCHEDULERS,
    RUNNER_CONSTRUCTORS,
    RUNNERS,
    TASK_UTILS,
    TOKENIZER,
    TRANSFORMS,
    VISBACKENDS,
    VISUALIZERS,
    WEIGHT_INITIALIZERS,
)

__all__ = [
    'BATCH_AUGMENTS',
    'DATA_SAMPLERS',
    'DATASETS',
    'EVALUATORS',
    'HOOKS',
    'LOG_PROCESSORS',
    'LOOPS',
    'METRICS',
    'MODEL_WRAPPERS',
    'MODELS',
    'OPTIM_WRAPPER_CONSTRUCTORS',
    'OPTIM_WRAPPERS',
    'OPTIMIZERS',
    'PARAM_SCHEDULERS',
    'RUNNER_CONSTRUCTORS',
    'RUNNERS',
    'TASK_UTILS',
    'TOKENIZER',
    'TRANSFORMS',
    'VISBACKENDS',
    'VISUALIZERS',
    'WEIGHT_INITIALIZERS',
]
