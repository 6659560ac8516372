"""The SAN fork's dataset tools on a generated tiny tree (san.md §5)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.datasets.san_formats import (
    SANInMemoryDataset,
    SANTxtListDataset,
    load_init_file,
    save_san_file,
)
from tests.conftest import REPO_ROOT, load_tool, run_tool

TOOLS = 'tools/dataset_converters'
#: Images per class folder of the tiny tree (12 classes: > 1 checkpoint).
SIZES = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 20]
#: Plus 5 images in the symlinked class folder.
TOTAL = sum(SIZES) + 5


def _tool(name: str):
    return load_tool(REPO_ROOT / TOOLS / f'{name}.py', f'san_tool_{name}')


def _image(path: Path, value: int, size=(9, 7)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((*size, 3), value, np.uint8)
    img[0, 0] = (value * 7) % 256
    ok, buf = cv2.imencode(path.suffix, img)
    assert ok
    path.write_bytes(buf.tobytes())


@pytest.fixture
def tree(tmp_path) -> Path:
    """``root/<class>/...``: nested folders, odd extensions, a symlink."""
    root = tmp_path / 'data'
    for c, n in enumerate(SIZES):
        cls = root / f'c{c:02d}'
        for k in range(n):
            ext = ('.png', '.JPG', '.bmp')[k % 3]
            sub = cls / 'nested' if k % 4 == 3 else cls
            _image(sub / f'{k:02d}{ext}', 10 * c + k)
        (cls / 'notes.txt').write_text('not an image')
    # A symlinked class folder is followed (listed under its link name).
    outside = tmp_path / 'elsewhere' / 'real'
    for k in range(5):
        _image(outside / f'{k}.png', 200 + k)
    (root / 'c12').symlink_to(outside, target_is_directory=True)
    return root


def _counts(samples) -> dict[int, int]:
    return dict(sorted(Counter(label for _, label in samples).items()))


def test_make_dataset_paths_readme_command(tree, tmp_path):
    out = tmp_path / 'out'
    proc = run_tool(
        [f'{TOOLS}/make_dataset_paths.py', str(tree), str(out), 'data_init.pt']
    )
    assert f'{TOTAL} images of 13 classes' in proc.stdout
    init = load_init_file(str(out / 'data_init.pt'))
    classes = [f'c{c:02d}' for c in range(13)]
    assert init['classes'] == classes
    assert init['class_to_idx'] == {c: i for i, c in enumerate(classes)}
    assert _counts(init['samples']) == dict(enumerate([*SIZES, 5]))
    paths = [p for p, _ in init['samples']]
    assert paths[:3] == [
        str(tree / 'c00' / f) for f in ('00.png', '01.JPG', '02.bmp')
    ]
    assert str(tree / 'c00' / 'nested' / '03.png') in paths
    assert str(tree / 'c12' / '4.png') in paths
    assert not any(p.endswith('.txt') for p in paths)
    assert '.webp' in init['extensions'] and '.tiff' in init['extensions']
    assert sorted(os.listdir(out)) == ['data_init.pt']  # checkpoints gone


def test_make_dataset_paths_resumes_from_checkpoint(tree, tmp_path, capsys):
    tool = _tool('make_dataset_paths')
    fresh = tool.make_dataset_paths(str(tree), str(tmp_path / 'a'), 'x.pt')

    def interrupt(done: int) -> None:
        if done == 12:
            raise KeyboardInterrupt

    out = tmp_path / 'b'
    with pytest.raises(KeyboardInterrupt):
        tool.make_dataset_paths(str(tree), str(out), 'x.pt', 10, interrupt)
    assert (out / 'dataset_checkpoint.pt').is_file()
    assert not (out / 'x.pt').exists()
    # A class that the checkpoint covers is not scanned again: the image
    # added to c00 now is missing from the resumed list.
    _image(tree / 'c00' / 'late.png', 1)
    capsys.readouterr()
    resumed = tool.make_dataset_paths(str(tree), str(out), 'x.pt')
    assert 'Resuming after 10 processed classes' in capsys.readouterr().out
    assert resumed == fresh
    assert sorted(os.listdir(out)) == ['x.pt']
    # A checkpoint of another folder is refused.
    save_san_file(
        {'directory': '/else', 'completed': []}, out / 'dataset_checkpoint.pt'
    )
    with pytest.raises(ValueError, match="checkpoint of '/else'"):
        tool.make_dataset_paths(str(tree), str(out), 'x.pt')


@pytest.mark.timeout(60)
def test_make_dataset_paths_prunes_symlink_loops(tmp_path):
    # Two `..` links in one folder made the walk exponential before the
    # folders already seen were pruned (the walk ran to completion first).
    cls = tmp_path / 'root' / 'c0'
    _image(cls / 'a' / 'x.jpg', 1)
    (cls / 'a' / 'up').symlink_to('..', target_is_directory=True)
    (cls / 'a' / 'up2').symlink_to('..', target_is_directory=True)
    tool = _tool('make_dataset_paths')
    assert tool.class_samples(str(cls), 3) == [(str(cls / 'a' / 'x.jpg'), 3)]


def _init(tmp_path: Path, sizes: list[int]) -> Path:
    classes = [f'k{c}' for c in range(len(sizes))]
    samples = [
        (f'{classes[c]}/{k}.png', c)
        for c in range(len(sizes))
        for k in range(sizes[c])
    ]
    path = tmp_path / 'data_init.pt'
    save_san_file(
        dict(
            classes=classes,
            class_to_idx={n: i for i, n in enumerate(classes)},
            samples=samples,
            extensions=('.png',),
        ),
        path,
    )
    return path


def test_split_dataset_stratified_and_compounding(tmp_path):
    tool = _tool('split_dataset')
    init = _init(tmp_path, [20, 40, 10])
    out = tmp_path / 'splits'
    out.mkdir()
    assert tool.main([str(init), str(out), '-r', '0.5', '0.25']) == 0
    splits = [load_init_file(str(out / f'split_{i}.pt')) for i in range(3)]
    # Compounding (the fork): 50 % of each class, then 25 % of what is left
    # (k0: 25 % of 10 = 2.5, rounded half to even as pandas does -> 2).
    assert [_counts(s['samples']) for s in splits] == [
        {0: 10, 1: 20, 2: 5},
        {0: 2, 1: 5, 2: 1},
        {0: 8, 1: 15, 2: 4},
    ]
    everything = load_init_file(str(init))['samples']
    joined = [s for split in splits for s in split['samples']]
    assert sorted(joined) == sorted(everything)
    assert all(split['classes'] == ['k0', 'k1', 'k2'] for split in splits)
    # Within a split, samples keep the input order.
    order = {s: i for i, s in enumerate(everything)}
    for split in splits:
        idx = [order[s] for s in split['samples']]
        assert idx == sorted(idx)
    # --of-total: ratios of the class total.
    assert (
        tool.main([str(init), str(out), '-r', '0.5', '0.25', '--of-total'])
        == 0
    )
    counts = [
        _counts(load_init_file(str(out / f'split_{i}.pt'))['samples'])
        for i in range(3)
    ]
    assert counts == [
        {0: 10, 1: 20, 2: 5},
        {0: 5, 1: 10, 2: 2},
        {0: 5, 1: 10, 2: 3},
    ]
    # Seeded: the same seed gives the same split, another seed another one.
    a = tool.split_samples(everything, [0.5], seed=1)
    assert a == tool.split_samples(everything, [0.5], seed=1)
    assert a != tool.split_samples(everything, [0.5], seed=2)
    with pytest.raises(ValueError, match='sum below 1'):
        tool.split_samples(everything, [0.5, 0.5], of_total=True)


def test_split_dataset_compounding_ratios_may_sum_to_1(tmp_path):
    # san.md §5: ratios compound on the remainder, so `-r 0.5 0.5` (the
    # docstring's 50 / 25 / 25 example) is valid without --of-total.
    tool = _tool('split_dataset')
    init = _init(tmp_path, [20, 40, 8])
    out = tmp_path / 'splits'
    out.mkdir()
    assert tool.main([str(init), str(out), '-r', '0.5', '0.5']) == 0
    counts = [
        _counts(load_init_file(str(out / f'split_{i}.pt'))['samples'])
        for i in range(3)
    ]
    assert counts == [
        {0: 10, 1: 20, 2: 4},
        {0: 5, 1: 10, 2: 2},
        {0: 5, 1: 10, 2: 2},
    ]
    samples = load_init_file(str(init))['samples']
    assert len(tool.split_samples(samples, [0.9, 0.9, 0.9])) == 4
    # Each ratio must still be in (0, 1); the sum only with --of-total.
    for ratios in ([1.0], [0.5, 1.0], [0.0], [-0.1], []):
        with pytest.raises(ValueError, match='ratio'):
            tool.split_samples(samples, ratios)
    for ratios in ([0.5, 0.5], [0.6, 0.6], [1.0]):
        with pytest.raises(ValueError, match='ratio'):
            tool.split_samples(samples, ratios, of_total=True)
    assert (
        tool.main([str(init), str(out), '-r', '0.5', '0.5', '--of-total']) == 2
    )


def test_sub_sample_counts_classes_and_errors(tmp_path, capsys):
    tool = _tool('sub_sample')
    init = _init(tmp_path, [6, 3, 8, 5])
    out = str(tmp_path / 'sub.pt')
    assert tool.main([str(init), out, '-n', '4']) == 2
    err = capsys.readouterr().err
    assert "-n 4 is larger than the smallest class 'k1' (3 samples)" in err
    assert tool.main([str(init), out, '-n', '3', '-s', '1']) == 0
    sub = load_init_file(out)
    assert _counts(sub['samples']) == {0: 3, 1: 3, 2: 3, 3: 3}
    # -c: random classes, re-indexed 0.. in their old order.
    assert tool.main([str(init), out, '-f', '0.5', '-c', '2', '-s', '3']) == 0
    sub = load_init_file(out)
    assert len(sub['classes']) == 2
    old = [int(name[1:]) for name in sub['classes']]
    assert old == sorted(old)
    assert sub['class_to_idx'] == {n: i for i, n in enumerate(sub['classes'])}
    for path, label in sub['samples']:
        assert path.split('/')[0] == sub['classes'][label]
    sizes = [6, 3, 8, 5]
    assert _counts(sub['samples']) == {
        i: round(0.5 * sizes[o]) for i, o in enumerate(old)
    }
    # -e: classes of another list are excluded by name.
    excl = tmp_path / 'excl'
    excl.mkdir()
    _init(excl, [1, 1])  # classes k0, k1
    assert (
        tool.main(
            [str(init), out, '-f', '1', '-e', str(excl / 'data_init.pt')]
        )
        == 0
    )
    sub = load_init_file(out)
    assert sub['classes'] == ['k2', 'k3']
    assert _counts(sub['samples']) == {0: 8, 1: 5}
    assert tool.main([str(init), out, '-n', '1', '-c', '9']) == 2
    assert 'the list has 4 classes' in capsys.readouterr().err


def test_make_inmemory_dataset(tree, tmp_path):
    paths = _tool('make_dataset_paths')
    paths.make_dataset_paths(str(tree), str(tmp_path), 'data_init.pt')
    tool = _tool('make_inmemory_dataset')
    init = str(tmp_path / 'data_init.pt')
    val = str(tmp_path / 'val_imgs.pt')
    assert tool.main([init, val, '-t', 'val']) == 0
    ds = SANInMemoryDataset(ann_file=val, expected_preprocess='val')
    assert len(ds) == TOTAL and ds[0]['img'].shape == (224, 224, 3)
    raw = str(tmp_path / 'raw_imgs.pt')
    assert tool.main([init, raw, '-t', 'train', '-n']) == 0
    ds = SANInMemoryDataset(ann_file=raw, expected_preprocess='none')
    src = load_init_file(init)['samples']
    for i in (0, 1, TOTAL - 1):
        # Untransformed: the files' own bytes.
        assert ds.get_image_bytes(i) == Path(src[i][0]).read_bytes()
        assert ds[i]['gt_label'] == src[i][1]
    train = str(tmp_path / 'train_imgs.pt')
    assert tool.main([init, train, '-t', 'train', '--legacy-reencode']) == 0
    ds = SANInMemoryDataset(ann_file=train, expected_preprocess='train')
    img = ds[1]['img']  # a JPEG re-saved as JPEG, short side 256
    assert min(img.shape[:2]) == 256
    assert ds.get_image_bytes(1)[:2] == b'\xff\xd8'


def test_init_txt_round_trip(tree, tmp_path, capsys):
    _tool('make_dataset_paths').make_dataset_paths(
        str(tree), str(tmp_path), 'data_init.pt'
    )
    init = str(tmp_path / 'data_init.pt')
    lists = tmp_path / 'lists'
    to_txt, to_init = _tool('init_to_txt'), _tool('txt_to_init')
    assert (
        to_txt.main(
            [init, str(lists / 'train.txt'), '--relative-to', str(tree)]
        )
        == 0
    )
    lines = (lists / 'train.txt').read_text().splitlines()
    assert lines[0] == 'c00/00.png\t0'
    assert (lists / 'mapping.txt').read_text().splitlines()[12] == 'c12\t12'
    ds = SANTxtListDataset(
        data_root=str(lists),
        ann_file='train.txt',
        path_prefix=str(tree),
        check_images='header',
    )
    assert len(ds) == TOTAL
    back = str(tmp_path / 'back_init.pt')
    assert (
        to_init.main(
            [str(lists / 'train.txt'), back, '--path-prefix', str(tree)]
        )
        == 0
    )
    a, b = load_init_file(init), load_init_file(back)
    assert (a['classes'], a['class_to_idx'], a['samples']) == (
        b['classes'],
        b['class_to_idx'],
        b['samples'],
    )
    # The mapping is shared by the lists of one folder, never overwritten.
    (lists / 'mapping.txt').write_text('other\t0\n')
    assert to_txt.main([init, str(lists / 'val.txt')]) == 2
    assert 'exists with other classes' in capsys.readouterr().err
    (lists / 'bad.txt').write_text('c00/00.png\t0\nc00/01.png\tx\n')
    assert to_init.main([str(lists / 'bad.txt'), back]) == 2
    assert "bad.txt:2: label 'x' is not an integer" in capsys.readouterr().err


def test_init_to_txt_rebuilds_a_complement_split(tree, tmp_path, capsys):
    # miniQuickDraw's train.txt is absent from the fork's repository: it is
    # rebuilt as every image of the mapped classes that is not in val.txt.
    _tool('make_dataset_paths').make_dataset_paths(
        str(tree), str(tmp_path), 'all_init.pt'
    )
    init = str(tmp_path / 'all_init.pt')
    lists = tmp_path / 'lists'
    lists.mkdir()
    # Two classes, in an order other than sorted, as the fork's mappings.
    (lists / 'mapping.txt').write_text('c03\t0\nc01\t1\n')
    (lists / 'val.txt').write_text('c01/00.png\t1\nc03/nested/03.png\t0\n')
    to_txt = _tool('init_to_txt')
    argv = [init, str(lists / 'train.txt'), '--relative-to', str(tree)]
    argv += ['--classes', str(lists / 'mapping.txt')]
    assert to_txt.main([*argv, '--exclude', str(lists / 'val.txt')]) == 0
    rows = [
        line.split('\t')
        for line in (lists / 'train.txt').read_text().splitlines()
    ]
    all_rows = {
        (os.path.relpath(p, tree), label)
        for p, label in load_init_file(init)['samples']
    }
    old = {'c03': 3, 'c01': 1}
    expected = {
        (p, str(new))
        for new, name in enumerate(('c03', 'c01'))
        for p, label in all_rows
        if label == old[name] and p not in ('c01/00.png', 'c03/nested/03.png')
    }
    assert {tuple(r) for r in rows} == expected
    assert len(rows) == SIZES[1] + SIZES[3] - 2
    assert (lists / 'mapping.txt').read_text() == 'c03\t0\nc01\t1\n'
    ds = SANTxtListDataset(
        data_root=str(lists),
        ann_file='train.txt',
        path_prefix=str(tree),
        check_path_class=False,
        check_images='header',
    )
    assert len(ds) == len(rows)
    # A class the scan does not hold is named.
    (lists / 'other.txt').write_text('c03\t0\nzebra\t1\n')
    argv[-1] = str(lists / 'other.txt')
    assert to_txt.main([*argv[:2], '--classes', argv[-1]]) == 2
    assert "'zebra'" in capsys.readouterr().err
