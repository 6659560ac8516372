# ILSVRC-2012 (datasets.md §4.2): training with mmpretrain ImageNet on
# <DATA_ROOT>/ILSVRC2012/train/<wnid>/ (meta/train.txt when present),
# evaluation with ImageNetLoc on val/ (flat or val/<wnid>/, detected) and
# the ILSVRC2012_bbox_val_v3 XMLs in bbox_val/. For TS-CAM's list instead
# set ann_format='tscam_list' (ann_file='ILSVRC2012_list/val_folder_new.txt').
# Class order: synsets.txt when present, else the sorted train/ folders.
# A synthetic copy:
#   python tools/dataset_converters/make_synthetic.py --format imagenet-loc \
#       --out data --num-classes 10 --per-class 20 --val-per-class 5
# DATA_ROOT=/elsewhere moves every dataloader (default: data/).
data_root = '{{$DATA_ROOT:data}}/ILSVRC2012/'

data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

# Reference pipelines (datasets.md §3.3): PIL decoding without EXIF rotation.
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
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='train',
        pipeline=train_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=8,
    dataset=dict(
        type='ImageNetLoc',
        data_root=data_root,
        ann_format='xml',
        ann_dir='bbox_val',
        val_layout='auto',
        test_mode=True,
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='MaxBoxAccMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
