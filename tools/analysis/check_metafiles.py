"""Check ``model-index.yml`` and the project metafiles it imports.

The metafiles follow mmpretrain's format (``docs/configs.md``, platform spec
§9 "Metafiles"). Paths in them (``README``, ``Config``) are relative to the
repository root, as in mmpretrain. Checks:

* ``model-index.yml`` exists and its ``Import`` list names metafiles that
  exist and parse; every ``projects/*/metafile.yml`` is imported;
* every Collection has ``Name``, ``Paper``, ``README`` (an existing file) and
  ``Code``; collection names are unique;
* every Model has ``Name`` equal to the stem of its ``Config``, an
  ``In Collection`` naming an existing collection, and a ``Config`` file that
  exists; if it has ``Metadata``, that holds numeric ``Parameters`` and
  ``FLOPs``; model names are unique and do not clash with mmpretrain's;
* the index loads with ``modelindex`` and registers with
  ``mmpretrain.apis.ModelHub.register_model_index`` (into a private table,
  so the check leaves ``ModelHub`` as it found it).

Examples::

    python tools/analysis/check_metafiles.py
    python tools/analysis/check_metafiles.py --root /path/to/checkout

Exits 0 when every check passes, else 1 with one line per problem
(``file: entry: key: message``).
"""

import argparse
import os.path as osp
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if sys.path[0] != REPO_ROOT:
    sys.path.insert(0, REPO_ROOT)

import yaml  # noqa: E402

MODEL_INDEX = 'model-index.yml'
COLLECTION_KEYS = ('Name', 'Paper', 'README', 'Code')
MODEL_KEYS = ('Name', 'In Collection', 'Config')
METADATA_KEYS = ('Parameters', 'FLOPs')


@dataclass
class Report:
    """Outcome of :func:`run_checks`.

    Attributes:
        problems: One line per problem, ``file: entry: key: message``.
        metafiles: Number of metafiles imported by the model index.
        collections: Number of collections found.
        models: Number of models found.
        registered: Number of models ``ModelHub`` registered (0 when the
            registration was skipped or failed).
    """

    problems: list[str] = field(default_factory=list)
    metafiles: int = 0
    collections: int = 0
    models: int = 0
    registered: int = 0


def _problem(report: Report, file: str, entry: str, key: str, msg: str):
    report.problems.append(f'{file}: {entry}: {key}: {msg}')


def _entry(kind: str, index: int, item: Any) -> str:
    name = item.get('Name') if isinstance(item, dict) else None
    return f'{kind}[{index}]' + (f' {name!r}' if name else '')


def _has_url(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, dict):
        url = value.get('URL')
        return isinstance(url, str) and bool(url.strip())
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _load_yaml(path: Path, rel: str, report: Report) -> Any:
    try:
        with open(path, encoding='utf-8') as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as exc:
        _problem(report, rel, '-', '-', f'invalid YAML: {exc}')
    except OSError as exc:
        _problem(report, rel, '-', '-', f'cannot read: {exc}')
    return None


def _imports(root: Path, report: Report) -> list[str]:
    """Validate ``model-index.yml`` and return its ``Import`` entries."""
    index = root / MODEL_INDEX
    if not index.is_file():
        _problem(report, MODEL_INDEX, '-', '-', 'file does not exist')
        return []
    raw = _load_yaml(index, MODEL_INDEX, report)
    if raw is None and report.problems:
        return []
    imports = raw.get('Import') if isinstance(raw, dict) else None
    if not isinstance(imports, list) or not imports:
        _problem(
            report,
            MODEL_INDEX,
            '-',
            'Import',
            'expected a non-empty list of metafile paths',
        )
        return []
    seen: set[str] = set()
    result = []
    for i, item in enumerate(imports):
        if not isinstance(item, str) or not item.strip():
            _problem(
                report,
                MODEL_INDEX,
                f'Import[{i}]',
                'Import',
                f'expected a metafile path, got {item!r}',
            )
            continue
        norm = osp.normpath(item)
        if norm in seen:
            _problem(
                report,
                MODEL_INDEX,
                f'Import[{i}]',
                'Import',
                f'{item} is imported twice',
            )
            continue
        seen.add(norm)
        if not (root / item).is_file():
            _problem(
                report,
                MODEL_INDEX,
                f'Import[{i}]',
                'Import',
                f'{item} does not exist',
            )
            continue
        result.append(item)
    for meta in sorted(root.glob('projects/*/metafile.yml')):
        rel = meta.relative_to(root).as_posix()
        if rel not in seen:
            _problem(
                report,
                MODEL_INDEX,
                '-',
                'Import',
                f'{rel} exists but is not imported',
            )
    return result


