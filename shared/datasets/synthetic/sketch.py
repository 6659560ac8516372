"""``--format sketch``: the SAN fork's sketch / photo / SBIR layouts.

Layout under ``DIR`` (paths in lists and init files are relative to their
layout root, which the readers join to ``data_root``)::

    Sketch/                                (Sketch_EITZ-like)
      data/<class>/<n>.png                 grey PNG sketches, n = 1, 2, ...
      train.txt  val.txt                   '<data/class/n.png>\\t<idx>'
      val_queries.txt                      first val sketch of each class
      mapping.txt                          '<class_name>\\t<idx>'
      train_init.pt  val_init.pt           fork path lists
      train_imgs.pt  val_imgs.pt           port in-memory files (train:
                                           short side 256; val: 256 +
                                           centre 224); ``legacy_pt``:
                                           the fork's pickled BytesIO form
    Photos/                                (flickr25k_photos-like) the
      data/<class>/<kkkk>.jpg              same files without val_queries
    Flickr15k/                             test split, classes '0'..'K-1'
      photos/images/<k>/<n>.jpg  photos/test.txt  photos/mapping.txt
      sketches/<k+1>/<n>.png  sketches/test.txt  sketches/mapping.txt
    ZeroShot/                              (miniQuickDraw zero-shot-like)
      data/<class>/<n>.png                 sketches of unseen classes
      mapping_zeroshot.txt  zeroshot_catalog.txt  zeroshot_queries.txt

Sketch and photo classes share names and indices (``class_000`` ...);
class ``c`` is drawn with the generator's style ``c`` in both domains, as
are the Flickr15k classes. The zero-shot classes use the next styles
(``N .. N+Z-1``, Z = max(2, N // 4), fewer when the 1,280 styles run out).
Per class: ``per_class`` train and ``val_per_class`` val images in Sketch
and Photos, ``val_per_class`` Flickr15k photos and sketch queries,
``per_class`` zero-shot catalog and ``val_per_class`` query sketches.
As in the real Flickr15k, its sketch folders are 1-based while the class
names are 0-based, so ``check_path_class`` must stay off there.

``--corrupt`` acts on line 1 of ``Sketch/train.txt``: ``missing_image``,
``truncated_image`` (its image), ``class_mismatch`` (its label, found with
``check_path_class=True``), ``duplicate_id`` (the line repeated: line 2),
``empty_annotation`` (the file emptied). ``--write-oracle-maps`` does not
apply (retrieval has no maps).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from ..san_formats import (
    IMG_EXTENSIONS,
    encode_inmemory_image,
    pack_inmemory,
    save_san_file,
)
from .common import (
    SyntheticSpec,
    WriterResult,
    duplicate_line,
    edit_line,
    image_size,
    parallel_map,
    sample_rng,
    truncate_file,
    unsupported_corruption,
    write_image,
    write_lines,
)
from .draw import MAX_CLASSES, render_scene
from .imagefolder import class_names

CORRUPTIONS = (
    'missing_image',
    'truncated_image',
    'class_mismatch',
    'duplicate_id',
    'empty_annotation',
)
#: Seed-stream id of each split.
SPLIT_IDS = {
    ('Sketch', 'train'): 0,
    ('Sketch', 'val'): 1,
    ('Photos', 'train'): 2,
    ('Photos', 'val'): 3,
    ('Flickr15k', 'photos'): 4,
    ('Flickr15k', 'sketches'): 5,
    ('ZeroShot', 'catalog'): 6,
    ('ZeroShot', 'queries'): 7,
}


def _render(task) -> bytes | None:
    """Render and write one image (module level: runs in workers).

    Returns:
        bytes | None: The image as the in-memory file of its split stores
        it, for the splits that have one.
    """
    spec, split_id, index, style, path, sketch, preprocess = task
    rng = sample_rng(spec, split_id, index)
    h, w = image_size(rng, spec)
    scene = render_scene(rng, h, w, [style], sketch=sketch)
    # Sketches are black on white: all channels are equal, store grey.
    write_image(path, scene.img[..., 0] if sketch else scene.img)
    if preprocess is None:
        return None
    return encode_inmemory_image(str(path), preprocess)


def _zero_shot_classes(num_classes: int) -> int:
    return min(max(2, num_classes // 4), MAX_CLASSES - num_classes)


class _Layout:
    """Collects the rendering tasks and list lines of one run."""

    def __init__(self, spec: SyntheticSpec):
        self.spec = spec
        self.tasks: list[tuple] = []
        self.counts: dict[str, int] = {}
        self.files: list[Path] = []

    def add(self, key, style, path, sketch, count_key, preprocess=None):
        """Queue one image; ``preprocess`` also encodes it for *_imgs.pt."""
        index = self.counts.get(count_key, 0)
        self.tasks.append(
            (self.spec, SPLIT_IDS[key], index, style, path, sketch, preprocess)
        )
        self.counts[count_key] = index + 1

    def lines(self, path: Path, lines: list[str]) -> Path:
        self.files.append(write_lines(path, lines))
        return path


def _write_split_files(
    layout: _Layout,
    root: Path,
    names: list[str],
    splits: dict[str, list[tuple[str, int]]],
    inmemory: list[tuple],
) -> None:
    """Lists, mapping and init files of one txt layout (Sketch / Photos)."""
    layout.lines(
        root / 'mapping.txt', [f'{n}\t{i}' for i, n in enumerate(names)]
    )
    class_to_idx = {n: i for i, n in enumerate(names)}
    for split, samples in splits.items():
        layout.lines(
            root / f'{split}.txt', [f'{p}\t{label}' for p, label in samples]
        )
        init = root / f'{split}_init.pt'
        save_san_file(
            dict(
                classes=list(names),
                class_to_idx=class_to_idx,
                samples=list(samples),
                extensions=IMG_EXTENSIONS,
            ),
            init,
        )
        layout.files.append(init)
        inmemory.append((root, split, names, class_to_idx, samples))


def _write_inmemory(
    spec: SyntheticSpec, layout: _Layout, inmemory, encoded: list
) -> None:
    by_path = {
        str(task[4]): blob
        for task, blob in zip(layout.tasks, encoded)
        if blob is not None
    }
    for root, split, names, class_to_idx, samples in inmemory:
        blobs = [by_path[str(root / p)] for p, _ in samples]
        targets = [label for _, label in samples]
        path = root / f'{split}_imgs.pt'
        if spec.options.get('legacy_pt'):
            # The fork's form: the init dict with (io.BytesIO, idx) samples.
            torch.save(
                dict(
                    classes=list(names),
                    class_to_idx=class_to_idx,
                    samples=[
                        (io.BytesIO(b), t) for b, t in zip(blobs, targets)
                    ],
                    extensions=IMG_EXTENSIONS,
                ),
                path,
            )
        else:
            save_san_file(
                pack_inmemory(
                    blobs,
                    targets,
                    names,
                    class_to_idx,
                    preprocess=split,
                    extensions=IMG_EXTENSIONS,
                    source=str(path),
                ),
                path,
            )
        layout.files.append(path)


def write(spec: SyntheticSpec) -> WriterResult:
    """Write the sketch layouts (see the module docstring)."""
    if spec.corrupt and spec.corrupt not in CORRUPTIONS:
        unsupported_corruption(spec, CORRUPTIONS)
    if spec.val_per_class < 1:
        raise ValueError('--format sketch needs --val-per-class >= 1')
    if spec.corrupt == 'class_mismatch' and spec.num_classes < 2:
        raise ValueError('--corrupt class_mismatch needs >= 2 classes')
    out = spec.out
    names = class_names(spec.num_classes)
    photo_ext = spec.options.get('ext', 'jpg')
    layout = _Layout(spec)
    inmemory: list[tuple] = []

    # Sketch/ and Photos/: train then val images of each class.
    for root_name, sketch in (('Sketch', True), ('Photos', False)):
        root = out / root_name
        splits: dict[str, list[tuple[str, int]]] = {'train': [], 'val': []}
        for c, name in enumerate(names):
            k = 0
            for split, n in (
                ('train', spec.per_class),
                ('val', spec.val_per_class),
            ):
                for _ in range(n):
                    k += 1
                    if sketch:
                        number = c * (spec.per_class + spec.val_per_class) + k
                        rel = f'data/{name}/{number}.png'
                    else:
                        rel = f'data/{name}/{k:04d}.{photo_ext}'
                    layout.add(
                        (root_name, split),
                        c,
                        root / rel,
                        sketch,
                        f'{root_name.lower()}_{split}',
                        preprocess=split,
                    )
                    splits[split].append((rel, c))
        _write_split_files(layout, root, names, splits, inmemory)
        if sketch:
            first = {}
            for rel, c in splits['val']:
                first.setdefault(c, rel)
            layout.lines(
                root / 'val_queries.txt',
                [f'{first[c]}\t{c}' for c in range(spec.num_classes)],
            )

    # Flickr15k/: photo gallery and sketch queries, classes '0'..'K-1'.
    test = out / 'Flickr15k'
    k_names = [str(c) for c in range(spec.num_classes)]
    for sub, sketch in (('photos', False), ('sketches', True)):
        lines = []
        for c in range(spec.num_classes):
            for k in range(spec.val_per_class):
                n = c * spec.val_per_class + k + 1
                if sketch:
                    rel = f'{c + 1}/{n}.png'
                else:
                    rel = f'images/{c}/{n}.{photo_ext}'
                layout.add(
                    ('Flickr15k', sub),
                    c,
                    test / sub / rel,
                    sketch,
                    f'flickr15k_{sub}',
                )
                lines.append(f'{rel}\t{c}')
        layout.lines(test / sub / 'test.txt', lines)
        layout.lines(
            test / sub / 'mapping.txt',
            [f'{n}\t{i}' for i, n in enumerate(k_names)],
        )

    # ZeroShot/: sketches of classes never seen in training.
    num_unseen = _zero_shot_classes(spec.num_classes)
    if num_unseen > 0:
        zs = out / 'ZeroShot'
        unseen = class_names(spec.num_classes + num_unseen)[spec.num_classes :]
        layout.lines(
            zs / 'mapping_zeroshot.txt',
            [f'{n}\t{i}' for i, n in enumerate(unseen)],
        )
        number = 0
        for split, per in (
            ('catalog', spec.per_class),
            ('queries', spec.val_per_class),
        ):
            lines = []
            for z, name in enumerate(unseen):
                for _ in range(per):
                    number += 1
                    rel = f'data/{name}/{number}.png'
                    layout.add(
                        ('ZeroShot', split),
                        spec.num_classes + z,
                        zs / rel,
                        True,
                        f'zeroshot_{split}',
                    )
                    lines.append(f'{rel}\t{z}')
            layout.lines(zs / f'zeroshot_{split}.txt', lines)

    encoded = parallel_map(_render, layout.tasks, spec.workers)
    _write_inmemory(spec, layout, inmemory, encoded)
    corruption = _corrupt(spec, out / 'Sketch') if spec.corrupt else None
    return WriterResult(
        counts=layout.counts,
        annotation_files=layout.files,
        corruption=corruption,
        extra={
            'classes': names,
            'zero_shot_classes': num_unseen,
            'legacy_pt': bool(spec.options.get('legacy_pt')),
        },
    )


def _corrupt(spec: SyntheticSpec, root: Path) -> dict:
    ann = root / 'train.txt'
    line_no = 1
    rel, label = ann.read_text().split('\n')[0].split('\t')
    target = root / rel
    if spec.corrupt == 'empty_annotation':
        ann.write_text('')
        return {'kind': spec.corrupt, 'file': str(ann), 'line': None}
    if spec.corrupt == 'missing_image':
        target.unlink()
    elif spec.corrupt == 'truncated_image':
        truncate_file(target)
    elif spec.corrupt == 'class_mismatch':
        wrong = (int(label) + 1) % spec.num_classes
        edit_line(ann, line_no, lambda old: f'{rel}\t{wrong}')
    else:  # duplicate_id
        line_no = duplicate_line(ann, line_no)
    return {
        'kind': spec.corrupt,
        'file': str(ann),
        'line': line_no,
        'target': str(target),
    }
