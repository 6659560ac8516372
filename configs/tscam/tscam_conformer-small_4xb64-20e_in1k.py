# TS-CAM with Conformer-S on ILSVRC-2012 (optional, no published number):
# the DeiT-S ILSVRC recipe with the Conformer backbone (tscam.md §3.7). With
# C = 1000 the CNN branch keeps its ImageNet head.
_base_ = ['./tscam_deit-small_4xb64-20e_in1k.py']

pretrained = 'checkpoints/conformer_small_patch16.pth'
num_classes = 1000
model = dict(
    backbone=dict(
        _delete_=True,
        type='TSCAMConformer',
        num_classes=num_classes,
        arch='small',
        drop_path_rate=0.1,
        attn_layers='all',
        attn_reduce='sum',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained),
    ),
    head=dict(num_classes=num_classes, in_channels=384, conv_init='kaiming'),
)
