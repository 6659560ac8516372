"""Print a config after inheritance and ``--cfg-options`` overrides.

Examples::

    python tools/analysis/print_config.py CONFIG
    python tools/analysis/print_config.py CONFIG --cfg-options \\
        train_dataloader.batch_size=8 optim_wrapper.optimizer.lr=0.1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from mmengine.config import Config, DictAction  # noqa: E402

from shared.utils.compat import apply_patches  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Print the full (merged) text of an MMEngine config.'
    )
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings, "key=value" pairs (nested keys with dots, '
        'lists as key="[a,b]" or key=a,b, tuples as key="(a,b)"; quote '
        'values with spaces)',
    )
    return parser.parse_args(argv)


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    """Load ``path`` (after :func:`apply_patches`) and merge overrides.

    Args:
        path (str): Config file.
        cfg_options (dict | None): Dotted-key overrides (``DictAction``).

    Returns:
        Config: The merged config.
    """
    apply_patches()
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    print(cfg.pretty_text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
