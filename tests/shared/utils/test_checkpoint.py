"""Safe loading: own checkpoints load, foreign pickles never execute."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

from shared.utils.checkpoint import (
    UnsafeCheckpointError,
    UnsupportedSchemeError,
    _guarded_getattr,
    list_checkpoint_globals,
    safe_load,
    save_state_dict,
)
from tests.conftest import PickleBomb


def training_like_checkpoint() -> dict:
    """What mmengine stores: tensors, numpy values and the message hub."""
    hub = MessageHub.get_instance('test_checkpoint_hub')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_scalar('train/lr', 0.1)
    hub.update_info('iter', 3)
    return dict(
        meta=dict(seed=np.int64(7), epoch=1, arr=np.arange(4.0)),
        state_dict={'w': torch.randn(3, 2)},
        message_hub=hub.state_dict(),
    )


def write_malicious(path: Path, marker: Path, legacy: bool) -> None:
    torch.save(
        {'state_dict': {'w': torch.ones(1)}, 'x': PickleBomb(marker)},
        path,
        _use_new_zipfile_serialization=not legacy,
    )


def test_pure_state_dict_loads(tmp_path):
    sd = {'a': torch.randn(2, 3), 'b': torch.arange(4)}
    torch.save(sd, tmp_path / 'w.pth')
    assert list_checkpoint_globals(str(tmp_path / 'w.pth')) == []
    out = safe_load(tmp_path / 'w.pth')
    assert torch.equal(out['a'], sd['a']) and torch.equal(out['b'], sd['b'])


def test_training_checkpoint_loads_with_allowlist(tmp_path):
    ckpt = training_like_checkpoint()
    save_state_dict(ckpt, str(tmp_path / 'c.pth'))
    found = list_checkpoint_globals(str(tmp_path / 'c.pth'))
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in found
    assert 'builtins.getattr' in found
    out = safe_load(str(tmp_path / 'c.pth'))
    buf = out['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.current() == 0.5 and buf.mean() == 0.5
    assert out['meta']['seed'] == 7
    np.testing.assert_array_equal(out['meta']['arr'], np.arange(4.0))
    # The allowlist is scoped: torch's process-wide list stays unchanged.
    process_wide = torch.serialization.get_safe_globals()
    assert HistoryBuffer not in process_wide
    assert not any(isinstance(g, tuple) for g in process_wide)


def test_numpy1_spellings_load(tmp_path):
    """A checkpoint written by numpy 1 uses numpy.core.multiarray names."""
    torch.save({'arr': np.arange(3), 's': np.float32(2.5)}, tmp_path / 'n.pth')
    src = zipfile.ZipFile(tmp_path / 'n.pth')
    with zipfile.ZipFile(tmp_path / 'n1.pth', 'w') as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith('data.pkl'):
                assert b'numpy._core.multiarray' in data
                data = data.replace(
                    b'numpy._core.multiarray', b'numpy.core.multiarray'
                )
            dst.writestr(info, data)
    assert 'numpy.core.multiarray._reconstruct' in list_checkpoint_globals(
        str(tmp_path / 'n1.pth')
    )
    out = safe_load(tmp_path / 'n1.pth')
    np.testing.assert_array_equal(out['arr'], np.arange(3))
    assert out['s'] == np.float32(2.5)


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_malicious_pickle_never_executes(tmp_path, legacy):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    write_malicious(path, marker, legacy)
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_load(path)
    assert not marker.exists()
    assert 'evil.pth' in str(err.value)
    if not legacy:
        assert 'posix.system' in str(err.value)
        assert '--trust-source' in str(err.value)
    # The same through mmengine's loader (load_from, resume, Pretrained).
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path):
    torch.save({'o': np.array([{'a': 1}], dtype=object)}, tmp_path / 'o.pth')
    with pytest.raises(UnsafeCheckpointError):
        safe_load(tmp_path / 'o.pth')


def test_trust_source_loads_foreign_pickle(tmp_path):
    torch.save({'d': io.StringIO('x')}, tmp_path / 'f.pth')
    with pytest.raises(UnsafeCheckpointError, match='_io.StringIO'):
        safe_load(tmp_path / 'f.pth')
    out = safe_load(tmp_path / 'f.pth', trust_source=True)
    assert out['d'].getvalue() == 'x'


@pytest.mark.parametrize(
    'obj,name',
    [
        (HistoryBuffer, '__init__'),
        (HistoryBuffer, '__globals__'),
        (os, 'system'),
        (HistoryBuffer, 'update'),
    ],
)
def test_guarded_getattr_refuses(obj, name):
    with pytest.raises(UnsafeCheckpointError):
        _guarded_getattr(obj, name)


def test_guarded_getattr_allows_statistics():
    for name in ('min', 'max', 'mean', 'current'):
        assert _guarded_getattr(HistoryBuffer, name) is getattr(
            HistoryBuffer, name
        )
    with pytest.raises(UnsafeCheckpointError):
        _guarded_getattr(HistoryBuffer, 'min', None)


def test_getattr_gadget_in_checkpoint_refused(tmp_path):
    """A pickle calling getattr(HistoryBuffer, '__init__') cannot load."""

    class Gadget:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    torch.save({'g': Gadget()}, tmp_path / 'g.pth')
    with pytest.raises(UnsafeCheckpointError):
        safe_load(tmp_path / 'g.pth')


def test_missing_file_and_schemes(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        safe_load(tmp_path / 'nope.pth')
    for src in ('s3://bucket/x.pth', 'pavi://x', 'ftp://host/x.pth'):
        with pytest.raises(UnsupportedSchemeError, match='not supported'):
            safe_load(src)
    for src in ('s3://bucket/x.pth', 'pavi://model', 'ab:s3://bucket/x'):
        with pytest.raises(UnsupportedSchemeError):
            CheckpointLoader.load_checkpoint(src)


def test_loader_names_keep_mmengine_prefix():
    """mmengine's logger slices the first 10 characters (`load_from_`)."""
    for prefix, loader in CheckpointLoader._schemes.items():
        assert loader.__name__.startswith('load_from_'), prefix
        assert loader.__module__ == 'shared.utils.checkpoint', prefix


