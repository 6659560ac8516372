"""Make a SAN fork path list (``*_init.pt``) from class folders.

``make_dataset_paths.py ROOT OUT NAME`` scans ``ROOT/<class>/...``
(sorted class folders become indices 0..K-1; sub-folders and symlinks are
followed; torchvision's extensions .jpg .jpeg .png .ppm .bmp .pgm .tif
.tiff .webp, any case) and writes ``OUT/NAME``, a ``torch.save``\\ d dict::

    classes       list of class names, sorted
    class_to_idx  {name: index}
    samples       [(path, index)], paths as ROOT/<class>/..., sorted
    extensions    the extension list

The scan is resumable: every 10 classes it saves
``OUT/dataset_checkpoint.pt`` (the previous one is kept as
``dataset_checkpoint_backup.pt``); running the same command again after an
interruption continues after the last checkpointed class. Both are
deleted when the list is written. Example (the fork's README)::

    python tools/dataset_converters/make_dataset_paths.py \\
        dataset/Sketch_EITZ/data dataset/Sketch_EITZ data_init.pt
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from shared.datasets.san_formats import (  # noqa: E402
    IMG_EXTENSIONS,
    load_san_file,
    save_san_file,
)

CHECKPOINT = 'dataset_checkpoint.pt'
BACKUP = 'dataset_checkpoint_backup.pt'


def find_classes(root: str) -> list[str]:
    """Sorted names of the (possibly symlinked) folders in ``root``."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'image folder not found: {root}')
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise ValueError(f'no class folders in {root}')
    return classes


def class_samples(class_dir: str, index: int) -> list[tuple[str, int]]:
    """``(path, index)`` of every image under ``class_dir``, sorted.

    Symlinked folders are followed; a folder reached twice (a symlink
    loop) is walked once: the walk prunes it as it goes, so ``..`` links
    cannot make it loop or blow up. Samples are sorted by folder path,
    then by file name.

    Args:
        class_dir (str): The class folder.
        index (int): The class index given to every sample.

    Returns:
        list[tuple[str, int]]: The samples, paths joined to ``class_dir``.
    """
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(class_dir, followlinks=True):
        real = osp.realpath(root)
        if real in seen:
            dirs[:] = []  # prunes: the walk descends only after this
            continue
        seen.add(real)
        dirs.sort()
        found.extend(
            (root, name)
            for name in files
            if name.lower().endswith(IMG_EXTENSIONS)
        )
    # (folder, name) keys: the order of sorting the whole walk by folder.
    return [(osp.join(root, name), index) for root, name in sorted(found)]


def _load_checkpoint(out_dir: str) -> dict | None:
    for name in (CHECKPOINT, BACKUP):
        path = osp.join(out_dir, name)
        if osp.isfile(path):
            try:
                return load_san_file(path, 'checkpoint')
            except Exception as err:  # noqa: BLE001 - try the backup
                print(f'cannot read {path} ({err}); trying the backup')
    return None


def _save_checkpoint(out_dir: str, state: dict) -> None:
    path, backup = osp.join(out_dir, CHECKPOINT), osp.join(out_dir, BACKUP)
    if osp.isfile(path):
        os.replace(path, backup)
    save_san_file(state, path)


def make_dataset_paths(
    root: str,
    out_dir: str,
    name: str,
    save_freq: int = 10,
    on_class_done: Callable[[int], None] | None = None,
) -> dict:
    """Scan ``root`` and write ``out_dir/name`` (see the module docstring).

    Args:
        root (str): Folder with one sub-folder per class.
        out_dir (str): Output folder (also holds the checkpoints).
        name (str): Output file name.
        save_freq (int): Checkpoint every ``save_freq`` classes.
        on_class_done (Callable[[int], None] | None): Called with the
            number of completed classes after each class (progress).

    Returns:
        dict: The saved path list.
    """
    root = osp.expanduser(root)
    os.makedirs(out_dir, exist_ok=True)
    state = _load_checkpoint(out_dir)
    if state is not None:
        if state['directory'] != root:
            raise ValueError(
                f'{out_dir} holds a checkpoint of {state["directory"]!r}, '
                f'not {root!r}; delete {CHECKPOINT} and {BACKUP} to restart'
            )
        print(f'Resuming after {len(state["completed"])} processed classes')
    else:
        classes = find_classes(root)
        state = dict(
            directory=root,
            classes=classes,
            class_to_idx={c: i for i, c in enumerate(classes)},
            instances=[],
            completed=[],
            extensions=IMG_EXTENSIONS,
        )
    total = len(state['classes'])
    for cls in state['classes']:
        if cls in state['completed']:
            continue
        index = state['class_to_idx'][cls]
        state['instances'] += class_samples(osp.join(root, cls), index)
        state['completed'].append(cls)
        done = len(state['completed'])
        print(
            f'class {done}/{total} ({cls}): {len(state["instances"])} images'
        )
        if done % save_freq == 0 and done < total:
            _save_checkpoint(out_dir, state)
        if on_class_done is not None:
            on_class_done(done)
    result = dict(
        classes=state['classes'],
        class_to_idx=state['class_to_idx'],
        samples=state['instances'],
        extensions=state['extensions'],
    )
    if not result['samples']:
        raise ValueError(
            f'no images with extensions {IMG_EXTENSIONS} in {root}'
        )
    save_san_file(result, osp.join(out_dir, name))
    for ckpt in (CHECKPOINT, BACKUP):
        if osp.isfile(osp.join(out_dir, ckpt)):
            os.remove(osp.join(out_dir, ckpt))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the fork's, see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Scan class folders into a SAN fork path list (*.pt); '
        'resumable from checkpoints saved every 10 classes.'
    )
    parser.add_argument(
        'path', help='folder with one sub-folder of images per class'
    )
    parser.add_argument(
        'output_path', help='output folder (also holds the checkpoints)'
    )
    parser.add_argument('name', help='output file name, e.g. data_init.pt')
    parser.add_argument(
        '--save-freq',
        type=int,
        default=10,
        help='checkpoint every N classes (default: 10)',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        result = make_dataset_paths(
            args.path, args.output_path, args.name, args.save_freq
        )
    except (OSError, ValueError) as err:
        print(f'make_dataset_paths: error: {err}', file=sys.stderr)
        return 2
    print(
        f'{len(result["samples"])} images of {len(result["classes"])} '
        f'classes -> {osp.join(args.output_path, args.name)}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
