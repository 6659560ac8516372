# SBIR of the SAN fork (san.md §3.3; FearsomeTuna/SAN
# config/flickr/flickr_resnet26.yaml, tool/sbir_train.py): a two-branch
# SANSBIRModel (sketch / photo stems and first two stages, the last two
# stages and the embedding head shared) trained on Sketch_EITZ sketches
# paired with flickr25k photos, validated every epoch on the 250
# val_queries against the 5,000 flickr25k val photos and tested on
# Flickr15k (330 sketches against 14,501 photos: mAP, MRR, P@10).
#
# Recipe: 2 GPUs x 64 pairs, SGD lr 0.1 / momentum 0.9 / weight decay 1e-4,
# label smoothing 0.1, margin 0.7, 45 epochs:
#   phase 2 (epochs 0..34): unshared parts frozen, contrastive loss,
#     lr_e = 0.05 (1 + cos(pi e / 35));
#   phase 3 (epochs 35..44): everything trains, triplet loss, lr restarts
#     at 0.1 with fresh momentum, lr = 0.05 (1 + cos(pi (e - 35) / 10)).
# SANSBIRPhaseHook switches the phases; the upstream phase-3 optimizer bug
# (no weight ever changed in phase 3) is fixed, see its
# reproduce_triplet_optimizer_bug flag. The best checkpoint is chosen on the
# validation mAP (a held-out split; Flickr15k is never used for selection).
#
# The unshared parts start from the two `-from-in1k` classification runs
# (50 epochs; their last checkpoint, epoch_50.pth, is the reported one).
# Point the two paths in `model` at their checkpoints, or override them with
#   --cfg-options model.sketch_checkpoint=PATH model.photo_checkpoint=PATH
_base_ = [
    '../_base_/datasets/sbir_flickr.py',
    '../_base_/default_runtime.py',
]

default_scope = 'mmpretrain'
custom_imports = dict(imports=['projects.san'], allow_failed_imports=False)

contrastive_epochs = 35
total_epochs = 45

model = dict(
    type='SANSBIRModel',
    arch='resnet26',
    share=2,
    num_classes=250,
    embed_dims=1024,
    sketch_checkpoint='work_dirs/mixed-resnet26-from-in1k_2xb32_sketch-eitz/'
    'epoch_50.pth',
    photo_checkpoint='work_dirs/mixed-resnet26-from-in1k_2xb32_'
    'flickr25k-photos/epoch_50.pth',
    label_smooth=0.1,
    margin=0.7,
    contrastive_epochs=contrastive_epochs,
    total_epochs=total_epochs,
    # ImageNet statistics for both modalities (the fork's flickr YAMLs).
    data_preprocessor=dict(
        type='SANSBIRDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True,
    ),
)

load_image = {{_base_.load_image}}
sketch_train_pipeline = [
    load_image,
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.9, 1.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # Uniform +-20 degrees, nearest, no expansion, white fill.
    dict(type='SANRandomRotation', degrees=20, fill=255),
]
# Validation sketches: short side 224, long side at most 225, centre 224.
sketch_val_pipeline = [
    load_image,
    dict(type='SANResizeShortMax', short=224, max_long=225),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64, dataset=dict(sketch_pipeline=sketch_train_pipeline)
)
val_dataloader = dict(dataset=dict(pipeline=sketch_val_pipeline))
val_evaluator = dict(type='SANRetrievalMetric', topk=10)
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)
)
# Per-epoch cosine, as upstream: T_max 35 over phase 2, then (after the
# phase hook resets the lr to 0.1 at epoch 35) T_max 10 over phase 3. The
# chainable cosine of the second scheduler continues from the reset lr.
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=contrastive_epochs,
        eta_min=0,
        begin=0,
        end=contrastive_epochs,
        by_epoch=True,
        convert_to_iter_based=False,
    ),
    dict(
        type='CosineAnnealingLR',
        T_max=total_epochs - contrastive_epochs,
        eta_min=0,
        begin=contrastive_epochs,
        end=total_epochs,
        by_epoch=True,
        convert_to_iter_based=False,
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=total_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128, enable=False)

custom_hooks = [
    dict(
        type='SANSBIRPhaseHook',
        contrastive_epochs=contrastive_epochs,
        total_epochs=total_epochs,
        triplet_lr=0.1,
    ),
    # Embeds the gallery (photos) with the current weights before every
    # validation and test run.
    dict(
        type='SANGalleryHook',
        val_gallery={{_base_.val_gallery_dataloader}},
        test_gallery={{_base_.test_gallery_dataloader}},
    ),
]

# Phase 2 freezes the unshared parameters after the model is wrapped, so
# DDP must tolerate parameters without gradients.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True
)

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(
        interval=1,
        max_keep_ckpts=2,
        save_best='retrieval/mAP',
        rule='greater',
    ),
)