def _check_collection(root, rel, i, col, report, names) -> None:
    entry = _entry('Collections', i, col)
    if not isinstance(col, dict):
        _problem(report, rel, entry, '-', 'expected a mapping')
        return
    for key in COLLECTION_KEYS:
        if col.get(key) in (None, '', [], {}):
            _problem(report, rel, entry, key, 'missing')
    name = col.get('Name')
    if isinstance(name, str) and name:
        if name in names:
            _problem(
                report,
                rel,
                entry,
                'Name',
                f'collection {name!r} is also defined in {names[name]}',
            )
        else:
            names[name] = rel
    for key in ('Paper', 'Code'):
        if col.get(key) and not _has_url(col[key]):
            _problem(
                report,
                rel,
                entry,
                key,
                'expected a URL or a mapping with a URL',
            )
    readme = col.get('README')
    if isinstance(readme, str) and readme:
        if not (root / readme).is_file():
            _problem(
                report,
                rel,
                entry,
                'README',
                f'{readme} does not exist (paths are relative to the '
                'repository root)',
            )
    if 'Metadata' in col and not isinstance(col['Metadata'], dict):
        _problem(report, rel, entry, 'Metadata', 'expected a mapping')


def _check_model(root, rel, i, model, report, collections) -> None:
    entry = _entry('Models', i, model)
    if not isinstance(model, dict):
        _problem(report, rel, entry, '-', 'expected a mapping')
        return
    for key in MODEL_KEYS:
        if model.get(key) in (None, ''):
            _problem(report, rel, entry, key, 'missing')
    name = model.get('Name')
    coll = model.get('In Collection')
    if isinstance(coll, str) and coll and coll not in collections:
        known = ', '.join(sorted(collections)) or 'none'
        _problem(
            report,
            rel,
            entry,
            'In Collection',
            f'unknown collection {coll!r} (known: {known})',
        )
    config = model.get('Config')
    if isinstance(config, str) and config:
        if not (root / config).is_file():
            _problem(
                report,
                rel,
                entry,
                'Config',
                f'{config} does not exist (paths are relative to the '
                'repository root)',
            )
        stem = Path(config).stem
        if isinstance(name, str) and name and name != stem:
            _problem(
                report,
                rel,
                entry,
                'Name',
                f'{name!r} differs from the config stem {stem!r}',
            )
    if 'Metadata' in model:
        meta = model['Metadata']
        if not isinstance(meta, dict):
            _problem(report, rel, entry, 'Metadata', 'expected a mapping')
            return
        for key in METADATA_KEYS:
            if key not in meta:
                _problem(report, rel, entry, f'Metadata.{key}', 'missing')
            elif not _is_number(meta[key]):
                _problem(
                    report,
                    rel,
                    entry,
                    f'Metadata.{key}',
                    f'expected a number, got {meta[key]!r}',
                )


def _mmpretrain_model_names() -> set[str]:
    """Lower-cased names of mmpretrain's own model index."""
    import mmpretrain
    from modelindex.load_model_index import load

    index = Path(mmpretrain.__file__).parent / '.mim' / MODEL_INDEX
    if not index.is_file():
        return set()
    return {m.name.lower() for m in load(str(index)).models}


