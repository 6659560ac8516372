# What every WSOL localization base shares (datasets.md §3.3): ImageNet
# normalisation, the reference pipelines of TS-CAM, WGOL and
# wsolevaluation (PIL decoding without EXIF rotation; train resize to
# 256x256 without keeping the aspect, random 224 crop, flip; test resize to
# 224x224 only), and the loader settings. cub_loc.py, cub_wsolmeta.py,
# ilsvrc_loc.py and openimages_mask.py inherit it and add the datasets.
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

train_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(type='LoadLocAnnotations'),
    dict(type='LocResize', scale=(256, 256)),
    dict(type='LocRandomCrop', crop_size=224),
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
    dict(type='LocResize', scale=(224, 224)),
    dict(type='PackLocInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    dataset=dict(pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=8,
    dataset=dict(test_mode=True, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_dataloader = val_dataloader
