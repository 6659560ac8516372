# SANMixedNet 'san10_pairwise' on flickr25k photos (250 classes) with the
# fork's recipe (configs/san/_base_/mixed_2xb32.py): 100 epochs, ImageNet
# statistics.
# FearsomeTuna/SAN config/flickr25k_photos/flickr25k_photos_san10_pairwise.yaml
_base_ = [
    '../_base_/datasets/flickr25k_photos.py',
    './_base_/mixed_2xb32.py',
]

model = dict(
    backbone=dict(arch='san10_pairwise'),
    head=dict(num_classes=250),
)
