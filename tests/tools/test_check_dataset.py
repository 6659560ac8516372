"""Tests of tools/dataset_converters/check_dataset.py."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image

from shared.datasets.synthetic import generate
from tests.conftest import load_tool, run_tool

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


def _write_config(path, dataloaders: dict) -> str:
    """A config file holding ``dataloaders`` (``name -> dataset dict``)."""
    lines = [
        f'{name} = dict(batch_size=2, dataset={dataset!r})'
        for name, dataset in dataloaders.items()
    ]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.fixture(scope='module')
def sketch_root(tmp_path_factory):
    """The synthetic SAN sketch layouts (2 classes, 3 + 1 per class)."""
    root = tmp_path_factory.mktemp('sketch')
    generate('sketch', root, 2, 3, size_range=(32, 48))
    return root


def test_inmemory_dataset_is_decoded_from_its_bytes(sketch_root, tmp_path):
    # The samples' img_path is a pseudo path ('val_imgs.pt[0]'): opening it
    # from disk reported every sample missing.
    config = _write_config(
        tmp_path / 'inmemory.py',
        dict(
            val_dataloader=dict(
                type='SANInMemoryDataset',
                data_root=str(sketch_root / 'Sketch'),
                ann_file='val_imgs.pt',
                expected_preprocess='val',
            )
        ),
    )
    proc = run_tool([SCRIPT, config, '--full'], check=False)
    assert proc.returncode == 0, proc.output
    assert '== val: SANInMemoryDataset, 2 samples, 2 classes' in proc.stdout
    assert 'no problems found' in proc.stdout


def test_header_problems_decode_inmemory_bytes():
    tool = load_tool(SCRIPT)

    class Blobs:
        def __init__(self, blobs):
            self.blobs = blobs

        def __len__(self):
            return len(self.blobs)

        def get_data_info(self, i):
            return dict(img_path=f'val_imgs.pt[{i}]', inmemory_index=i)

        def get_image_bytes(self, i):
            return self.blobs[i]

        def prepare_data(self, i):
            raise AssertionError('not decoded through the pipeline')

    buf = io.BytesIO()
    Image.new('L', (8, 8), 255).save(buf, format='PNG')
    good = buf.getvalue()
    dataset = Blobs([good, b'not an image', good[: len(good) // 2]])
    header = tool._header_problems(dataset, full=False)
    assert list(header) == ['undecodable_image']
    assert header['undecodable_image'][0].startswith('val_imgs.pt[1]: ')
    full = tool._header_problems(dataset, full=True)
    assert [r.split(':')[0] for r in full['undecodable_image']] == [
        'val_imgs.pt[1]',
        'val_imgs.pt[2]',
    ]


def test_sbir_dataset_checks_its_sketch_and_photo_datasets(
    sketch_root, tmp_path
):
    def view(name):
        return dict(
            type='SANTxtListDataset',
            data_root=str(tmp_path / name),
            ann_file='train.txt',
            check_path_class=True,
        )

    for name in ('Sketch', 'Photos'):
        shutil.copytree(sketch_root / name, tmp_path / name)
    config = _write_config(
        tmp_path / 'sbir.py',
        dict(
            train_dataloader=dict(
                type='SANSBIRDataset',
                sketch_dataset=view('Sketch'),
                photo_dataset=view('Photos'),
                sketch_pipeline=[dict(type='LoadImageFromFile')],
                photo_pipeline=[dict(type='LoadImageFromFile')],
                pipeline=[dict(type='PackPairInputs')],
                seed=0,
            )
        ),
    )
    proc = run_tool([SCRIPT, config], check=False)
    assert proc.returncode == 0, proc.output
    assert '== train: SANSBIRDataset, 6 samples, 2 classes' in proc.stdout
    assert 'no problems found' in proc.stdout

    rel = (tmp_path / 'Sketch' / 'train.txt').read_text().split('\t')[0]
    missing = tmp_path / 'Sketch' / rel
    missing.unlink()
    proc = run_tool([SCRIPT, config], check=False)
    assert proc.returncode == 1, proc.output
    assert '== train: SANSBIRDataset, 5 samples' in proc.stdout
    assert 'PROBLEM sketch: missing_image: 1' in proc.stdout
    assert str(missing) in proc.stdout
