"""CAM overlays and the CAM visualisation hook."""
