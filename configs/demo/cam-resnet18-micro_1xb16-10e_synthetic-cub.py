# `make demo`: the vanilla CAM baseline (Zhou et al. 2016, wsolevaluation's
# "CAM") with a micro ResNet-18 trained for 10 epochs on a synthetic
# CUB-200-2011 copy (4 classes, 64x64 images), on CPU in about a minute.
#   python tools/dataset_converters/make_synthetic.py --format cub \
#       --out data/demo --classes 4 --per-class 16 --size 64 --seed 0
# The 64x64 frame replaces the 256/224 of the CUB base; layer3 and layer4
# keep stride 1, so the CAMs are 8x8 (output stride 8).
_base_ = [
    '../_base_/models/resnet18-micro.py',
    '../_base_/datasets/cub_loc.py',
    '../_base_/schedules/sgd-coslr-100e_8xb32.py',
    '../_base_/default_runtime.py',
]

custom_imports = dict(imports=['shared'], allow_failed_imports=False)

model = dict(
    type='CAMClassifier',
    backbone=dict(strides=(1, 2, 1, 1)),
    head=dict(num_classes=4),
)
data_preprocessor = dict(num_classes=4)

data_root = '{{$DATA_ROOT:data}}/demo/CUB_200_2011/'
train_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(type='LoadLocAnnotations'),
    dict(type='LocResize', scale=(72, 72)),
    dict(type='LocRandomCrop', crop_size=64),
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
    dict(type='LocResize', scale=(64, 64)),
    dict(type='PackLocInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline),
)
test_dataloader = val_dataloader

# MaxBoxAccV2 with wsolevaluation's CLI interval, TS-CAM's Top-1/GT-known
# Loc at its config threshold, and the classification accuracy.
val_evaluator = [
    dict(type='MaxBoxAccMetric', cam_curve_interval=0.01),
    dict(type='LocAccuracyMetric', preset='tscam', cam_threshold=0.2),
    dict(type='Accuracy', topk=(1,)),
]
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.05, weight_decay=5e-4))
param_scheduler = dict(T_max=10)
train_cfg = dict(max_epochs=10, val_interval=5)
auto_scale_lr = dict(base_batch_size=16)

default_hooks = dict(logger=dict(interval=4))
randomness = dict(seed=0, deterministic=True)

# Overlays of 4 validation images per validation epoch, and of every test
# image with `tools/test.py --show-dir` (which keeps these settings), with
# boxes at the TS-CAM threshold.
custom_hooks = [
    dict(
        type='CAMVisualizationHook',
        num_images=4,
        preset='tscam',
        cam_threshold=0.2,
    )
]
