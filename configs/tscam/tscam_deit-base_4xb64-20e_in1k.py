# TS-CAM DeiT-B (224) on ILSVRC-2012: the DeiT-S ILSVRC recipe with DeiT-B
# (tscam.md §6; no published number).
_base_ = ['./tscam_deit-small_4xb64-20e_in1k.py']

pretrained = 'checkpoints/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(
    backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=768),
)
