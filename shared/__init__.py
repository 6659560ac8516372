"""Code shared by every plugin: registries, datasets, evaluation, ops, utils.

Importing ``shared`` registers its modules into the registries of
:mod:`shared.registry`. It never imports a plugin, and never imports
``cupy`` at import time.
"""

from . import datasets, evaluation, models, ops, visualization  # noqa: F401
