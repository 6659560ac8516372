"""Write a SAN txt list and mapping as a fork path list (``*_init.pt``).

``txt_to_init.py LIST OUT [--mapping MAPPING] [--sep SEP] [--target-first]
[--path-prefix DIR]`` reads ``<path><sep><idx>`` lines and the
``<class_name><sep><idx>`` mapping (default ``mapping.txt`` beside
``LIST``), validated as ``SANTxtListDataset`` does (errors cite file and
line), and saves ``{classes (index order), class_to_idx, samples [(path,
idx)], extensions}``. ``--path-prefix`` joins relative paths to ``DIR``.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from shared.datasets.san_formats import (  # noqa: E402
    IMG_EXTENSIONS,
    read_mapping,
    read_txt_list,
    save_san_file,
)


def txt_to_init(
    list_path: str,
    out_path: str,
    mapping_path: str | None = None,
    sep: str = '\t',
    target_last: bool = True,
    path_prefix: str | None = None,
) -> dict:
    """Convert (see the module docstring); returns the saved dict."""
    if mapping_path is None:
        mapping_path = osp.join(osp.dirname(list_path) or '.', 'mapping.txt')
    classes = read_mapping(mapping_path, sep, target_last)
    rows = read_txt_list(
        list_path, len(classes), sep, target_last, mapping_path
    )
    samples = []
    for raw, label, _, _ in rows:
        path = raw
        if path_prefix and not osp.isabs(path):
            path = osp.join(path_prefix, path)
        samples.append((path, label))
    obj = dict(
        classes=classes,
        class_to_idx={c: i for i, c in enumerate(classes)},
        samples=samples,
        extensions=IMG_EXTENSIONS,
    )
    save_san_file(obj, out_path)
    return obj


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Write a SAN txt list and mapping as a fork path list.'
    )
    parser.add_argument('list', help='input list, e.g. train.txt')
    parser.add_argument('out', help='output path list (*_init.pt)')
    parser.add_argument(
        '--mapping',
        default=None,
        help='class mapping (default: mapping.txt beside the list)',
    )
    parser.add_argument('--sep', default='\t', help='separator (tab)')
    parser.add_argument(
        '--target-first',
        action='store_true',
        help='lines are <idx><sep><path> and <idx><sep><name>',
    )
    parser.add_argument(
        '--path-prefix', default=None, help='join relative paths to DIR'
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        obj = txt_to_init(
            args.list,
            args.out,
            args.mapping,
            args.sep,
            not args.target_first,
            args.path_prefix,
        )
    except (OSError, ValueError) as err:
        print(f'txt_to_init: error: {err}', file=sys.stderr)
        return 2
    print(
        f'{len(obj["samples"])} samples of {len(obj["classes"])} classes '
        f'-> {args.out}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
