# The SAN fork's classification recipe for SANMixedNet (san.md §3.2;
# FearsomeTuna/SAN config/{sketch_eitz,flickr25k_photos,mini_quickdraw}/
# *.yaml with tool/train.py): 2 GPUs x 32 images (val 16 per GPU), SGD
# lr 0.1 / momentum 0.9 / weight decay 1e-4 on every parameter (no
# nesterov, no paramwise_cfg, no warm-up), cosine annealing stepped once per
# epoch, the original label-smoothed CE with eps = 0.1 (SANSmoothCELoss),
# validation and a checkpoint every epoch (keep 2, the last one is
# reported). 100 epochs here; 50-epoch leaves (mini-QuickDraw, in1k,
# -from-in1k) override train_cfg.max_epochs and param_scheduler.T_max.
# A leaf config inherits one dataset base config (which sets the
# data_preprocessor: normalisation and num_classes, and the dataloaders)
# next to this file and sets model.backbone.arch and model.head.num_classes.
_base_ = [
    '../../_base_/schedules/sgd-coslr-100e_8xb32.py',
    '../../_base_/default_runtime.py',
]

default_scope = 'mmpretrain'
custom_imports = dict(imports=['projects.san'], allow_failed_imports=False)

# The data_preprocessor comes from the dataset base (mmengine's Runner
# passes the top-level one to the model).
model = dict(
    type='ImageClassifier',
    # weight_init='fork': kaiming-normal (fan_out) on every conv, as
    # upstream MixedModel.
    backbone=dict(type='SANMixedNet'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
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
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)

# The fork's total batch: 64 images on 2 GPUs.
auto_scale_lr = dict(base_batch_size=64, enable=False)

default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best=None)
)
