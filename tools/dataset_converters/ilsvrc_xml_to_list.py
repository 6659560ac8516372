"""Convert ILSVRC2012_bbox_val_v3 XMLs to TS-CAM and wsolevaluation files.

Reads every ``*.xml`` of ``XML_DIR`` (sorted by name) and writes

- ``--list-out``: TS-CAM's ``val_folder_new.txt``,
  ``<wnid>/<stem><ext> <label> x1 y1 x2 y2 [x1 y1 x2 y2 ...]``;
- ``--wsolmeta-out``: a wsolevaluation metadata folder with
  ``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt`` (from
  ``<size>``) and ``localization.txt`` (one ``<id>,x0,y0,x1,y1`` line per
  box), ids ``<prefix>/<stem><ext>`` (``<prefix>/<wnid>/...`` with
  ``--val-layout class_subdirs``).

Coordinates are copied as written. Labels are indices in the class list:
``--synsets`` (one wnid per line, file order) or the sorted folders of
``--train-dir``. The XMLs are validated like ``ImageNetLoc`` does (one
wnid per image, known wnid, finite non-inverted boxes inside ``<size>``)
and any defect stops the conversion naming the XML and line.

Examples::

    python tools/dataset_converters/ilsvrc_xml_to_list.py \\
        data/ILSVRC2012/bbox_val --synsets data/ILSVRC2012/synsets.txt \\
        --list-out data/ILSVRC2012/ILSVRC2012_list/val_folder_new.txt \\
        --wsolmeta-out data/wsol/metadata/ILSVRC/test
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

PROG = 'ilsvrc_xml_to_list'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Convert ILSVRC2012_bbox_val_v3 XMLs to the TS-CAM '
        'val_folder_new.txt list and/or wsolevaluation metadata.',
    )
    parser.add_argument('xml_dir', help='folder of ILSVRC2012_val_*.xml')
    classes = parser.add_mutually_exclusive_group(required=True)
    classes.add_argument(
        '--synsets', help='class list: one wnid per line (defines the order)'
    )
    classes.add_argument(
        '--train-dir', help='class list: sorted <wnid> folders of train/'
    )
    parser.add_argument('--list-out', help='TS-CAM list file to write')
    parser.add_argument(
        '--wsolmeta-out', help='wsolevaluation metadata folder to write'
    )
    parser.add_argument(
        '--val-layout',
        choices=('flat', 'class_subdirs'),
        default='flat',
        help='image ids of the metadata: <prefix>/<file> (flat, default) or '
        '<prefix>/<wnid>/<file>',
    )
    parser.add_argument(
        '--image-prefix',
        default='val',
        help='folder of the images relative to the dataset root, used in '
        'the metadata ids (default: val)',
    )
    parser.add_argument(
        '--img-ext', default='.JPEG', help='image extension (default .JPEG)'
    )
    args = parser.parse_args(argv)
    if not args.list_out and not args.wsolmeta_out:
        parser.error('give --list-out and/or --wsolmeta-out')
    return args


def read_annotations(xml_dir: str, wnids: list[str], source: str) -> list:
    """Parse and validate every XML of ``xml_dir``.

    Returns:
        list[tuple]: ``(stem, wnid, label, (width, height) strings, coords)``
        per image, sorted by file name; ``coords`` holds one list of four
        strings per box, as written.
    """
    from shared.datasets.parsing import (
        AnnotationError,
        check_box,
        parse_float,
        parse_int,
    )
    from shared.datasets.wsol import parse_ilsvrc_xml

    if not os.path.isdir(xml_dir):
        raise FileNotFoundError(f'{xml_dir}: XML folder not found')
    names = sorted(f for f in os.listdir(xml_dir) if f.endswith('.xml'))
    if not names:
        raise AnnotationError(xml_dir, None, 'no .xml annotation files')
    index = {w: i for i, w in enumerate(wnids)}
    out = []
    for name in names:
        path = os.path.join(xml_dir, name)
        ann = parse_ilsvrc_xml(path)
        objects = ann['objects']
        if not objects:
            raise AnnotationError(path, None, 'no <object> in the XML')
        if ann['width'] is None or ann['height'] is None:
            raise AnnotationError(path, None, 'no <size> width/height')
        w = parse_int(ann['width'], path, ann['size_line'], None, 'width')
        h = parse_int(ann['height'], path, ann['size_line'], None, 'height')
        wnid = objects[0]['name']
        for obj in objects:
            if obj['name'] != wnid:
                raise AnnotationError(
                    path,
                    obj['line'],
                    f'objects of one image name different classes: {wnid} '
                    f'and {obj["name"]}',
                )
            box = check_box(
                [parse_float(t, path, obj['line']) for t in obj['coords']],
                path,
                obj['line'],
            )
            if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
                raise AnnotationError(
                    path,
                    obj['line'],
                    f'box {box.tolist()} lies outside the <size> {w}x{h}',
                )
        if wnid not in index:
            raise AnnotationError(
                path,
                objects[0]['line'],
                f'class {wnid} is not in the class list ({source})',
            )
        out.append(
            (
                name[:-4],
                wnid,
                index[wnid],
                (ann['width'], ann['height']),
                [o['coords'] for o in objects],
            )
        )
    return out


def _write(path: str, lines) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        for line in lines:
            f.write(f'{line}\n')


def convert(args: argparse.Namespace) -> int:
    """Run the conversion; returns the number of images."""
    from shared.datasets.wsol import load_wnids

    if args.synsets:
        wnids, source = load_wnids('', synsets_file=args.synsets)
    else:
        train = args.train_dir
        if not os.path.isdir(train):
            raise FileNotFoundError(f'{train}: train folder not found')
        wnids = sorted(
            d
            for d in os.listdir(train)
            if os.path.isdir(os.path.join(train, d))
        )
        source = f'{train}/<wnid> folders'
    anns = read_annotations(args.xml_dir, wnids, source)
    ext = args.img_ext
    if args.list_out:
        _write(
            args.list_out,
            (
                f'{wnid}/{stem}{ext} {label} '
                + ' '.join(v for box in coords for v in box)
                for stem, wnid, label, _, coords in anns
            ),
        )
    if args.wsolmeta_out:
        prefix = args.image_prefix.strip('/')
        prefix = f'{prefix}/' if prefix else ''

        def image_id(stem, wnid):
            sub = f'{wnid}/' if args.val_layout == 'class_subdirs' else ''
            return f'{prefix}{sub}{stem}{ext}'

        ids = [image_id(a[0], a[1]) for a in anns]
        out = args.wsolmeta_out
        _write(os.path.join(out, 'image_ids.txt'), ids)
        _write(
            os.path.join(out, 'class_labels.txt'),
            (f'{i},{a[2]}' for i, a in zip(ids, anns)),
        )
        _write(
            os.path.join(out, 'image_sizes.txt'),
            (f'{i},{a[3][0]},{a[3][1]}' for i, a in zip(ids, anns)),
        )
        _write(
            os.path.join(out, 'localization.txt'),
            (
                f'{i},' + ','.join(box)
                for i, a in zip(ids, anns)
                for box in a[4]
            ),
        )
    return len(anns)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    # Imported here so that --help does not load mmpretrain.
    from shared.datasets.parsing import AnnotationError

    try:
        count = convert(args)
    except (AnnotationError, FileNotFoundError, ValueError) as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 2
    written = ' and '.join(
        p for p in (args.list_out, args.wsolmeta_out) if p is not None
    )
    print(f'{PROG}: {count} images from {args.xml_dir} -> {written}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
