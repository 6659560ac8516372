"""Write a SAN fork path list (``*_init.pt``) as a txt list and mapping.

``init_to_txt.py INIT LIST [--mapping MAPPING] [--sep SEP]
[--relative-to DIR]`` writes ``<path><sep><idx>`` lines to ``LIST`` and
``<class_name><sep><idx>`` lines, in index order, to ``MAPPING`` (default
``mapping.txt`` beside ``LIST``), the layout ``SANTxtListDataset`` reads.
An existing mapping is kept when it is identical (e.g. ``val.txt`` after
``train.txt``) and is an error otherwise. ``--relative-to`` writes paths
relative to ``DIR`` (portable lists, joined to ``data_root`` when read).

``--classes MAPPING`` keeps only the classes named in ``MAPPING`` (a
``<name><sep><idx>`` file) and indexes them as it does; ``--exclude LIST
[LIST ...]`` drops the samples whose written path appears in any of those
lists. Together they rebuild a split the fork's repository does not hold,
e.g. miniQuickDraw's ``train.txt`` (every image of the 300 mapped classes
that is not in ``val.txt``)::

    python tools/dataset_converters/make_dataset_paths.py \
        $DATA_ROOT/miniQuickDraw/data $DATA_ROOT/miniQuickDraw all_init.pt
    python tools/dataset_converters/init_to_txt.py \
        $DATA_ROOT/miniQuickDraw/all_init.pt \
        $DATA_ROOT/miniQuickDraw/train.txt \
        --relative-to $DATA_ROOT/miniQuickDraw \
        --classes projects/san/data_lists/miniQuickDraw/mapping.txt \
        --exclude projects/san/data_lists/miniQuickDraw/val.txt
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from shared.datasets.san_formats import (  # noqa: E402
    load_init_file,
    read_mapping,
    read_txt_list,
)


def init_to_txt(
    init_path: str,
    list_path: str,
    mapping_path: str | None = None,
    sep: str = '\t',
    relative_to: str | None = None,
    classes_from: str | None = None,
    exclude: Sequence[str] = (),
) -> tuple[str, str]:
    """Convert (see the module docstring); returns the two paths written."""
    init = load_init_file(init_path)
    if mapping_path is None:
        mapping_path = osp.join(osp.dirname(list_path) or '.', 'mapping.txt')
    classes = list(init['classes'])
    samples = [(raw, int(label)) for raw, label in init['samples']]
    if classes_from is not None:
        wanted = read_mapping(classes_from, sep)
        missing = sorted(set(wanted) - set(classes))
        if missing:
            raise ValueError(
                f'{classes_from} names {len(missing)} class(es) that '
                f'{init_path} does not hold: {missing[:5]}'
            )
        new_index = {classes.index(c): i for i, c in enumerate(wanted)}
        samples = [
            (raw, new_index[label])
            for raw, label in samples
            if label in new_index
        ]
        classes = wanted
    mapping = ''.join(f'{c}{sep}{i}\n' for i, c in enumerate(classes))
    if osp.isfile(mapping_path):
        with open(mapping_path, encoding='utf-8') as f:
            if f.read() != mapping:
                raise ValueError(
                    f'{mapping_path} exists with other classes; give '
                    '--mapping another file or remove it'
                )
    excluded = set()
    for path in exclude:
        excluded.update(
            row[0] for row in read_txt_list(path, len(classes), sep)
        )
    lines = []
    for raw, label in samples:
        path = osp.relpath(raw, relative_to) if relative_to else raw
        if path in excluded:
            continue
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
    parser.add_argument(
        '--classes',
        default=None,
        metavar='MAPPING',
        help='keep only the classes of this <name><sep><idx> mapping, with '
        'its indices',
    )
    parser.add_argument(
        '--exclude',
        nargs='+',
        default=(),
        metavar='LIST',
        help='drop samples whose written path is in any of these lists',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        paths = init_to_txt(
            args.init,
            args.list,
            args.mapping,
            args.sep,
            args.relative_to,
            args.classes,
            args.exclude,
        )
    except (OSError, ValueError) as err:
        print(f'init_to_txt: error: {err}', file=sys.stderr)
        return 2
    print(f'wrote {paths[0]} and {paths[1]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
