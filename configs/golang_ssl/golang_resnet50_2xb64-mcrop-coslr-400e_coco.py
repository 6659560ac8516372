# GOLANG / GAELLE pre-training on COCO-2014 train, the original README's
# recipe (golang_ssl.md §3-§5): ResNet-50 with SyncBN (no zero-init
# residual), 2 x 224 + 6 x 96 crops, the global SwAV branch plus the local
# semantic-attention branch (G = 4 groups, M = 32 tokens per view) and the
# local-to-global prediction (detached, as released), 3000 + 3000 + 3000
# prototypes, GAELLELARC (apex LARC + SGD) lr 0.6 for a total batch of 128
# (unscaled), cosine to 6e-4 over 400 epochs, no warmup, fp16 AMP, queue of
# 3840 from epoch 7, prototypes frozen for 5005 iterations, seed 31.
#   bash tools/dist_train.sh \
#       configs/golang_ssl/golang_resnet50_2xb64-mcrop-coslr-400e_coco.py 2
_base_ = [
    '../_base_/datasets/coco_unlabeled.py',
    '../_base_/default_runtime.py',
]

custom_imports = dict(
    imports=['projects.golang_ssl'], allow_failed_imports=False
)

# Model dimensions shared by the neck, the loss and the hook.
num_crops = [2, 6]
crops_for_assign = [0, 1]
feat_dim = 128
local_feat_dim = 128
num_groups = 4
num_prototypes = 3000
num_local_prototypes = 3000

# std 0.228 (not 0.229) for red is SwAV's typo, reproduced (58.14 = 255 x
# 0.228).
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.14, 57.12, 57.375],
    to_rgb=True,
)


# Each view, in the original order: crop, flip, colour jitter, grayscale,
# PIL Gaussian blur (mmpretrain's GaussianBlur; OpenCV blur was slower).
view_augments = [
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandomApply',
        transforms=[
            dict(
                type='ColorJitter',
                brightness=0.8,
                contrast=0.8,
                saturation=0.8,
                hue=0.2,
            )
        ],
        prob=0.8,
    ),
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.2989),
    ),
    dict(
        type='GaussianBlur',
        magnitude_range=(0.1, 2.0),
        magnitude_std='inf',
        prob=0.5,
    ),
]
global_view = [
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.14, 1.0),
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    *view_augments,
]
local_view = [
    dict(
        type='RandomResizedCrop',
        scale=96,
        crop_ratio_range=(0.05, 0.14),
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    *view_augments,
]

train_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(
        type='MultiView',
        num_views=num_crops,
        transforms=[global_view, local_view],
    ),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=10,
    drop_last=True,
    dataset=dict(pipeline=train_pipeline),
)

model = dict(
    type='GAELLE',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNet',
        depth=50,
        out_indices=(3,),
        norm_cfg=dict(type='SyncBN'),
        zero_init_residual=False,
    ),
    neck=dict(
        type='GAELLENeck',
        in_channels=2048,
        hid_channels=2048,
        feat_dim=feat_dim,
        local_feat_dim=local_feat_dim,
        num_groups=num_groups,
        with_local=True,
        attn_temperature=1.0,
        position_bn='loop',
        norm_cfg=dict(type='SyncBN'),
    ),
    head=dict(
        type='GAELLEHead',
        loss=dict(
            type='GAELLELoss',
            feat_dim=feat_dim,
            local_feat_dim=local_feat_dim,
            num_prototypes=num_prototypes,
            num_local_prototypes=num_local_prototypes,
            num_crops=num_crops,
            crops_for_assign=crops_for_assign,
            temperature=0.1,
            epsilon=0.05,
            sinkhorn_iterations=3,
            sinkhorn_dtype='float32',
            with_local=True,
            with_l2g=True,
            local_shuffle=True,
            l2g_stop_grad=True,
            loss_weights=None,
        ),
    ),
)

# apex LARC(clip=False) around SGD, one parameter group (BN and biases are
# not excluded), fp16 autocast with GradScaler's dynamic loss scale.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='float16',
    loss_scale='dynamic',
    optimizer=dict(
        type='GAELLELARC',
        lr=0.6,
        momentum=0.9,
        weight_decay=1e-6,
        trust_coefficient=1e-3,
        eps=1e-8,
        clip=False,
    ),
)
max_epochs = 400
# lr_t = 6e-4 + 0.5 (0.6 - 6e-4)(1 + cos(pi t / T)) per iteration, no warmup.
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=6e-4,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True,
    )
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
# lr 0.6 is for the total batch of 128 (2 x 64), not rescaled.
auto_scale_lr = dict(enable=False, base_batch_size=128)

custom_hooks = [
    dict(
        type='GAELLEHook',
        epoch_queue_starts=7,
        queue_length=3840,
        local_queue_length=0,
        frozen_layers_cfg=dict(prototypes=5005),
        interval=1,
        crops_for_assign=crops_for_assign,
        feat_dim=feat_dim,
    )
]

# Frozen prototypes receive no gradient, so DDP must allow unused ones.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True
)
env_cfg = dict(cudnn_benchmark=True)
randomness = dict(seed=31, diff_rank_seed=False)
# The original snapshotted every 25 epochs: interval=25, max_keep_ckpts=-1.
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=1, max_keep_ckpts=3),
)
