# TS-CAM with Conformer-S on CUB-200-2011 (optional; upstream README update
# of 06/07/2021, tscam.md §3.7): the DeiT-S CUB recipe with the Conformer
# backbone. Logits = GAP(S) + the CNN branch's head; m* over the 12
# transformer blocks. Local weights: conformer_small_patch16.pth (official
# Conformer); its Linear trans_cls_head is replaced by the 3x3 conv head.
_base_ = ['./tscam_deit-small_1xb128-60e_cub.py']

pretrained = 'checkpoints/conformer_small_patch16.pth'
num_classes = 200
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
    # The Conformer's _init_weights gives its trans_cls_head conv
    # kaiming-normal weights.
    head=dict(num_classes=num_classes, in_channels=384, conv_init='kaiming'),
)
