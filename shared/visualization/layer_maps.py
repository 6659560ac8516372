"""Tiles of per-layer maps (``evaluation.md`` §8).

For models that expose the optional ``extra_maps`` method (e.g. TS-CAM's
class-token attention per block, attention rollout): each map is overlaid
on the image with :func:`~.overlay.overlay_cam`, titled, and the tiles are
laid out on a grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from .overlay import TEXT_COLOR, _check_image, overlay_cam

__all__ = ['draw_layer_maps']


def _title_strip(title: str, width: int, height: int) -> np.ndarray:
    strip = np.zeros((height, width, 3), dtype=np.uint8)
    scale = height / 30
    (text_w, _), _ = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    if text_w > width - 4 and text_w > 0:  # shrink long titles to fit
        scale *= (width - 4) / text_w
    baseline = int(round(height * 0.72))
    cv2.putText(
        strip,
        title,
        (2, baseline),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        TEXT_COLOR,
        1,
        cv2.LINE_AA,
    )
    return strip


def draw_layer_maps(
    image: np.ndarray,
    maps: np.ndarray | Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    ncols: int | None = None,
    alpha: float = 0.5,
    preset: str | None = None,
    title_height: int = 20,
    gap: int = 2,
) -> np.ndarray:
    """Overlay each map on the image and tile the results on a grid.

    Tile k (row-major) is ``overlay_cam(image, maps[k], alpha=alpha,
    preset=preset)`` under a black strip of ``title_height`` pixels holding
    ``titles[k]`` in white; tiles are separated by ``gap`` black pixels and
    unused grid cells stay black.

    Args:
        image (np.ndarray): uint8 (H, W, 3) BGR image.
        maps (np.ndarray | Sequence[np.ndarray]): (L, h, w) array or L
            floating (h_k, w_k) maps, any size and scale (each is resized
            to the image and min-max normalised on its own).
        titles (Sequence[str]): L titles, e.g. ``'block 3'``.
        ncols (int | None): Grid columns; default ceil(sqrt(L)).
        alpha (float): Heat weight of each overlay.
        preset (str | None): Resize rule passed to :func:`overlay_cam`.
        title_height (int): Height of each title strip in pixels (>= 8).
        gap (int): Pixels between tiles (>= 0).

    Returns:
        np.ndarray: uint8 BGR image of shape
        (rows * (title_height + H) + (rows - 1) * gap,
        ncols * W + (ncols - 1) * gap, 3).

    Raises:
        TypeError: Torch tensors, a non-uint8 image or a title that is not
            a string.
        ValueError: No map, len(titles) != L, a map that is not 2-D,
            ``ncols`` < 1, ``title_height`` < 8 or ``gap`` < 0 (and the
            errors of :func:`overlay_cam`, which name the map index).
    """
    image = _check_image(image)
    if isinstance(maps, torch.Tensor):
        raise TypeError(
            'maps must be numpy arrays, got a torch.Tensor; convert them '
            'with .detach().cpu().numpy()'
        )
    maps = list(maps)
    titles = list(titles)
    if not maps:
        raise ValueError('maps is empty')
    if len(titles) != len(maps):
        raise ValueError(f'{len(maps)} maps but {len(titles)} titles')
    for k, title in enumerate(titles):
        if not isinstance(title, str):
            raise TypeError(f'titles[{k}] must be a str, got {type(title)}')
    if ncols is None:
        ncols = math.ceil(math.sqrt(len(maps)))
    if int(ncols) < 1:
        raise ValueError(f'ncols must be >= 1, got {ncols}')
    if int(title_height) < 8:
        raise ValueError(f'title_height must be >= 8, got {title_height}')
    if int(gap) < 0:
        raise ValueError(f'gap must be >= 0, got {gap}')
    ncols = min(int(ncols), len(maps))
    rows = math.ceil(len(maps) / ncols)
    height, width = image.shape[:2]
    tile_h = int(title_height) + height
    canvas = np.zeros(
        (
            rows * tile_h + (rows - 1) * gap,
            ncols * width + (ncols - 1) * gap,
            3,
        ),
        dtype=np.uint8,
    )
    for k, (cam, title) in enumerate(zip(maps, titles)):
        try:
            tile = overlay_cam(image, cam, alpha=alpha, preset=preset)
        except (TypeError, ValueError) as err:
            raise type(err)(f'maps[{k}] ({title!r}): {err}') from err
        row, col = divmod(k, ncols)
        y = row * (tile_h + gap)
        x = col * (width + gap)
        canvas[y : y + title_height, x : x + width] = _title_strip(
            title, width, int(title_height)
        )
        canvas[y + title_height : y + tile_h, x : x + width] = tile
    return canvas
