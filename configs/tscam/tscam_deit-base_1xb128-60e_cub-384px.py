# TS-CAM DeiT-B at 384x384 on CUB-200-2011. ASSUMED RECIPE: upstream ships
# no config for the README's DeiT-B-384 row (tscam.md §4). Train resize
# 438x438 -> random crop 384 (the 256/224 ratio), test resize 384x384,
# threshold 0.1, otherwise the DeiT-S CUB recipe. 24x24 tokens.
_base_ = ['./tscam_deit-small_1xb128-60e_cub.py']

pretrained = 'checkpoints/deit_base_patch16_384-8de9b5d1.pth'
model = dict(
    backbone=dict(
        arch='base', img_size=384, init_cfg=dict(checkpoint=pretrained)
    ),
    head=dict(in_channels=768),
)

train_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(type='LoadLocAnnotations'),
    dict(type='LocResize', scale=(438, 438)),
    dict(type='LocRandomCrop', crop_size=384),
    dict(type='LocRandomFlip', prob=0.5),
    dict(type='PackLocInputs'),
]
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(type='LoadLocAnnotations'),
    dict(type='LocResize', scale=(384, 384)),
    dict(type='PackLocInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
