"""projects.wsol_sst.

WGOL: self-supervised attention for weakly supervised object
localization (modes spa, spa+sa, sos, sos+sa_v1/v2/v3). Upstream:
KevinDongDong/WGOL-TPAMI.

Importing this package imports ``shared`` and every registering
submodule of the plugin, so
``custom_imports=dict(imports=['projects.wsol_sst'])`` makes all of its
registered names available: the model parts (``SSTLocalizer``,
``SSTDataPreprocessor``, ``SSTVGG16``, ``SSTInceptionV3``,
``SSTConvHead``, ``SSTEdgeSelfAttention``), the multi-view test
transforms, the optimizer constructor and the schedule hooks. Work in
progress (issue 9): the configs and the README follow.
"""

import shared  # noqa: F401

from . import datasets, engine, models  # noqa: F401
