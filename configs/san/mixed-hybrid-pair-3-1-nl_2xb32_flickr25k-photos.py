# SANMixedNet 'hybrid_pair_3-1_nl' on flickr25k photos (250 classes) with the
# fork's recipe (configs/san/_base_/mixed_2xb32.py): 100 epochs, ImageNet
# statistics.
# FearsomeTuna/SAN config/flickr25k_photos/flickr25k_photos_hybrid_pair_3-1_nl.yaml
_base_ = [
    '../_base_/datasets/flickr25k_photos.py',
    './_base_/mixed_2xb32.py',
]

model = dict(
    backbone=dict(arch='hybrid_pair_3-1_nl'),
    head=dict(num_classes=250),
)
