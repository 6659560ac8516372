# `make demo`: TS-CAM with a micro DeiT (embed 64, depth 2, 2 heads, 16-px
# patches) trained from scratch on a synthetic CUB-200-2011 copy (4
# classes, 64x64 images, so 4x4 tokens), on CPU in about 20 seconds.
#   python tools/dataset_converters/make_synthetic.py --format cub \
#       --out data/demo --classes 4 --per-class 16 --size 64 --seed 0
# Everything else is the reference TS-CAM CUB config: the coupled map
# m* x S_c, the TS-CAM profile and MaxBoxAccV2, the overlay hook.
_base_ = ['../tscam/tscam_deit-small_1xb128-60e_cub.py']

pretrained = None  # no ImageNet weights for a custom arch
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=64, depth=2, num_heads=2),
        img_size=64,
        init_cfg=dict(checkpoint=pretrained),
    ),
    head=dict(num_classes=4, in_channels=64),
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

# The TS-CAM profile at the demo's threshold, MaxBoxAccV2 with
# wsolevaluation's CLI interval, classification accuracy.
# 4x4 token maps are coarse; the demo uses threshold 0.3 (CUB's 0.1 is for
# 14x14 maps of an ImageNet-pretrained DeiT).
cam_threshold = 0.3
val_evaluator = [
    dict(
        type='LocAccuracyMetric',
        preset='tscam',
        cam_threshold=cam_threshold,
        prefix='tscam',
    ),
    dict(type='MaxBoxAccMetric', prefix='wsol', cam_curve_interval=0.01),
]
test_evaluator = val_evaluator

# From scratch: a larger lr than fine-tuning, decayed once.
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = dict(milestones=[40])
train_cfg = dict(max_epochs=60, val_interval=20)
auto_scale_lr = dict(base_batch_size=16)

default_hooks = dict(logger=dict(interval=4))
custom_hooks = [
    dict(
        type='CAMVisualizationHook',
        num_images=4,
        preset='tscam',
        cam_threshold=cam_threshold,
    )
]
randomness = dict(seed=0, deterministic=True)
