"""projects.tscam.

TS-CAM: Token Semantic Coupled Attention Map for Weakly Supervised
Object Localization (Gao et al., ICCV 2021). Upstream: vasgaowei/TS-CAM.

Importing this package imports ``shared`` and every registering
submodule of the plugin, so
``custom_imports=dict(imports=['projects.tscam'])`` makes all of its
registered names available: ``TSCAMClassifier``, ``TSCAMDeiT``,
``TSCAMConformer`` and ``TSCAMHead`` in MODELS.
"""

import shared  # noqa: F401

from . import models  # noqa: F401
