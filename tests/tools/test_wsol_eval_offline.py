"""``tools/analysis/wsol_eval_offline.py`` on synthetic wsolevaluation
metadata with the generator's oracle maps (``evaluation.md`` §1, §2)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.datasets.synthetic import generate
from tests.conftest import load_tool, run_tool

TOOL = 'tools/analysis/wsol_eval_offline.py'


tool = load_tool(TOOL)


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('wsol_offline')
    for fmt in ('cub', 'imagenet-loc', 'openimages-mask'):
        generate(fmt, root / fmt, 2, 2, 3, size_range=(60, 100), seed=2,
                 write_oracle_maps=True)  # fmt: skip
    return root


def _args(data: Path, fmt: str, name: str, maps: Path | None = None):
    args = [
        '--scoremap-root',
        str(maps or data / fmt / 'oracle_maps' / fmt),
        '--metadata-root',
        str(data / fmt / 'wsol' / 'metadata'),
        '--dataset-name',
        name,
        '--split',
        'test',
    ]
    if name == 'OpenImages':
        args += ['--mask-root', str(data / fmt / 'wsol' / 'dataset' / name)]
    return args


def _run(args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / 'metrics.json'
    assert tool.main([*args, '--out', str(out)]) == 0
    return json.loads(out.read_text())['metrics']


def _copy_maps(data: Path, fmt: str, dst: Path, change) -> Path:
    """Copy the oracle maps, replacing each with ``change(map)``."""
    src = data / fmt / 'oracle_maps' / fmt
    for path in src.rglob('*.npy'):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, change(np.load(path)))
    return dst


@pytest.mark.parametrize(
    'fmt, name', [('cub', 'CUB'), ('imagenet-loc', 'ILSVRC')]
)
def test_oracle_maps_score_100(data, tmp_path, fmt, name):
    metrics = _run(_args(data, fmt, name), tmp_path)
    assert metrics['num_images'] == 6
    assert metrics['MaxBoxAccV2'] == 100.0
    for d in (30, 50, 70):
        assert metrics[f'MaxBoxAcc@{d}'] == 100.0
        assert 0.0 <= metrics[f'best_threshold@{d}'] < 1.0
    curves = np.array(metrics['box_acc_curves'])
    assert curves.shape == (3, 100)  # cam_curve_interval 0.01


def test_wrong_maps_score_less(data, tmp_path):
    def corner(m: np.ndarray) -> np.ndarray:
        wrong = np.zeros_like(m)
        h, w = m.shape
        wrong[: h // 6, : w // 6] = 1.0  # a small blob away from the bird
        return wrong

    maps = _copy_maps(data, 'cub', tmp_path / 'maps', corner)
    metrics = _run(_args(data, 'cub', 'CUB', maps), tmp_path)
    assert metrics['MaxBoxAccV2'] < 100.0
    assert metrics['MaxBoxAcc@70'] < 100.0


def test_already_resized_maps_give_the_same_result(data, tmp_path):
    """wsolevaluation's own dumps: 224 x 224 maps already normalised."""
    from shared.evaluation.protocols import resize_cam

    def shrink(m: np.ndarray) -> np.ndarray:
        return resize_cam(m, (224, 224), 'wsoleval')

    maps = _copy_maps(data, 'cub', tmp_path / 'maps', shrink)
    native = _run(_args(data, 'cub', 'CUB'), tmp_path)
    resized = _run(_args(data, 'cub', 'CUB', maps), tmp_path)
    assert native == resized


def test_chunked_scoring_equals_one_call(data, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)

    def noisy(m: np.ndarray) -> np.ndarray:
        # A decoy copy of the object with a random weight and offset.
        shift = rng.integers(10, 40, size=2)
        decoy = np.roll(m, tuple(shift), axis=(0, 1))
        return m + 2.0 * rng.random() * decoy

    maps = _copy_maps(data, 'cub', tmp_path / 'maps', noisy)
    args = _args(data, 'cub', 'CUB', maps)
    whole = _run(args, tmp_path)
    monkeypatch.setattr(tool, 'CHUNK', 4)  # 6 images -> chunks of 4 and 2
    chunked = _run(args, tmp_path)
    assert whole == chunked
    assert whole['MaxBoxAccV2'] < 100.0


def test_split_folder_and_v1_label(data, tmp_path):
    args = _args(data, 'cub', 'CUB')
    split = data / 'cub' / 'wsol' / 'metadata' / 'CUB' / 'test'
    args[args.index('--metadata-root') + 1] = str(split)
    metrics = _run(
        [*args, '--no-multi-contour-eval', '--iou-threshold-list', '50'],
        tmp_path,
    )
    assert metrics['MaxBoxAccV1'] == metrics['MaxBoxAcc@50'] == 100.0
    assert 'MaxBoxAccV2' not in metrics


def test_openimages_pxap(data, tmp_path):
    oracle = _run(_args(data, 'openimages-mask', 'OpenImages'), tmp_path)
    assert oracle['num_images'] == 6
    assert oracle['PxAP'] > 99.0

    maps = _copy_maps(
        data, 'openimages-mask', tmp_path / 'maps', lambda m: 1.0 - m
    )
    inverted = _run(
        _args(data, 'openimages-mask', 'OpenImages', maps), tmp_path
    )
    assert inverted['PxAP'] < 50.0


def test_missing_map_names_the_file(data, tmp_path):
    maps = tmp_path / 'maps'
    shutil.copytree(data / 'cub' / 'oracle_maps' / 'cub', maps)
    victim = sorted(maps.rglob('*.npy'))[2]
    victim.unlink()
    proc = run_tool([TOOL, *_args(data, 'cub', 'CUB', maps)], check=False)
    assert proc.returncode == 2
    assert f'missing score map {victim}' in proc.stderr
    assert 'image_ids.txt:' in proc.stderr  # the metadata line


@pytest.mark.parametrize(
    'change, match',
    [
        (dict(metadata='nowhere'), 'no metadata found'),
        (dict(name='OpenImages', no_mask=True), '--mask-root'),
        (dict(bad_map=True), r'score map .*2-D'),
    ],
)
def test_errors(data, tmp_path, capsys, change, match):
    args = _args(data, 'cub', 'CUB')
    if 'metadata' in change:
        args[args.index('--metadata-root') + 1] = str(tmp_path / 'nowhere')
    if change.get('no_mask'):
        args[args.index('--dataset-name') + 1] = 'OpenImages'
    if change.get('bad_map'):
        maps = _copy_maps(
            data, 'cub', tmp_path / 'maps', lambda m: np.stack([m, m])
        )
        args[args.index('--scoremap-root') + 1] = str(maps)
    assert tool.main(args) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
