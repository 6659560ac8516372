# `make demo`: a micro ResNet-18 trained for 5 epochs on the synthetic
# ImageFolder set (4 classes), on CPU in well under a minute.
_base_ = [
    '../_base_/models/resnet18-micro.py',
    '../_base_/datasets/synthetic_imagefolder.py',
    '../_base_/schedules/sgd-coslr-100e_8xb32.py',
    '../_base_/default_runtime.py',
]

custom_imports = dict(imports=['shared'], allow_failed_imports=False)

optim_wrapper = dict(optimizer=dict(lr=0.05, weight_decay=5e-4))
param_scheduler = dict(T_max=5)
train_cfg = dict(max_epochs=5)
auto_scale_lr = dict(base_batch_size=16)

default_hooks = dict(logger=dict(interval=4))
randomness = dict(seed=0, deterministic=True)
