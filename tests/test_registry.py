"""Registry layout B: no clashes, no shadowing, plugins import alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT

PLUGINS = ['san', 'tscam', 'wsol_sst', 'golang_ssl']


def run(code: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.parametrize('order', ['forward', 'reverse'])
def test_all_plugins_in_one_process(order):
    plugins = PLUGINS if order == 'forward' else PLUGINS[::-1]
    proc = run(f"""
        import importlib
        from shared.utils.compat import apply_patches
        apply_patches()
        from mmpretrain.utils import register_all_modules
        register_all_modules(init_default_scope=False)
        import mmpretrain.registry as mp
        import shared.registry as ours
        names = [n for n in dir(mp) if n.isupper() and
                 not n.startswith('MMENGINE')]
        assert sorted(names) == sorted(ours.__all__), names
        # apply_patches already imported shared; keep only foreign names.
        before = {{
            n: {{k for k, obj in getattr(mp, n)._module_dict.items()
                if not getattr(obj, '__module__', '').startswith(
                    ('projects.', 'shared.'))}}
            for n in names
        }}
        for name in ['shared'] + [f'projects.{{p}}' for p in {plugins!r}]:
            importlib.import_module(name)
        new = []
        for n in names:
            registry = getattr(mp, n)
            for key, obj in registry._module_dict.items():
                mod = getattr(obj, '__module__', '')
                if mod.startswith(('projects.', 'shared.')):
                    assert key not in before[n], (n, key)
                    new.append((n, key, mod))
        # No name of ours may exist in the mmengine root registries.
        import mmengine.registry as root
        for n in dir(root):
            registry = getattr(root, n)
            if hasattr(registry, '_module_dict'):
                for key, obj in registry._module_dict.items():
                    mod = getattr(obj, '__module__', '')
                    assert not mod.startswith(('projects.', 'shared.')), (
                        n, key, mod)
        from shared.utils.setup_env import register_all_modules as ra
        ra(init_default_scope=True)
        print('OK', len(new))
        """)
    assert 'OK' in proc.stdout


@pytest.mark.parametrize('plugin', PLUGINS)
def test_plugin_imports_alone_and_without_cupy(plugin):
    run(f"""
        import sys
        class NoCupy:
            def find_spec(self, name, path=None, target=None):
                if name == 'cupy' or name.startswith(('cupy.', 'cupyx',
                                                      'cupy_backends')):
                    raise ImportError('cupy blocked by the test')
        sys.meta_path.insert(0, NoCupy())
        import projects.{plugin}
        assert 'cupy' not in sys.modules
        """)


def test_register_all_modules_sets_scope():
    proc = run("""
        from mmengine.registry import DefaultScope
        from shared.utils.setup_env import register_all_modules
        register_all_modules()
        assert DefaultScope.get_current_instance().scope_name == 'mmpretrain'
        register_all_modules()  # twice is fine
        import projects.san, projects.tscam  # noqa: F401
        print('scope ok')
        """)
    assert 'scope ok' in proc.stdout
