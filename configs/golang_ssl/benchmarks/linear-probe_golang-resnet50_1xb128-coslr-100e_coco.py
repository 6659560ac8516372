# Linear multi-label probe of a GOLANG ResNet-50 on COCO-2014 (SS-PRL
# protocol, golang_ssl.md §7): frozen trunk (eval-mode BN) from a LOCAL
# backbone file written by tools/model_converters/golang_to_backbone.py,
# global average pooling, Linear(2048 -> 80) with N(0, 0.01^2) weights and
# bias 0.1, BCE-with-logits summed over classes and samples / batch, SGD lr
# 0.1 (momentum 0.9, weight decay 1e-6, grad-norm clip 10), cosine to 0 per
# epoch over 100 epochs, batch 128 on 1 GPU, seed 777, mAP on val2014 every
# epoch from the raw logits (pred_logit). The LAST epoch's mAP is reported;
# GAELLEProbeHook writes work_dir/probe_summary.json with it and the best
# epoch (labelled "selected on test").
#   python tools/train.py \
#       configs/golang_ssl/benchmarks/linear-probe_golang-resnet50_1xb128-coslr-100e_coco.py \
#       --cfg-options pretrained_backbone=work_dirs/golang_backbone.pth
_base_ = [
    '../../_base_/datasets/coco_multilabel.py',
    '../../_base_/default_runtime.py',
]

custom_imports = dict(
    imports=['projects.golang_ssl'], allow_failed_imports=False
)

# A local file; nothing is downloaded, and a missing file fails at start.
pretrained_backbone = 'checkpoints/golang_resnet50_coco2014_backbone.pth'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=50,
        out_indices=(3,),
        # Every stage frozen and BN in eval mode (SS-PRL's model.eval()).
        frozen_stages=4,
        norm_cfg=dict(type='BN'),
        zero_init_residual=False,
        # 'Pretrained' also stops mmpretrain's zero-init of the residuals.
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone),
    ),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='GAELLEMultiLabelLinearHead',
        num_classes={{_base_.num_classes}},
        in_channels=2048,
    ),
)

# Both pipelines also pack gt_label_difficult where a dataset gives it
# (VOC), so the VOC probe only swaps the datasets.
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
train_pipeline = [
    {{_base_.load_image}},
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
    {{_base_.load_image}},
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
train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=128, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-6, nesterov=False
    ),
    clip_grad=dict(max_norm=10),
)
max_epochs = 100
# Stepped once per epoch (SS-PRL), not per iteration.
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=0.0,
        by_epoch=True,
        begin=0,
        end=max_epochs,
    )
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=128)

custom_hooks = [dict(type='GAELLEProbeHook', metric_key='multilabel/mAP')]
randomness = dict(seed=777)
default_hooks = dict(logger=dict(interval=50))
