# flickr25k photos (250 classes, 20,000 / 5,000 photos, the classes and
# indices of Sketch_EITZ) in the SAN fork's txt-list layout (datasets.md
# §4.8; the fork's dataset/flickr25k/photos):
#   <DATA_ROOT>/flickr25k_photos/data/<class>/<n>.png
#   <DATA_ROOT>/flickr25k_photos/{train,val}.txt   <path>\t<idx>
#   <DATA_ROOT>/flickr25k_photos/mapping.txt       <class_name>\t<idx>
# The fork's lists ship in projects/san/data_lists/flickr25k_photos/ with
# paths relative to the dataset root (data/<class>/<n>.png): copy them into
# <DATA_ROOT>/flickr25k_photos/. Lists holding the fork's absolute paths
# (/mnt/ssdDrive/Flickr25K/<class>/<n>.png) also work with
# path_replace=(that prefix, <your-data-dir>/flickr25k_photos/data/).
# Alternatives to the txt lists (datasets.md §4.8), as dataloader overrides:
#   dataset=dict(type='SANInitFileDataset', data_root=data_root,
#                ann_file='train_init.pt', pipeline=train_pipeline)
#   in memory: dataset=dict(type='SANInMemoryDataset', data_root=data_root,
#       ann_file='train_imgs.pt', expected_preprocess='train',
#       pipeline=train_pipeline[1:])  (val: 'val_imgs.pt', 'val' and only
#       PackInputs, the file being resized to 256 and centre-cropped to 224)
# The fork's legacy *_imgs.pt files must first be converted with
# tools/dataset_converters/san_imgs_to_raw.py --trust-source.
# Recipe of san.md §3.1/§3.2: RandomResizedCrop 224 + flip for training,
# short side 256 + centre crop 224 for validation, pillow decoding;
# ImageNet statistics (photos).
dataset_type = 'SANTxtListDataset'
data_root = '{{$DATA_ROOT:data}}/flickr25k_photos/'

data_preprocessor = dict(
    num_classes=250,
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
