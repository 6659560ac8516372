"""Tests of tools/dataset_converters/check_dataset.py."""

from __future__ import annotations

from shared.datasets.synthetic import generate
from tests.conftest import run_tool

SCRIPT = 'tools/dataset_converters/check_dataset.py'
DEMO = 'configs/demo/resnet18-micro_1xb16-5e_synthetic-imagefolder.py'


def test_imagefolder_clean_and_with_a_missing_image(tmp_path):
    root = tmp_path / 'synthetic_imagefolder'
    generate('imagefolder', root, 2, 3, val_per_class=1, size_range=(32, 32))
    proc = run_tool([SCRIPT, DEMO], env={'DATA_ROOT': str(tmp_path)})
    assert '== train: CustomDataset, 6 samples' in proc.stdout
    assert 'images per class: min 3, median 3, max 3' in proc.stdout
    assert '== test: same dataset as an earlier split' in proc.stdout
    assert proc.stdout.count('no problems found') == 2

    missing = root / 'val' / 'class_001' / 'class_001_0000.png'
    missing.unlink()
    proc = run_tool(
        [SCRIPT, DEMO, '--split', 'val', '--full'],
        env={'DATA_ROOT': str(tmp_path)},
        check=False,
    )
    assert proc.returncode == 1, proc.output
    assert 'PROBLEM missing_image: 1' in proc.stdout
    assert str(missing) in proc.stdout


def test_missing_config_exits_2(tmp_path):
    proc = run_tool([SCRIPT, str(tmp_path / 'no.py')], check=False)
    assert proc.returncode == 2 and 'does not exist' in proc.stderr
