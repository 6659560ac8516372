# TS-CAM with DeiT-S: the model, optimizer and schedule upstream executed
# on CUB-200-2011 (tscam.md §3, §4). Dataset configs inherit this with the
# shared dataset base and change what their recipe changes.
custom_imports = dict(imports=['projects.tscam'], allow_failed_imports=False)

# Local ImageNet DeiT weights; nothing is downloaded. Override with
# --cfg-options model.backbone.init_cfg.checkpoint=PATH.
pretrained = 'checkpoints/deit_small_patch16_224-cd65a155.pth'

model = dict(
    type='TSCAMClassifier',
    backbone=dict(
        type='TSCAMDeiT',
        arch='small',
        img_size=224,
        drop_path_rate=0.1,
        attn_layers='all',
        attn_reduce='sum',
        interpolate_pos_embed=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained),
    ),
    head=dict(
        type='TSCAMHead',
        num_classes=200,
        in_channels=384,
        loc_map='coupled',
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ),
)

# AdamW; timm 0.3.2 create_optimizer's filter: no weight decay for 1-D
# parameters, biases, pos_embed and cls_token (decay not scaled by lr).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05
    ),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        bias_decay_mult=0.0,
        norm_decay_mult=0.0,
        custom_keys={
            '.pos_embed': dict(decay_mult=0.0),
            '.cls_token': dict(decay_mult=0.0),
        },
    ),
)
# No warmup. Upstream multiplies lr by 0.1 at the start of every 1-based
# epoch e with e % 30 == 0; MMEngine counts epochs from 0.
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[29, 59], gamma=0.1
)
train_cfg = dict(by_epoch=True, max_epochs=60, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128, enable=False)
