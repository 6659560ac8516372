# SGD with momentum, cosine decay per iteration, 100 epochs, total batch 256
# (8 GPUs x 32): SAN's ImageNet recipe (hszhao/SAN config/imagenet/*.yaml).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4),
)

param_scheduler = dict(
    type='CosineAnnealingLR',
    T_max=100,
    by_epoch=True,
    convert_to_iter_based=True,
)

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# Total batch size of the original recipe; --auto-scale-lr scales the LR by
# (world size x per-GPU batch) / base_batch_size.
auto_scale_lr = dict(base_batch_size=256, enable=False)
