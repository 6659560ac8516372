# Synthetic ImageFolder data written by
#   python tools/dataset_converters/make_synthetic.py --format imagefolder \
#       --out data/synthetic_imagefolder --num-classes 4 --per-class 32
# (train/ and val/ with one folder per class). DATA_ROOT moves every
# dataloader at once: DATA_ROOT=/elsewhere python tools/train.py ...
dataset_type = 'CustomDataset'
data_root = '{{$DATA_ROOT:data}}/synthetic_imagefolder/'

data_preprocessor = dict(
    num_classes=4,
    mean=[127.5, 127.5, 127.5],
    std=[64.0, 64.0, 64.0],
    to_rgb=True,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.6, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=32, edge='short'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    dataset=dict(
        type=dataset_type,
        max_refetch=0,  # never swap in another sample (datasets.md §2.1)
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline=train_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    dataset=dict(
        type=dataset_type,
        max_refetch=0,  # never swap in another sample (datasets.md §2.1)
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='val',
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1,))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
