# CUB-200-2011 with boxes, original layout (datasets.md §4.1), read by CUBLoc:
#   <DATA_ROOT>/CUB_200_2011/{images/<NNN.Class>/, images.txt,
#       image_class_labels.txt, train_test_split.txt, bounding_boxes.txt,
#       classes.txt}
# TS-CAM and WGOL evaluate on the test split (val = test here; the held-out
# CUBV2 split is in cub_wsolmeta.py). A synthetic copy:
#   python tools/dataset_converters/make_synthetic.py --format cub \
#       --out data --num-classes 200 --per-class 30 --val-per-class 29
# DATA_ROOT=/elsewhere moves every dataloader (default: data/).
dataset_type = 'CUBLoc'
data_root = '{{$DATA_ROOT:data}}/CUB_200_2011/'

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
        data_root=data_root,
        split='test',
        test_mode=True,
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='MaxBoxAccMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
