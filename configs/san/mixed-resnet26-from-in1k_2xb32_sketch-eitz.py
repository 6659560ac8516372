# SANMixedNet 'resnet26' on Sketch_EITZ (250 classes) with the fork's recipe
# (configs/san/_base_/mixed_2xb32.py): 50 epochs, ImageNet statistics. The
# backbone starts from the last checkpoint of mixed-resnet26_2xb128_in1k.py
# (in1k_checkpoint below); the head is new.
# FearsomeTuna/SAN config/sketch_eitz/sketch_eitz_resnet26_imgnet_weights.yaml
_base_ = [
    '../_base_/datasets/sketch_eitz.py',
    './_base_/mixed_2xb32.py',
]

in1k_checkpoint = 'work_dirs/mixed-resnet26_2xb128_in1k/epoch_50.pth'

# ImageNet statistics, as the pre-training.
data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
)

model = dict(
    backbone=dict(
        arch='resnet26',
        init_cfg=dict(
            type='Pretrained',
            checkpoint=in1k_checkpoint,
            prefix='backbone.',
        ),
    ),
    head=dict(num_classes=250),
)

train_cfg = dict(max_epochs=50)
param_scheduler = dict(T_max=50)
