"""Check that the virtual environment matches ``requirements/constraints.txt``.

Run by ``make setup`` as ``python -m shared.utils.env_check``. It fails, with
the fix in the message, when an installed package differs from the lock, when
a required package is missing, when ``opencv-python`` is installed next to the
headless build, or when ``cv2``, ``mmpretrain`` or ``timm`` cannot be
imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import re
import sys
import sysconfig
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REQ_DIR = REPO_ROOT / 'requirements'

#: Requirement files whose packages must be installed by ``make setup``.
REQUIRED_FILES = ('base.txt', 'torch.txt', 'openmmlab.txt', 'dev.txt')
#: Modules that must import in a working environment.
REQUIRED_IMPORTS = (
    'cv2',
    'torch',
    'torchvision',
    'mmengine',
    'mmpretrain',
    'timm',
)


def canonical(name: str) -> str:
    """Return the PEP 503 normalised form of a distribution name."""
    return re.sub(r'[-_.]+', '-', name).lower()


def read_lock(path: Path = REQ_DIR / 'constraints.txt') -> dict[str, str]:
    """Parse ``name==version`` lines of the lock into a dict."""
    lock = {}
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition('==')
        if not sep:
            raise ValueError(f'{path}: line {line!r} is not name==version')
        lock[canonical(name)] = version.strip()
    return lock


def read_requirement_names(path: Path) -> list[str]:
    """Return the distribution names listed in a requirements file."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if not line or line.startswith('-'):
            continue
        names.append(canonical(re.split(r'[<>=!~\[; ]', line, maxsplit=1)[0]))
    return names


def installed() -> dict[str, str]:
    """Map every distribution installed in this environment to its version.

    Only the interpreter's site-packages count: vendored copies that
    ``pkg_resources`` puts on ``sys.path`` (``setuptools/_vendor``) are not
    installations.
    """
    paths = sorted({sysconfig.get_paths()[k] for k in ('purelib', 'platlib')})
    return {
        canonical(d.metadata['Name']): d.version
        for d in md.distributions(path=paths)
        if d.metadata['Name']
    }


def check(required_files=REQUIRED_FILES) -> list[str]:
    """Return a list of problems with the current environment (empty: OK)."""
    problems = []
    lock = read_lock()
    have = installed()
    if 'opencv-python' in have:
        problems.append(
            'opencv-python is installed next to opencv-python-headless; both '
            'write cv2/. Fix: pip uninstall -y opencv-python && pip install '
            '--force-reinstall -c requirements/constraints.txt '
            'opencv-python-headless'
        )
    for fname in required_files:
        for name in read_requirement_names(REQ_DIR / fname):
            if name not in have:
                problems.append(
                    f'{name} (requirements/{fname}) is not installed. '
                    'Fix: make setup'
                )
    for name, version in sorted(have.items()):
        locked = lock.get(name)
        if locked is None or name in ('pip', 'wheel'):
            continue
        # Local version labels (torch 2.15.0+cu132) match their base version.
        if version.split('+', 1)[0] != locked.split('+', 1)[0]:
            problems.append(
                f'{name}=={version} is installed but the lock says '
                f'{locked}. Fix: rm -f .venv/.stamp && make setup (or '
                'make lock to move the lock, with a green make test)'
            )
    for module in REQUIRED_IMPORTS:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any import failure is a broken env
            problems.append(f'import {module} failed: {exc!r}')
    return problems


def main() -> int:
    """Print the problems and return the exit code."""
    problems = check()
    if problems:
        print(
            'env_check: the environment does not match the lock:',
            file=sys.stderr,
        )
        for p in problems:
            print(f'  - {p}', file=sys.stderr)
        return 1
    print(
        f'env_check: OK ({len(installed())} packages, Python '
        f'{sys.version.split()[0]})'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
