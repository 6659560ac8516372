"""CAM overlays and the CAM visualisation hook (``evaluation.md`` §8)."""

from .cam_hook import CAMVisualizationHook
from .layer_maps import draw_layer_maps
from .overlay import denormalize, overlay_cam, read_frame_image

__all__ = [
    'CAMVisualizationHook',
    'denormalize',
    'draw_layer_maps',
    'overlay_cam',
    'read_frame_image',
]
