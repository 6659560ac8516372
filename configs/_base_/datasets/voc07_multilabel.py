# PASCAL VOC-2007 multi-label classification (SS-PRL linear-probe
# protocol), datasets.md §4.6, golang_ssl.md §7.
#
# Layout under data_root (DATA_ROOT=/your/data moves it; default
# data/VOCdevkit/VOC2007/), with BOTH VOCtrainval_06-Nov-2007.tar and
# VOCtest_06-Nov-2007.tar extracted into the same folder:
#   JPEGImages/<id>.jpg   Annotations/<id>.xml
#   ImageSets/Main/{trainval,test}.txt
#   ImageSets/Main/<class>_{trainval,test}.txt
# mmpretrain's VOC reads the XMLs: classes with only difficult objects go
# to gt_label_difficult (ignored: target -1 via
# shared.datasets.utils.multilabel_target), so both pipelines pack it.
# type='VOCClassList' (SS-PRL's class-file reader, same targets) needs no
# XMLs: dataset=dict(type='VOCClassList', data_root=..., split=...).
#
# Synthetic copy (20 classes get the VOC names):
#   python tools/dataset_converters/make_synthetic.py --format voc \
#       --out data --num-classes 20 --per-class 4 --size-range 160 320
dataset_type = 'VOC'
data_root = '{{$DATA_ROOT:data}}/VOCdevkit/VOC2007/'
num_classes = 20

# Mean/std of golang_ssl.md §3 (std 0.228: SwAV's typo, reproduced).
data_preprocessor = dict(
    num_classes=num_classes,
    mean=[123.675, 116.28, 103.53],
    std=[58.14, 57.12, 57.375],
    to_rgb=True,
    to_onehot=True,
)

meta_keys = (
    'sample_idx',
    'img_path',
    'ori_shape',
    'img_shape',
    'scale_factor',
    'flip',
    'flip_direction',
    'gt_label_difficult',
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
    dict(type='PackInputs', meta_keys=meta_keys),
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
    dict(type='PackInputs', meta_keys=meta_keys),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    dataset=dict(
        type=dataset_type,
        max_refetch=0,  # never swap in another sample (datasets.md §2.1)
        data_root=data_root,
        split='trainval',
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
        split='test',
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
# SS-PRL's mAP (evaluation.md §6); gt_label_difficult classes are ignored.
val_evaluator = dict(type='MultiLabelMAP')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
