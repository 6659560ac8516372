"""projects.tscam.

TS-CAM: Token Semantic Coupled Attention Map for Weakly Supervised
Object Localization (Gao et al., ICCV 2021). Upstream: vasgaowei/TS-CAM.

Importing this package imports ``shared`` and every registering
submodule of the plugin, so
``custom_imports=dict(imports=['projects.tscam'])`` makes all of its
registered names available. The models land with the plugin's own issue;
the package is importable now.
"""

import shared  # noqa: F401
