# TS-CAM DeiT-B (224) on CUB-200-2011: the DeiT-S CUB recipe with DeiT-B
# (tscam.md §6; no published number).
_base_ = ['./tscam_deit-small_1xb128-60e_cub.py']

pretrained = 'checkpoints/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=768),
)
