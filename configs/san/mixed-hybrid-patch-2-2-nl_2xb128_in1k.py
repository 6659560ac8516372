# SANMixedNet 'hybrid_patch_2-2_nl' on ImageNet-1k (1000 classes) with the
# fork's recipe (configs/san/_base_/mixed_2xb32.py): 50 epochs, ImageNet
# statistics. 2 GPUs x 128 images (val 64 per GPU), as the fork.
# FearsomeTuna/SAN config/imagenet/imagenet_hybrid_patch_2-2_nl.yaml
_base_ = [
    '../_base_/datasets/imagenet.py',
    './_base_/mixed_2xb32.py',
]

model = dict(
    backbone=dict(arch='hybrid_patch_2-2_nl'),
    head=dict(num_classes=1000),
)

train_cfg = dict(max_epochs=50)
param_scheduler = dict(T_max=50)

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=64)
test_dataloader = dict(batch_size=64)
auto_scale_lr = dict(base_batch_size=256)
