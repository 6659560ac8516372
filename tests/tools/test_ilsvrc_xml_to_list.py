"""tools/dataset_converters/ilsvrc_xml_to_list.py on synthetic ILSVRC.

The XMLs the generator writes, converted, must give its own TS-CAM list
and wsolevaluation test metadata byte for byte (both val layouts); bad
XMLs stop the conversion naming the file and line.
"""

from __future__ import annotations

import shutil

import pytest

from shared.datasets.synthetic import generate
from tests.conftest import load_tool, run_tool

SCRIPT = 'tools/dataset_converters/ilsvrc_xml_to_list.py'
META_FILES = (
    'image_ids.txt',
    'class_labels.txt',
    'image_sizes.txt',
    'localization.txt',
)


tool = load_tool(SCRIPT)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp('ilsvrc')
    generate('imagenet-loc', out / 'flat', 3, 2, 3, (48, 80), seed=4)
    generate(
        'imagenet-loc',
        out / 'sub',
        3,
        2,
        3,
        (48, 80),
        seed=4,
        val_layout='class_subdirs',
    )
    return out


def test_help():
    out = run_tool([SCRIPT, '--help']).stdout
    for word in ('--synsets', '--train-dir', '--list-out', '--wsolmeta-out'):
        assert word in out


@pytest.mark.parametrize('layout', ['flat', 'class_subdirs'])
def test_round_trip_is_byte_identical(data, tmp_path, layout, capsys):
    out = data / ('flat' if layout == 'flat' else 'sub')
    root = out / 'ILSVRC2012'
    rc = tool.main(
        [
            str(root / 'bbox_val'),
            '--synsets',
            str(root / 'synsets.txt'),
            '--list-out',
            str(tmp_path / 'list.txt'),
            '--wsolmeta-out',
            str(tmp_path / 'meta'),
            '--val-layout',
            layout,
        ]
    )
    assert rc == 0 and '9 images' in capsys.readouterr().out
    expected = root / 'ILSVRC2012_list' / 'val_folder_new.txt'
    assert (tmp_path / 'list.txt').read_bytes() == expected.read_bytes()
    meta = out / 'wsol' / 'metadata' / 'ILSVRC' / 'test'
    for name in META_FILES:
        assert (tmp_path / 'meta' / name).read_bytes() == (
            meta / name
        ).read_bytes(), name


def test_class_order_from_train_folders(data, tmp_path):
    root = data / 'flat' / 'ILSVRC2012'
    rc = tool.main(
        [
            str(root / 'bbox_val'),
            '--train-dir',
            str(root / 'train'),
            '--list-out',
            str(tmp_path / 'list.txt'),
        ]
    )
    assert rc == 0
    expected = root / 'ILSVRC2012_list' / 'val_folder_new.txt'
    assert (tmp_path / 'list.txt').read_bytes() == expected.read_bytes()


def test_errors_name_the_xml(data, tmp_path, capsys):
    xml_dir = tmp_path / 'bbox_val'
    shutil.copytree(data / 'flat' / 'ILSVRC2012' / 'bbox_val', xml_dir)
    synsets = str(data / 'flat' / 'ILSVRC2012' / 'synsets.txt')
    xml = xml_dir / 'ILSVRC2012_val_00000003.xml'
    text = xml.read_text()
    xml.write_text(text.replace('<xmin>', '<xmin>9', 1))
    argv = [str(xml_dir), '--synsets', synsets, '--list-out', 'unused.txt']
    assert tool.main(argv) == 2
    err = capsys.readouterr().err
    assert f'{xml}:13' in err and 'ilsvrc_xml_to_list: error' in err
    xml.write_text(text.replace('<name>n0000000', '<name>n9999999'))
    assert tool.main(argv) == 2
    assert 'is not in the class list' in capsys.readouterr().err
    assert not (tmp_path / 'unused.txt').exists()
    assert tool.main([str(tmp_path / 'none'), '--synsets', synsets,
                      '--list-out', 'x']) == 2  # fmt: skip
    assert 'XML folder not found' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        tool.main([str(xml_dir), '--synsets', synsets])
    assert exit_.value.code == 2
    assert '--list-out and/or --wsolmeta-out' in capsys.readouterr().err
