# SANMixedNet 'nl' on mini-QuickDraw (300 classes) with the fork's recipe
# (configs/san/_base_/mixed_2xb32.py): 50 epochs, MNIST statistics.
# FearsomeTuna/SAN config/mini_quickdraw/mini_quickdraw_nl.yaml
_base_ = [
    '../_base_/datasets/mini_quickdraw.py',
    './_base_/mixed_2xb32.py',
]

model = dict(
    backbone=dict(arch='nl'),
    head=dict(num_classes=300),
)

train_cfg = dict(max_epochs=50)
param_scheduler = dict(T_max=50)
