# WSOL-SST with VGG16 on ILSVRC-2012, stage 1 (wsol_sst.md §5.2, §5.4):
# initialised from the stage-0 SPA classifier (the whole model including
# the cls head; the SOS head and SA start new), 2 x 32 images, 20 epochs,
# lr backbone / cls / sos / sa = 1e-3 / 1e-3 / 5e-4 / 1e-3, x0.1 for every
# module at the start of epochs 6 and 17 (upstream's 0-based counter), all
# gates open from epoch 0, RA gap 0, SOS thresholds 0.5 / 0.2, a checkpoint
# every epoch. Quick-test thresholds 0.10 ... 0.80.
#   stage 0: configs/wsol_sst/wsolsst_vgg16-spa-stage0_4xb16-20e_in1k.py, or
#   python tools/model_converters/wsolsst_to_mono.py \
#       vgg16_spa_#1/ilsvrc_epoch_20.pth.tar checkpoints/wsolsst_stage0_in1k.pth
# Data as configs/_base_/datasets/ilsvrc_loc.py (which cannot be inherited
# next to the CUB base): ImageNet train/<wnid>/, ImageNetLoc on val with
# the official XML boxes.
_base_ = ['./wsolsst_vgg16_cub.py']

stage0_checkpoint = 'checkpoints/wsolsst_stage0_in1k.pth'
num_classes = 1000
model = dict(
    num_classes=num_classes,
    backbone=dict(init_cfg=None),
    sos_cfg=dict(fg_thr=0.5, bg_thr=0.2),
    ra_cfg=dict(gap=0.0),
    gates=dict(sa_start=0, sos_start=0, ram_start=0),
    init_cfg=dict(type='Pretrained', checkpoint=stage0_checkpoint),
)
optim_wrapper = dict(
    paramwise_cfg=dict(
        module_lr=dict(backbone=1e-3, cls_head=1e-3, sos_head=5e-4, sa=1e-3)
    )
)
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[6, 17], gamma=0.1
)
train_cfg = dict(max_epochs=20)
custom_hooks = [dict(type='SSTEpochGateHook')]

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ImageNet',
        data_root='{{$DATA_ROOT:data}}/ILSVRC2012/',
        split='train',
        max_refetch=0,
        pipeline={{_base_.train_pipeline}},
    )
)
default_hooks = dict(checkpoint=dict(interval=1))

test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ImageNetLoc',
        data_root='{{$DATA_ROOT:data}}/ILSVRC2012/',
        ann_format='xml',
        ann_dir='bbox_val',
        val_layout='auto',
        test_mode=True,
        pipeline={{_base_.test_pipeline}},
    )
)
loc_thresholds = [round(0.05 * k, 2) for k in range(2, 17)]
cam_metric = dict(
    type='LocAccuracyMetric',
    preset='spa',
    cam_threshold=loc_thresholds,
    map_key='loc_maps_cam',
    prefix='cam',
)
scg_metric = dict(
    type='LocAccuracyMetric',
    preset='spa',
    cam_threshold=loc_thresholds,
    map_key='loc_maps_scg',
    prefix='scg',
)
sos_metric = dict(
    type='LocAccuracyMetric',
    preset='spa',
    sos=True,
    cam_threshold=loc_thresholds,
    map_key='loc_maps_sos',
    prefix='sos',
)
# Secondary: MaxBoxAccV2 (wsolevaluation defaults) on the same fields.
cam_wsol_metric = dict(
    type='MaxBoxAccMetric', map_key='loc_maps_cam', prefix='cam_wsol'
)
scg_wsol_metric = dict(
    type='MaxBoxAccMetric', map_key='loc_maps_scg', prefix='scg_wsol'
)
sos_wsol_metric = dict(
    type='MaxBoxAccMetric', map_key='loc_maps_sos', prefix='sos_wsol'
)
test_evaluator = [
    cam_metric,
    scg_metric,
    sos_metric,
    cam_wsol_metric,
    scg_wsol_metric,
    sos_wsol_metric,
]
