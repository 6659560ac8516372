# SAN's ImageNet recipe (san.md §3.1; hszhao/SAN config/imagenet/*.yaml),
# shared by the SAN and SANResNet classifiers: 8 GPUs x 32 images (val 16
# per GPU), SGD lr 0.1 / momentum 0.9 / weight decay 1e-4 on every parameter
# (no nesterov, no paramwise_cfg, no warm-up), cosine annealing stepped once
# per epoch (lr_e = 0.05 (1 + cos(pi e / 100)), constant within an epoch),
# 100 epochs, upstream's label-smoothed CE with eps = 0.1, validation and a
# checkpoint every epoch (keep 2, the last one is reported). A child config
# adds model.backbone.
_base_ = [
    '../../_base_/datasets/imagenet.py',
    '../../_base_/schedules/sgd-coslr-100e_8xb32.py',
    '../../_base_/default_runtime.py',
]

default_scope = 'mmpretrain'
custom_imports = dict(imports=['projects.san'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    data_preprocessor={{_base_.data_preprocessor}},
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='SANSmoothCELoss', eps=0.1),
        topk=(1, 5),
        # PyTorch's default Linear init, as upstream (not Normal(0.01)).
        init_cfg=None,
    ),
)

# Upstream steps the cosine schedule once per epoch (scheduler.step() after
# each epoch), not per iteration as the shared schedule does.
param_scheduler = dict(
    _delete_=True,
    type='CosineAnnealingLR',
    T_max=100,
    eta_min=0,
    by_epoch=True,
    convert_to_iter_based=False,
)

val_dataloader = dict(batch_size=16)
test_dataloader = dict(batch_size=16)

default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best=None)
)
