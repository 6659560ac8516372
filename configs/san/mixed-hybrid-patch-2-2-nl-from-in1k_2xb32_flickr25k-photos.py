# SANMixedNet 'hybrid_patch_2-2_nl' on flickr25k photos (250 classes) with the
# fork's recipe (configs/san/_base_/mixed_2xb32.py): 50 epochs, ImageNet
# statistics. The backbone starts from the last checkpoint of
# mixed-hybrid-patch-2-2-nl_2xb128_in1k.py (in1k_checkpoint below); the head is
# new.
# FearsomeTuna/SAN config/flickr25k_photos/flickr25k_photos_hybrid_patch_2-2_nl_imgnet_weights.yaml
_base_ = [
    '../_base_/datasets/flickr25k_photos.py',
    './_base_/mixed_2xb32.py',
]

in1k_checkpoint = (
    'work_dirs/mixed-hybrid-patch-2-2-nl_2xb128_in1k/epoch_50.pth'
)

model = dict(
    backbone=dict(
        arch='hybrid_patch_2-2_nl',
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
