# COCO-2014 multi-label classification (SS-PRL linear-probe protocol),
# datasets.md §4.5, golang_ssl.md §7.
#
# Layout under data_root (DATA_ROOT=/your/data moves it; default data/coco/):
#   annotations/instances_train2014.json  instances_val2014.json
#   train2014/COCO_train2014_<12 digits>.jpg
#   val2014/COCO_val2014_<12 digits>.jpg
# Labels: the 80 categories in file order; every annotation (crowd
# included) makes its class positive; images without annotations are kept
# with no positive. The split pair is pinned here (train2014 -> val2014):
# train2017 contains most of val2014, so a 2017 variant must switch both.
#
# Synthetic copy (any class count; categories come from the json):
#   python tools/dataset_converters/make_synthetic.py --format coco \
#       --out data --num-classes 80 --per-class 4 --size-range 160 320
dataset_type = 'COCOMultiLabel'
data_root = '{{$DATA_ROOT:data}}/coco/'
num_classes = 80

# Mean/std of golang_ssl.md §3: std 0.228 (not 0.229) for the red channel
# is SwAV's typo, reproduced because the probed backbone was trained with it.
data_preprocessor = dict(
    num_classes=num_classes,
    mean=[123.675, 116.28, 103.53],
    std=[58.14, 57.12, 57.375],
    to_rgb=True,
    # multi-label: gt_label holds the positive indices -> one-hot gt_score
    to_onehot=True,
)

# PIL decoding without EXIF rotation, as the originals (datasets.md §2.2).
load_image = dict(
    type='LoadImageFromFile',
    imdecode_backend='pillow',
    color_type='color_ignore_orientation',
)
train_pipeline = [
    load_image,
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    load_image,
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
    batch_size=128,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2014.json',
        data_prefix='train2014',
        pipeline=train_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2014.json',
        data_prefix='val2014',
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
# SS-PRL's mAP (scikit-learn step AP, on pred_logit when the head gives it;
# evaluation.md §6).
val_evaluator = dict(type='MultiLabelMAP')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
