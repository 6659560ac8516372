"""Write a SAN fork path list (``*_init.pt``) as a txt list and mapping.

``init_to_txt.py INIT LIST [--mapping MAPPING] [--sep SEP]
[--relative-to DIR]`` writes ``<path><sep><idx>`` lines to ``LIST`` and
``<class_name><sep><idx>`` lines, in index order, to ``MAPPING`` (default
``mapping.txt`` beside ``LIST``), the layout ``SANTxtListDataset`` reads.
An existing mapping is kept when it is identical (e.g. ``val.txt`` after
``train.txt``) and is an error otherwise. ``--relative-to`` writes paths
relative to ``DIR`` (portable lists, joined to ``data_root`` when read).
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from shared.datasets.san_formats import load_init_file  # noqa: E402


def init_to_txt(
    init_path: str,
    list_path: str,
    mapping_path: str | None = None,
    sep: str = '\t',
    relative_to: str | None = None,
) -> tuple[str, str]:
    """Convert (see the module docstring); returns the two paths written."""
    init = load_init_file(init_path)
    if mapping_path is None:
        mapping_path = osp.join(osp.dirname(list_path) or '.', 'mapping.txt')
    mapping = ''.join(f'{c}{sep}{i}\n' for i, c in enumerate(init['classes']))
    if osp.isfile(mapping_path):
        with open(mapping_path, encoding='utf-8') as f:
            if f.read() != mapping:
                raise ValueError(
                    f'{mapping_path} exists with other classes; give '
                    '--mapping another file or remove it'
                )
    lines = []
    for raw, label in init['samples']:
        path = osp.relpath(raw, relative_to) if relative_to else raw
        if sep in path:
            raise ValueError(f'path {path!r} contains the separator {sep!r}')
        lines.append(f'{path}{sep}{label}\n')
    for path, text in ((mapping_path, mapping), (list_path, ''.join(lines))):
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        with open(path, 'w', encoding='utf-8', newline='\n') as f:
            f.write(text)
    return list_path, mapping_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Write a SAN fork path list as <path>\\t<idx> lines and '
        'a <name>\\t<idx> mapping.'
    )
    parser.add_argument('init', help='input path list (*_init.pt)')
    parser.add_argument('list', help='output list, e.g. train.txt')
    parser.add_argument(
        '--mapping',
        default=None,
        help='output mapping (default: mapping.txt beside the list)',
    )
    parser.add_argument('--sep', default='\t', help='separator (tab)')
    parser.add_argument(
        '--relative-to', default=None, help='write paths relative to DIR'
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        paths = init_to_txt(
            args.init, args.list, args.mapping, args.sep, args.relative_to
        )
    except (OSError, ValueError) as err:
        print(f'init_to_txt: error: {err}', file=sys.stderr)
        return 2
    print(f'wrote {paths[0]} and {paths[1]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
