# TS-CAM DeiT-T on CUB-200-2011: the DeiT-S CUB recipe with DeiT-T
# (tscam.md §6).
_base_ = ['./tscam_deit-small_1xb128-60e_cub.py']

pretrained = 'checkpoints/deit_tiny_patch16_224-a1311bcf.pth'
model = dict(
    backbone=dict(arch='tiny', init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=192),
)