def _register(root: Path, report: Report) -> None:
    """Load the index with modelindex and register it with ModelHub."""
    from shared.utils.compat import apply_patches

    apply_patches()
    from mmpretrain.apis import ModelHub
    from modelindex.load_model_index import load

    index = str(root / MODEL_INDEX)
    try:
        model_index = load(index)
    except Exception as exc:  # report any loader failure
        _problem(
            report,
            MODEL_INDEX,
            '-',
            '-',
            f'modelindex cannot load it: {exc!r}',
        )
        return
    report.models = len(model_index.models)
    ours = {m.name.lower(): m for m in model_index.models if m.name}
    clashes = sorted(set(ours) & _mmpretrain_model_names())
    for name in clashes:
        rel = osp.relpath(ours[name].filepath, root)
        _problem(
            report,
            rel,
            f'Models {ours[name].name!r}',
            'Name',
            'clashes with an mmpretrain model name '
            '(get_model would be ambiguous)',
        )
    saved = ModelHub._models_dict
    ModelHub._models_dict = {}
    try:
        # Config paths are relative to the repository root.
        ModelHub.register_model_index(index, config_prefix=str(root))
        registered = dict(ModelHub._models_dict)
    except Exception as exc:  # report any registry failure
        _problem(
            report,
            MODEL_INDEX,
            '-',
            '-',
            f'ModelHub.register_model_index failed: {exc!r}',
        )
        return
    finally:
        ModelHub._models_dict = saved
    report.registered = len(registered)
    for info in registered.values():
        if info.config and not osp.isfile(info.config):
            rel = osp.relpath(info.filepath, root)
            _problem(
                report,
                rel,
                f'Models {info.name!r}',
                'Config',
                f'ModelHub resolved it to {info.config}, which does not exist',
            )


def run_checks(
    root: str | Path = REPO_ROOT, *, register: bool = True
) -> Report:
    """Run every check on the checkout at ``root``.

    Args:
        root: Repository root holding ``model-index.yml``.
        register: Also load the index with modelindex and register it with
            ``ModelHub`` (skipped when the static checks already failed).

    Returns:
        The :class:`Report`.
    """
    root = Path(root).resolve()
    report = Report()
    metafiles = _imports(root, report)
    report.metafiles = len(metafiles)
    collections: dict[str, str] = {}
    models: list[tuple[str, int, Any]] = []
    model_names: dict[str, str] = {}
    for rel in metafiles:
        raw = _load_yaml(root / rel, rel, report)
        if raw is None:
            if not any(p.startswith(f'{rel}:') for p in report.problems):
                _problem(report, rel, '-', '-', 'file is empty')
            continue
        if not isinstance(raw, dict):
            _problem(report, rel, '-', '-', 'expected a mapping')
            continue
        cols = raw.get('Collections')
        if not isinstance(cols, list) or not cols:
            _problem(
                report, rel, '-', 'Collections', 'expected a non-empty list'
            )
            cols = []
        for i, col in enumerate(cols):
            _check_collection(root, rel, i, col, report, collections)
        report.collections += len(cols)
        mods = raw.get('Models')
        if not isinstance(mods, list):
            _problem(
                report,
                rel,
                '-',
                'Models',
                'expected a list (use "Models: []" for none)',
            )
            mods = []
        for i, model in enumerate(mods):
            models.append((rel, i, model))
            name = model.get('Name') if isinstance(model, dict) else None
            if isinstance(name, str) and name:
                key = name.lower()
                if key in model_names:
                    _problem(
                        report,
                        rel,
                        _entry('Models', i, model),
                        'Name',
                        f'{name!r} is also defined in {model_names[key]}',
                    )
                else:
                    model_names[key] = rel
    # Collections are global in a model index, so check models afterwards.
    for rel, i, model in models:
        _check_model(root, rel, i, model, report, collections)
    report.models = len(models)
    if register and not report.problems:
        _register(root, report)
    return report


def check(root: str | Path = REPO_ROOT) -> list[str]:
    """Check the model index and metafiles of the checkout at ``root``.

    Args:
        root: Repository root holding ``model-index.yml``.

    Returns:
        The problems found, one line each (``file: entry: key: message``);
        empty when everything passes.
    """
    return run_checks(root).problems


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Check model-index.yml and the project metafiles '
        '(mmpretrain format) and register them with ModelHub.'
    )
    parser.add_argument(
        '--root',
        default=REPO_ROOT,
        help='repository root holding model-index.yml (default: this '
        'checkout)',
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    report = run_checks(args.root)
    if report.problems:
        print(
            f'{len(report.problems)} problem(s) in the metafiles:',
            file=sys.stderr,
        )
        for line in report.problems:
            print(f'  {line}', file=sys.stderr)
        return 1
    print(
        f'OK: {report.metafiles} metafiles, {report.collections} '
        f'collections, {report.models} models; ModelHub registered '
        f'{report.registered} models.'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
