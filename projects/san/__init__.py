"""projects.san.

SAN: Exploring Self-attention for Image Recognition (Zhao et al., CVPR
2020). Upstream: hszhao/SAN and its fork FearsomeTuna/SAN.

Importing this package imports ``shared`` and every registering
submodule of the plugin, so
``custom_imports=dict(imports=['projects.san'])`` makes all of its
registered names available: ``SAN``, ``SANResNet``, ``SANMixedNet``
(backbones), ``SANSBIRModel``, ``SANEmbeddingRetriever``,
``SANSBIRDataPreprocessor``, ``SANSmoothCELoss`` (models),
``SANRandomRotation``, ``SANResizeShortMax`` (transforms),
``SANSBIRPhaseHook``, ``SANGalleryHook`` (hooks) and
``SANRetrievalMetric`` (metric). The SAN datasets live in
``shared.datasets``. Importing it needs neither CUDA nor CuPy.
"""

import shared  # noqa: F401

from . import datasets, engine, evaluation, models  # noqa: F401
