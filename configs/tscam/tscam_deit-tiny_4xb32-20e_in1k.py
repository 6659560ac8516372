# TS-CAM DeiT-T on ILSVRC-2012: the DeiT-S ILSVRC recipe with DeiT-T and a
# total batch of 128 (4 GPUs x 32), as upstream (tscam.md §4).
_base_ = ['./tscam_deit-small_4xb64-20e_in1k.py']

pretrained = 'checkpoints/deit_tiny_patch16_224-a1311bcf.pth'
model = dict(
    backbone=dict(arch='tiny', init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=192),
)
train_dataloader = dict(batch_size=32)
val_dataloader = dict(batch_size=32)
test_dataloader = val_dataloader
auto_scale_lr = dict(base_batch_size=128)
