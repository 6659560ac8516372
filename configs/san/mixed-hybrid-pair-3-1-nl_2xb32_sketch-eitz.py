# SANMixedNet 'hybrid_pair_3-1_nl' on Sketch_EITZ (250 classes) with the fork's
# recipe (configs/san/_base_/mixed_2xb32.py): 100 epochs, MNIST statistics.
# FearsomeTuna/SAN config/sketch_eitz/sketch_eitz_hybrid_pair_3-1_nl.yaml
_base_ = [
    '../_base_/datasets/sketch_eitz.py',
    './_base_/mixed_2xb32.py',
]

model = dict(
    backbone=dict(arch='hybrid_pair_3-1_nl'),
    head=dict(num_classes=250),
)
