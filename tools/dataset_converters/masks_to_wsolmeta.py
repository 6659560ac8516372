"""Convert a one-png-per-image mask set to the wsolevaluation mask layout.

Some mask sets hold one binary png per image (e.g. the LID-challenge
ImageNet-val masks used by SPA/WGOL, about 23k of the 50k validation
images, ``ILSVRC2012_val_XXXXXXXX.png``). This writes a wsolevaluation
metadata folder (``datasets.md`` §4.3) for them:

- ``image_ids.txt``, ``class_labels.txt``: the labelled images that have a
  mask, in the order of ``--labels``;
- ``image_sizes.txt``: each image's size, read from its header;
- ``localization.txt``: ``<id>,<mask png>,`` (one instance per image, no
  ignore region; ``WSOLMetaDataset`` logs one warning with the count).

Masks are matched to images by file stem (``<stem>.png``, searched
recursively under ``--masks``); mask paths are written relative to
``--masks``. The pngs are not rewritten: read them with
``WSOLMetaDataset(data_root=IMAGES, metadata_root=OUT, loc_type='mask',
mask_root=MASKS)`` (``mask_threshold=128`` for the SPA/WGOL protocol). A
mask whose size differs from its image (two LID masks have width and
height swapped) is then reported by the dataset's size check.

``--labels`` lines are ``<path> <label>`` (mmpretrain / SPA lists) or
``<path>,<label>`` (wsolevaluation ``class_labels.txt``); ``--image-prefix``
is prepended to each path to form the id relative to ``--images``.

Example::

    python tools/dataset_converters/masks_to_wsolmeta.py \\
        --images data/ILSVRC2012 --image-prefix val \\
        --labels data/ILSVRC2012/meta/val.txt \\
        --masks data/LID/val_masks --out data/wsol/metadata/ILSVRC/lid
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

PROG = 'masks_to_wsolmeta'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Write wsolevaluation mask metadata for a mask set with '
        'one binary png per image.',
    )
    parser.add_argument(
        '--images', required=True, help='image root (the data_root)'
    )
    parser.add_argument(
        '--masks', required=True, help='mask root (the mask_root)'
    )
    parser.add_argument(
        '--labels',
        required=True,
        help="'<path> <label>' or '<path>,<label>' lines",
    )
    parser.add_argument(
        '--out', required=True, help='metadata folder to write'
    )
    parser.add_argument(
        '--image-prefix',
        default='',
        help='folder prepended to the label paths (e.g. val)',
    )
    parser.add_argument(
        '--mask-ext', default='.png', help='mask extension (default .png)'
    )
    parser.add_argument(
        '--ignore-unmatched-masks',
        action='store_true',
        help='skip masks whose stem matches no labelled image (default: '
        'error)',
    )
    return parser.parse_args(argv)


def read_labels(path: str, prefix: str) -> list[tuple[str, int]]:
    """``(image id, label)`` per line; duplicate ids raise."""
    from shared.datasets.parsing import (
        AnnotationError,
        parse_int,
        read_lines,
        split_line,
    )

    prefix = prefix.strip('/')
    out: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for line_no, line in read_lines(path, 'labels'):
        sep = ',' if ',' in line else None
        rel, label_tok = split_line(path, line_no, line, num=2, sep=sep)
        label = parse_int(label_tok, path, line_no, line, 'label')
        if label < 0:
            raise AnnotationError(path, line_no, f'negative label {label}')
        key = f'{prefix}/{rel}' if prefix else rel
        if key in seen:
            raise AnnotationError(
                path,
                line_no,
                f'duplicate image {key!r} (first on line {seen[key]})',
                line,
            )
        seen[key] = line_no
        out.append((key, label))
    return out


def index_masks(root: str, ext: str) -> dict[str, str]:
    """``{stem: path relative to root}``; two masks with one stem raise."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f'{root}: mask folder not found')
    index: dict[str, str] = {}
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            if not name.endswith(ext):
                continue
            rel = os.path.relpath(os.path.join(folder, name), root)
            rel = rel.replace(os.sep, '/')
            stem = name[: -len(ext)]
            if stem in index:
                raise ValueError(
                    f'two masks for image stem {stem!r}: {index[stem]} and '
                    f'{rel} (under {root})'
                )
            index[stem] = rel
    if not index:
        raise FileNotFoundError(f'{root}: no *{ext} masks found')
    return index


def convert(args: argparse.Namespace) -> tuple[int, int]:
    """Write the metadata; returns (images with a mask, without)."""
    from PIL import Image

    labels = read_labels(args.labels, args.image_prefix)
    masks = index_masks(args.masks, args.mask_ext)
    rows = []
    used = set()
    for key, label in labels:
        stem = os.path.splitext(os.path.basename(key))[0]
        if stem not in masks:
            continue
        used.add(stem)
        image = os.path.join(args.images, key)
        if not os.path.isfile(image):
            raise FileNotFoundError(
                f'{image}: image of mask {masks[stem]} not found (id {key!r} '
                f'from {args.labels})'
            )
        with Image.open(image) as img:
            width, height = img.size
        rows.append((key, label, width, height, masks[stem]))
    unused = sorted(set(masks) - used)
    if unused and not args.ignore_unmatched_masks:
        raise ValueError(
            f'{len(unused)} mask(s) under {args.masks} match no image of '
            f'{args.labels}: {", ".join(masks[s] for s in unused[:5])} '
            '(pass --ignore-unmatched-masks to skip them)'
        )
    if not rows:
        raise ValueError(f'no image of {args.labels} has a mask')
    os.makedirs(args.out, exist_ok=True)
    files = {
        'image_ids.txt': (r[0] for r in rows),
        'class_labels.txt': (f'{r[0]},{r[1]}' for r in rows),
        'image_sizes.txt': (f'{r[0]},{r[2]},{r[3]}' for r in rows),
        'localization.txt': (f'{r[0]},{r[4]},' for r in rows),
    }
    for name, lines in files.items():
        path = os.path.join(args.out, name)
        with open(path, 'w', encoding='utf-8', newline='\n') as f:
            for line in lines:
                f.write(f'{line}\n')
    return len(rows), len(labels) - len(rows)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    # Imported here so that --help stays fast.
    from shared.datasets.parsing import AnnotationError

    try:
        with_mask, without = convert(args)
    except (AnnotationError, FileNotFoundError, ValueError) as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 2
    print(
        f'{PROG}: {with_mask} images with a mask -> {args.out} '
        f'({without} labelled images without a mask left out)'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
