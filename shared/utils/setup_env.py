"""``register_all_modules`` for notebooks, inference and tests.

Training entry points do not call it: they import plugins through the
configs' ``custom_imports``.
"""

from __future__ import annotations

import datetime
import importlib
import logging
import warnings
from pathlib import Path

from mmengine.logging import print_log

from shared.utils.compat import apply_patches

PLUGINS = ('san', 'tscam', 'wsol_sst', 'golang_ssl')
REPO_ROOT = Path(__file__).resolve().parents[2]


def import_plugin(name: str):
    """Import ``projects.<name>``; raise an ImportError naming the plugin."""
    module = f'projects.{name}'
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'plugin {module} failed to import: {exc!r}'
        ) from exc


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register mmpretrain's, ``shared``'s and every plugin's modules.

    Steps: apply the compat patches; run mmpretrain's
    ``register_all_modules(init_default_scope=False)``; import ``shared`` and
    the four plugins; register ``model-index.yml`` with
    ``mmpretrain.apis.ModelHub`` (so ``get_model(name)`` finds our models);
    optionally create the ``mmpretrain`` default scope.

    Args:
        init_default_scope: create ``DefaultScope('mmpretrain')``. If another
            scope is current, a uniquely named instance is created and a
            warning is logged.
    """
    apply_patches()
    from mmengine.registry import DefaultScope
    from mmpretrain.utils import register_all_modules as mmpretrain_register

    mmpretrain_register(init_default_scope=False)
    importlib.import_module('shared')
    for name in PLUGINS:
        import_plugin(name)
    index = REPO_ROOT / 'model-index.yml'
    if index.is_file():
        from mmpretrain.apis import ModelHub

        # ModelHub raises on a second registration of the same names.
        key = str(index)
        registered = getattr(ModelHub, '_mono_registered', set())
        if key not in registered:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                ModelHub.register_model_index(
                    key, config_prefix=str(REPO_ROOT)
                )
            registered.add(key)
            ModelHub._mono_registered = registered
    if not init_default_scope:
        return
    never_created = (
        DefaultScope.get_current_instance() is None
        or not DefaultScope.check_instance_created('mmpretrain')
    )
    if never_created:
        DefaultScope.get_instance('mmpretrain', scope_name='mmpretrain')
        return
    current = DefaultScope.get_current_instance()
    if current.scope_name != 'mmpretrain':
        print_log(
            f'The current default scope "{current.scope_name}" is not '
            '"mmpretrain"; a new instance named "mmpretrain-<timestamp>" is '
            'created as the current scope.',
            logger='current',
            level=logging.WARNING,
        )
        stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S-%f')
        DefaultScope.get_instance(
            f'mmpretrain-{stamp}', scope_name='mmpretrain'
        )
