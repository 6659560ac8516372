# CUB in the wsolevaluation layout (datasets.md §4.3), read by
# WSOLMetaDataset: images under <DATA_ROOT>/wsol/dataset/CUB/<NNN.Class>/
# (CUB and the CUBV2 held-out images share the class folders), metadata in
# <DATA_ROOT>/wsol/metadata/CUB/{train,val,test}/. val = CUBV2 (1,000
# images, the split to select on), test = the CUB test split (5,794).
# A synthetic copy:
#   python tools/dataset_converters/make_synthetic.py --format cub \
#       --out data --num-classes 200 --per-class 30 --val-per-class 5
# DATA_ROOT=/elsewhere moves every dataloader (default: data/).
dataset_type = 'WSOLMetaDataset'
data_root = '{{$DATA_ROOT:data}}/wsol/dataset/CUB/'
metadata_root = '{{$DATA_ROOT:data}}/wsol/metadata/CUB/'

data_preprocessor = dict(
    num_classes=200,
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
        type=dataset_type,
        data_root=data_root,
        metadata_root=metadata_root + 'train',
        loc_type='none',  # weak supervision: labels only
        pipeline=train_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metadata_root=metadata_root + 'val',
        loc_type='box',
        test_mode=True,
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='MaxBoxAccMetric')

test_dataloader = dict(
    batch_size=32,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metadata_root=metadata_root + 'test',
        loc_type='box',
        test_mode=True,
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = val_evaluator
