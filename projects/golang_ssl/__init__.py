"""projects.golang_ssl.

GOLANG: global-local self-supervised multi-label pre-training (SwAV with
a local semantic-attention branch). Upstream: chunyen5927/GAELLE.

Importing this package imports ``shared`` and every registering
submodule of the plugin, so
``custom_imports=dict(imports=['projects.golang_ssl'])`` makes all of
its registered names available. The models land with the plugin's own
issue; the package is importable now.
"""

import shared  # noqa: F401
