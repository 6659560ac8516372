# WSOL-SST ILSVRC stage 0 (wsol_sst.md §5.4): the SPA classifier (mode spa,
# CE + RA) trained from ImageNet VGG16; its last checkpoint is the
# stage0_checkpoint of the stage-1 configs. 4 GPUs x 16, 20 epochs at lr
# 1e-3 (cls head x10, biases x2; the x10 follows SPA's fine-tuning
# convention and is unverified), x0.1 at epochs 10 and 15, RA from epoch 5
# with weight 0.5, bg 0.1, gap 0.2. This is the SPA script shipped with
# SPA2Net (SPA's own repository used bg 0.4 / gap 0.1).
_base_ = ['./_base_/wsolsst_vgg16_in1k.py']

vgg16_pretrained = 'checkpoints/vgg16-397923af.pth'
model = dict(
    mode='spa',
    backbone=dict(
        _delete_=True,
        type='SSTVGG16',
        init_cfg=dict(type='Pretrained', checkpoint=vgg16_pretrained),
    ),
    ra_cfg=dict(bg_thr=0.1, gap=0.2, loss_weight=0.5),
    gates=dict(ram_start=5),
    init_cfg=None,
)
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        module_lr=dict(backbone=1e-3, cls_head=1e-2),
        bias_lr_mult=2.0,
    )
)
param_scheduler = dict(milestones=[10, 15])
train_dataloader = dict(batch_size=16)
auto_scale_lr = dict(base_batch_size=64)
test_evaluator = [
    {{_base_.cam_metric}},
    {{_base_.scg_metric}},
    {{_base_.cam_wsol_metric}},
    {{_base_.scg_wsol_metric}},
]
