"""projects.golang_ssl.

GOLANG / GAELLE: global-local self-supervised multi-label pre-training
(SwAV with a local semantic-attention branch and a local-to-global
prediction), and its multi-label linear probe. Upstream:
chunyen5927/GAELLE.

Importing this package imports ``shared`` and registers, in mmpretrain's
registries: ``GAELLE``, ``GAELLENeck``, ``GAELLEHead``, ``GAELLELoss``,
``GAELLEMultiLabelLinearHead`` (MODELS), ``GAELLEHook``,
``GAELLEProbeHook`` (HOOKS) and ``GAELLELARC`` (OPTIMIZERS). Importing it
does not touch CUDA.
"""

import shared  # noqa: F401

from . import engine, models  # noqa: F401
