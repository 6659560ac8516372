"""Preload the images of a SAN fork path list into one file.

``make_inmemory_dataset.py INIT OUT -t train|val [-n] [--legacy-reencode]``
reads every image of the path list ``INIT`` and writes ``OUT`` in the
port's in-memory format (``san_inmemory_v1``, read by
``SANInMemoryDataset``; see :mod:`shared.datasets.san_formats`):

- ``-t train``: short side resized to 256 (torchvision ``Resize(256)``,
  bilinear, on the PIL image, as the fork);
- ``-t val``: the same, then ``CenterCrop(224)``, so a val pipeline only
  normalises;
- ``-n``: no transform (the file records ``preprocess='none'``).

Images are stored in their original encoding when no transform changed
them and as lossless PNG otherwise; ``--legacy-reencode`` re-saves every
image in its original format at PIL's default quality, as the fork did.
Relative paths in ``INIT`` are read relative to ``--path-prefix``
(default: the working directory, as the fork). Example (the fork's
README)::

    python tools/dataset_converters/make_inmemory_dataset.py \\
        dataset/Sketch_EITZ/train_init.pt dataset/Sketch_EITZ/train_imgs.pt \\
        -t train
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
    encode_inmemory_image,
    load_init_file,
    pack_inmemory,
    save_san_file,
)
from shared.datasets.synthetic.common import parallel_map  # noqa: E402


def _encode(task) -> bytes:
    path, preprocess, legacy = task
    return encode_inmemory_image(path, preprocess, legacy)


def make_inmemory(
    init_path: str,
    out_path: str,
    preprocess: str,
    legacy_reencode: bool = False,
    path_prefix: str | None = None,
    workers: int = 1,
) -> dict:
    """Encode every image of ``init_path`` and save ``out_path``.

    Returns:
        dict: The saved in-memory dict.
    """
    init = load_init_file(init_path)
    paths = []
    for raw, _ in init['samples']:
        path = osp.expanduser(raw)
        if path_prefix and not osp.isabs(path):
            path = osp.join(path_prefix, path)
        if not osp.isfile(path):
            raise FileNotFoundError(f'{init_path}: image not found: {path}')
        paths.append(path)
    encoded = parallel_map(
        _encode, [(p, preprocess, legacy_reencode) for p in paths], workers
    )
    obj = pack_inmemory(
        encoded,
        [label for _, label in init['samples']],
        init['classes'],
        init['class_to_idx'],
        preprocess,
        init['extensions'],
        source=init_path,
    )
    save_san_file(obj, out_path)
    return obj


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the fork's, see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Preload the images of a SAN fork path list into one '
        'in-memory file (port format).'
    )
    parser.add_argument('file_path', help='input path list (*_init.pt)')
    parser.add_argument('output_filepath', help='output file (*_imgs.pt)')
    parser.add_argument(
        '-t',
        '--type',
        required=True,
        choices=('train', 'val'),
        help='train: resize the short side to 256; val: also centre-crop 224',
    )
    parser.add_argument(
        '-n',
        '--noValTransforms',
        '--no-transforms',
        dest='no_transforms',
        action='store_true',
        help='apply no transform (stores the files as they are)',
    )
    parser.add_argument(
        '--legacy-reencode',
        action='store_true',
        help="re-save every image in its format at PIL's default quality "
        '(the fork) instead of original bytes / lossless PNG',
    )
    parser.add_argument(
        '--path-prefix',
        default=None,
        help='folder that relative image paths are read from (default: '
        'the working directory)',
    )
    parser.add_argument(
        '--workers', type=int, default=1, help='encoding processes'
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    preprocess = 'none' if args.no_transforms else args.type
    try:
        obj = make_inmemory(
            args.file_path,
            args.output_filepath,
            preprocess,
            args.legacy_reencode,
            args.path_prefix,
            args.workers,
        )
    except (OSError, ValueError) as err:
        print(f'make_inmemory_dataset: error: {err}', file=sys.stderr)
        return 2
    print(
        f'{len(obj["targets"])} images ({obj["data"].numel() / 2**20:.1f} '
        f'MiB, preprocess={preprocess!r}) -> {args.output_filepath}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
