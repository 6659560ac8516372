"""apply_patches(): idempotent, each patch exercised for real."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from shared.utils import compat
from shared.utils.compat import CompatError, apply_patches


def run_py(code: str, repo_root, env=None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(repo_root))
    full_env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)],
        cwd=repo_root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_idempotent_and_reports_patches():
    first = apply_patches()
    second = apply_patches()
    assert first == second
    assert 'checkpoint-loaders' in first
    assert 'atomic-local-writes' in first
    assert ('np-in1d' in first) == (
        np.lib.NumpyVersion(np.__version__) >= '2.4.0'
    )


@pytest.mark.parametrize(
    'shape1,shape2',
    [((10,), (5,)), ((3, 4), (7,)), ((2, 3, 4), (2, 5)), ((0,), (3,))],
)
@pytest.mark.parametrize('invert', [False, True])
def test_in1d_shim_equals_isin_ravel(shape1, shape2, invert):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 10, size=shape1)
    b = rng.integers(0, 10, size=shape2)
    np.testing.assert_array_equal(
        compat.in1d(a, b, invert=invert), np.isin(a, b, invert=invert).ravel()
    )
    ua, ub = np.unique(a), np.unique(b)
    np.testing.assert_array_equal(
        compat.in1d(ua, ub, assume_unique=True, invert=invert),
        np.isin(ua, ub, assume_unique=True, invert=invert).ravel(),
    )
    # The patched numpy function is the shim itself.
    np.testing.assert_array_equal(
        np.in1d(a, b, invert=invert), compat.in1d(a, b, invert=invert)
    )


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_mmpretrain_retrieval_recall_runs():
    import torch
    from mmpretrain.evaluation import RetrievalRecall

    pred = torch.tensor([[0.9, 0.8, 0.1], [0.1, 0.2, 0.9]])
    target = [torch.tensor([1]), torch.tensor([0])]
    recall = RetrievalRecall.calculate(
        pred, target, topk=(1, 2), target_indices=True
    )
    assert [float(r) for r in recall] == [0.0, 50.0]


def test_pkg_resources_patch(tmp_path, repo_root):
    """A mmpretrain:: base needs pkg_resources; the patch replaces it."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("_base_ = ['mmpretrain::_base_/default_runtime.py']\n")
    block = """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == 'pkg_resources':
                    raise ImportError('pkg_resources blocked by the test')
        sys.meta_path.insert(0, Block())
        """
    load = f"""
        from mmengine.config import Config
        cfg = Config.fromfile({str(cfg)!r})
        print('LOADED', cfg.default_scope)
        """
    without = run_py(block + load, repo_root)
    assert without.returncode != 0
    assert 'pkg_resources' in without.stderr
    with_patch = run_py(
        block
        + """
        from shared.utils.compat import apply_patches
        print(apply_patches())
        """
        + load,
        repo_root,
    )
    assert with_patch.returncode == 0, with_patch.stderr
    assert "'pkg-resources'" in with_patch.stdout
    assert 'LOADED mmpretrain' in with_patch.stdout


def test_package_helpers_match_metadata():
    assert compat.is_installed('mmengine')
    assert not compat.is_installed('surely_not_a_package_xyz')
    assert compat.package2module('mmcv-lite') == 'mmcv'
    assert compat.get_installed_path('mmpretrain').endswith('mmpretrain')
    assert compat.get_installed_path('mmcv-lite').endswith('mmcv')


def test_version_mismatch_raises(monkeypatch):
    real = md.version
    monkeypatch.setattr(
        md,
        'version',
        lambda name: '0.10.6' if name == 'mmengine' else real(name),
    )
    with pytest.raises(CompatError, match='mmengine 0.10.6'):
        apply_patches()


def test_force_no_weights_only_env_raises(monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    with pytest.raises(CompatError, match='TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'):
        apply_patches()


def test_torchvision_nms_operator_loads():
    import torch
    import torchvision  # noqa: F401

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30.0]])
    keep = torch.ops.torchvision.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]


def test_atomic_local_writes(tmp_path, monkeypatch):
    from mmengine.fileio.backends.local_backend import LocalBackend

    backend = LocalBackend()
    target = tmp_path / 'last_checkpoint'
    backend.put_text('epoch_1.pth', target)
    real_replace = os.replace

    def crash(src, dst):
        raise OSError('killed while writing')

    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(OSError):
        backend.put_text('epoch_2.pth', target)
    monkeypatch.setattr(os, 'replace', real_replace)
    assert target.read_text() == 'epoch_1.pth'
    assert [p.name for p in tmp_path.iterdir()] == ['last_checkpoint']
    backend.put(b'abc', tmp_path / 'sub' / 'x.bin')
    assert (tmp_path / 'sub' / 'x.bin').read_bytes() == b'abc'


def _hue_image() -> np.ndarray:
    """Saturated BGR colours all around the hue circle (PIL HSV is exact
    to +-1 on them)."""
    import cv2

    hsv = np.zeros((16, 16, 3), np.uint8)
    hsv[..., 0] = np.arange(256, dtype=np.uint8).reshape(16, 16)
    hsv[..., 1:] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR_FULL)


@pytest.mark.parametrize('backend', ['pillow', 'cv2'])
def test_adjust_hue_equals_mmcv_for_positive_shifts(backend):
    from mmcv.image import photometric

    apply_patches()
    img = np.random.default_rng(0).integers(0, 256, (9, 11, 3), np.uint8)
    assert photometric.adjust_hue is compat.adjust_hue
    assert compat._MMCV_ADJUST_HUE.__module__ == 'mmcv.image.photometric'
    for factor in (0.0, 0.1, 0.2, 0.5):
        ours = compat.adjust_hue(img, factor, backend=backend)
        with np.errstate(over='ignore'):
            reference = compat._MMCV_ADJUST_HUE(img, factor, backend=backend)
        assert np.array_equal(ours, reference), factor


@pytest.mark.parametrize('backend', ['pillow', 'cv2'])
def test_adjust_hue_negative_shift_wraps_like_numpy1(backend):
    """-0.2 turns: numpy 1 computed uint8(-51) = 205 (mmcv raises on
    numpy 2); every hue moves by 205 modulo 256."""
    import cv2
    from mmpretrain.datasets.transforms import ColorJitter

    apply_patches()
    img = _hue_image()
    out = compat.adjust_hue(img, -0.2, backend=backend)
    before = cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL)[..., 0].astype(int)
    after = cv2.cvtColor(out, cv2.COLOR_BGR2HSV_FULL)[..., 0].astype(int)
    diff = (after - before) % 256
    assert np.median(diff) == 205
    assert np.all(
        np.minimum(np.abs(diff - 205), 256 - np.abs(diff - 205)) <= 3
    )
    # mmpretrain's ColorJitter reaches the patched function.
    jitter = ColorJitter(hue=0.5)
    for _ in range(20):
        assert jitter(dict(img=img.copy()))['img'].shape == img.shape


def test_adjust_hue_pillow_rejects_a_gray_image():
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        compat.adjust_hue(np.zeros((4, 5), np.uint8), 0.1, backend='pillow')