def test_save_state_dict_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / 'a.pth'
    save_state_dict({'w': torch.ones(2)}, str(path))

    def failing_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', failing_save)
    with pytest.raises(OSError, match='disk full'):
        save_state_dict({'w': torch.zeros(2)}, str(path))
    assert torch.equal(safe_load(path)['w'], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.pth']


def test_pickle_module_unused_outside_checkpoint():
    """Sanity: the malicious class really executes under plain pickle."""
    marker_dir = Path(os.environ.get('TMPDIR', '/tmp'))
    marker = marker_dir / f'pickle_sanity_{os.getpid()}'
    try:
        pickle.loads(pickle.dumps(PickleBomb(marker)))  # noqa: S301
        assert marker.exists()
    finally:
        marker.unlink(missing_ok=True)


class _ObjectDtype:
    def __reduce__(self):
        return (np.dtype, ('O8', False, True))


class _ObjectArray:
    """Builds an object ndarray from allowlisted globals only."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        state = (1, (2,), _ObjectDtype(), False, ['x', {'k': 1}])
        return (_reconstruct, (np.ndarray, (0,), b'b'), state)


def test_crafted_object_array_is_refused(tmp_path):
    torch.save({'a': _ObjectArray()}, tmp_path / 'o.pth')
    found = list_checkpoint_globals(str(tmp_path / 'o.pth'))
    assert set(found) <= {
        'numpy._core.multiarray._reconstruct',
        'numpy.ndarray',
        'numpy.dtype',
    }
    with pytest.raises(UnsafeCheckpointError, match='object arrays'):
        safe_load(tmp_path / 'o.pth')


def test_zip_record_name_tricks(tmp_path):
    """Case-variant records and a zip appended to a pickle are refused."""
    marker = tmp_path / 'pwned'
    write_malicious(tmp_path / 'evil.pth', marker, legacy=False)
    torch.save({'w': torch.ones(1)}, tmp_path / 'good.pth')
    good = zipfile.ZipFile(tmp_path / 'good.pth')
    evil = zipfile.ZipFile(tmp_path / 'evil.pth')
    evil_pkl = next(n for n in evil.namelist() if n.endswith('data.pkl'))
    with zipfile.ZipFile(tmp_path / 'mixed.pth', 'w') as dst:
        for info in good.infolist():
            dst.writestr(info, good.read(info))
        prefix = good.namelist()[0].split('/')[0]
        dst.writestr(f'{prefix}/DATA.PKL', evil.read(evil_pkl))
    with pytest.raises(pickle.UnpicklingError):
        safe_load(tmp_path / 'mixed.pth')
    appended = tmp_path / 'appended.pth'
    write_malicious(tmp_path / 'legacy.pth', marker, legacy=True)
    appended.write_bytes(
        (tmp_path / 'legacy.pth').read_bytes()
        + (tmp_path / 'good.pth').read_bytes()
    )
    with pytest.raises(UnsafeCheckpointError):
        safe_load(appended)
    assert not marker.exists()


def test_refusal_message_gives_no_unsafe_advice(tmp_path):
    write_malicious(tmp_path / 'legacy.pth', tmp_path / 'm', legacy=True)
    with pytest.raises(UnsafeCheckpointError) as err:
        safe_load(tmp_path / 'legacy.pth')
    assert 'weights_only' not in str(err.value)
    assert 'posix.system' in str(err.value)


def test_mmengine_pickle_files_use_the_safe_unpickler(tmp_path):
    import mmengine

    marker = tmp_path / 'pwned'
    with open(tmp_path / 'evil.pkl', 'wb') as f:
        pickle.dump({'x': PickleBomb(marker)}, f, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        mmengine.load(str(tmp_path / 'evil.pkl'))
    assert not marker.exists()
    data = [
        {
            'pred_score': torch.tensor([0.25, 0.75]),
            'gt_label': 1,
            'meta': ('a', np.float32(2.0)),
        }
    ]
    mmengine.dump(data, str(tmp_path / 'ok.pkl'))
    back = mmengine.load(str(tmp_path / 'ok.pkl'))
    assert torch.equal(back[0]['pred_score'], data[0]['pred_score'])
    assert back[0]['meta'] == ('a', np.float32(2.0))
    with open(tmp_path / 'p5.pkl', 'wb') as f:
        pickle.dump({'a': 1}, f, protocol=5)
    with pytest.raises(UnsafeCheckpointError, match='protocol 2'):
        mmengine.load(str(tmp_path / 'p5.pkl'))
