# Sketch_EITZ (TU-Berlin, 250 classes, 16,000 / 4,000 sketches) in the SAN
# fork's txt-list layout (datasets.md §4.8):
#   <DATA_ROOT>/Sketch_EITZ/data/<class>/<n>.png
#   <DATA_ROOT>/Sketch_EITZ/{train,val,val_queries}.txt   <path>\t<idx>
#   <DATA_ROOT>/Sketch_EITZ/mapping.txt                   <class_name>\t<idx>
# The fork's lists ship in projects/san/data_lists/Sketch_EITZ/ with paths
# relative to the dataset root (data/<class>/<n>.png): copy them into
# <DATA_ROOT>/Sketch_EITZ/. Lists holding the fork's absolute paths
# (/mnt/ssdDrive/Sketch_EITZ/<class>/<n>.png) also work with
# path_replace=(that prefix, <your-data-dir>/Sketch_EITZ/data/).
# Recipe of san.md §3.1/§3.2: RandomResizedCrop 224 + flip for training,
# short side 256 + centre crop 224 for validation, pillow decoding; MNIST
# statistics (0.1307 / 0.3081, x255) on the three identical channels.
dataset_type = 'SANTxtListDataset'
data_root = '{{$DATA_ROOT:data}}/Sketch_EITZ/'

data_preprocessor = dict(
    num_classes=250,
    mean=[0.1307 * 255] * 3,
    std=[0.3081 * 255] * 3,
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
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train.txt',
        classes_file='mapping.txt',
        check_path_class=True,
        pipeline=train_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='val.txt',
        classes_file='mapping.txt',
        check_path_class=True,
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))

# The fork has no separate test split: its test run reuses val.
test_dataloader = val_dataloader
test_evaluator = val_evaluator
