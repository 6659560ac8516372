# ImageNet-1k classification (mmpretrain ImageNet) with PIL decoding and PIL
# resizing: the equivalent of mmpretrain's imagenet_bs32_pil_resize.py with
# the values of san.md §3.1. Layout: <DATA_ROOT>/ILSVRC2012/{train,val}/
# (class folders, or flat val/ with meta/{train,val}.txt).
# A synthetic copy:
#   python tools/dataset_converters/make_synthetic.py --format imagenet-loc \
#       --out data --num-classes 10 --per-class 20 --val-per-class 5
# DATA_ROOT=/elsewhere moves every dataloader (default: data/).
dataset_type = 'ImageNet'
data_root = '{{$DATA_ROOT:data}}/ILSVRC2012/'

data_preprocessor = dict(
    num_classes=1000,
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
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        max_refetch=0,  # never swap in another sample (datasets.md §2.1)
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
        type=dataset_type,
        max_refetch=0,  # never swap in another sample (datasets.md §2.1)
        data_root=data_root,
        split='val',
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
