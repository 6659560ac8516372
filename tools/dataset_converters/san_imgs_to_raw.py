"""Convert a SAN fork in-memory file (``*_imgs.pt``) to the port's format.

The fork's ``make_inmemory_dataset.py`` saved ``(io.BytesIO, idx)``
samples; reading them needs a full unpickle (``torch.load`` without
``weights_only``), which can run arbitrary code, so no dataset does it.
This converter does it once, only with ``--trust-source`` (through
:func:`shared.utils.checkpoint.safe_load`'s trusted path), and writes the
port's ``san_inmemory_v1`` file (raw bytes in tensors, loadable with
``weights_only``) with the same images, byte for byte::

    python tools/dataset_converters/san_imgs_to_raw.py \\
        dataset/Sketch_EITZ/train_imgs.pt data/Sketch_EITZ/train_imgs.pt \\
        --trust-source

The fork's files do not record their preprocessing; ``--preprocess``
states it, otherwise it is inferred from the image sizes (all 224x224:
``val``; all with short side 256: ``train``; else ``none``).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

from shared.datasets.san_formats import (  # noqa: E402
    INMEMORY_FORMAT,
    PREPROCESS,
    LegacyInMemoryFileError,
    load_san_file,
    pack_inmemory,
    save_san_file,
)
from shared.utils.checkpoint import safe_load  # noqa: E402


def infer_preprocess(blobs: list[bytes]) -> str:
    """``'val'``, ``'train'`` or ``'none'`` from the image sizes."""
    sizes = []
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as img:
            sizes.append(img.size)
    if all(s == (224, 224) for s in sizes):
        return 'val'
    if all(min(s) == 256 for s in sizes):
        return 'train'
    return 'none'


def convert(
    src: str, dst: str, trust_source: bool, preprocess: str | None = None
) -> dict:
    """Convert ``src`` (fork) to ``dst`` (port); see the module docstring.

    Raises:
        ValueError: Without ``trust_source`` for a file that needs it, or
            when ``src`` is not a fork in-memory file.
    """
    try:
        obj = load_san_file(src, 'in-memory file')
    except LegacyInMemoryFileError:
        if not trust_source:
            raise ValueError(
                f'{src} holds io.BytesIO objects: converting it needs a full '
                'unpickle, which can run code from the file. Pass '
                '--trust-source if you trust where it came from.'
            ) from None
        obj = safe_load(src, map_location='cpu', trust_source=True)
    if isinstance(obj, dict) and obj.get('format') == INMEMORY_FORMAT:
        raise ValueError(f'{src} is already in the {INMEMORY_FORMAT} format')
    if not isinstance(obj, dict) or 'samples' not in obj:
        raise ValueError(
            f'{src} is not a fork in-memory file (a dict with classes, '
            'class_to_idx and samples)'
        )
    samples = obj['samples']
    blobs = []
    for j, sample in enumerate(samples):
        entry = sample[0]
        data = entry.getvalue() if isinstance(entry, io.BytesIO) else entry
        if not isinstance(data, bytes | bytearray):
            raise ValueError(
                f'{src}: samples[{j}] holds {type(entry).__name__}, not '
                'encoded image bytes'
            )
        blobs.append(bytes(data))
    if preprocess is None:
        preprocess = infer_preprocess(blobs)
        print(f'{src}: preprocessing inferred from image sizes: {preprocess}')
    out = pack_inmemory(
        blobs,
        [int(s[1]) for s in samples],
        obj.get('classes'),
        obj.get('class_to_idx'),
        preprocess,
        obj.get('extensions'),
        source=src,
    )
    save_san_file(out, dst)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Convert a SAN fork *_imgs.pt (pickled io.BytesIO) to '
        "the port's weights_only-loadable in-memory format."
    )
    parser.add_argument('src', help='fork in-memory file')
    parser.add_argument('dst', help='output file (port format)')
    parser.add_argument(
        '--trust-source',
        action='store_true',
        help='allow the one full unpickle of SRC (it can run code from the '
        'file; only for files you trust)',
    )
    parser.add_argument(
        '--preprocess',
        choices=PREPROCESS,
        default=None,
        help='what make_inmemory_dataset.py did (-t train / -t val / -n); '
        'inferred from the image sizes when omitted',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        out = convert(args.src, args.dst, args.trust_source, args.preprocess)
    except (OSError, ValueError) as err:
        print(f'san_imgs_to_raw: error: {err}', file=sys.stderr)
        return 2
    print(
        f'{len(out["targets"])} images (preprocess='
        f'{out["preprocess"]!r}) -> {args.dst}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
