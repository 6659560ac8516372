"""``draw_layer_maps`` (``evaluation.md`` §8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.visualization import draw_layer_maps, overlay_cam

H, W = 30, 40


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (H, W, 3), np.uint8)


def _maps(num: int) -> list[np.ndarray]:
    """Maps peaking at different places, so every tile differs."""
    y, x = np.mgrid[0:8, 0:8]
    return [
        np.exp(-((x - k) ** 2 + (y - 7 + k) ** 2) / 6.0) for k in range(num)
    ]


def test_grid_layout_and_tiles(image):
    maps = _maps(5)
    titles = [f'block {k}' for k in range(5)]
    out = draw_layer_maps(image, maps, titles, title_height=12, gap=2)
    # ceil(sqrt(5)) = 3 columns, 2 rows.
    assert out.dtype == np.uint8
    assert out.shape == (2 * (12 + H) + 2, 3 * W + 2 * 2, 3)
    for k, cam in enumerate(maps):
        row, col = divmod(k, 3)
        y = row * (12 + H + 2) + 12
        x = col * (W + 2)
        np.testing.assert_array_equal(
            out[y : y + H, x : x + W], overlay_cam(image, cam)
        )
        strip = out[y - 12 : y, x : x + W]
        assert strip.any(), f'title {k} missing'
    # The sixth cell and the gaps stay black.
    assert not out[12 + H + 2 + 12 :, 2 * (W + 2) :].any()
    assert not out[:, W : W + 2].any()


def test_titles_differ_between_tiles(image):
    out = draw_layer_maps(image, _maps(2), ['a', 'rollout'], ncols=2)
    left, right = out[:20, :W], out[:20, W + 2 :]
    assert not np.array_equal(left, right)


def test_stacked_array_and_single_column(image):
    maps = np.stack(_maps(3)).astype(np.float32)
    out = draw_layer_maps(image, maps, ['x', 'y', 'z'], ncols=1, gap=0)
    assert out.shape == (3 * (20 + H), W, 3)
    np.testing.assert_array_equal(
        out[2 * (20 + H) + 20 :], overlay_cam(image, maps[2])
    )


def test_preset_and_alpha_are_passed_on(image):
    cam = _maps(1)[0]
    out = draw_layer_maps(image, [cam], ['t'], alpha=0.8, preset='wsoleval')
    expected = overlay_cam(image, cam, alpha=0.8, preset='wsoleval')
    np.testing.assert_array_equal(out[20:], expected)


@pytest.mark.parametrize(
    'maps, titles, kwargs, error, match',
    [
        ([], [], {}, ValueError, 'empty'),
        (_maps(2), ['a'], {}, ValueError, '2 maps but 1 titles'),
        (_maps(1), [3], {}, TypeError, r'titles\[0\]'),
        (_maps(1), ['a'], dict(ncols=0), ValueError, 'ncols'),
        (_maps(1), ['a'], dict(gap=-1), ValueError, 'gap'),
        (_maps(1), ['a'], dict(title_height=2), ValueError, 'title_height'),
        ([np.zeros((2, 3, 3))], ['bad'], {}, ValueError, r"maps\[0\].*'bad'"),
        (torch.zeros(1, 4, 4), ['a'], {}, TypeError, 'torch'),
    ],
)
def test_errors(image, maps, titles, kwargs, error, match):
    with pytest.raises(error, match=match):
        draw_layer_maps(image, maps, titles, **kwargs)
