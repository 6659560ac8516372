# SANMixedNet 'hybrid_nl_3-1' on Sketch_EITZ (250 classes) with the fork's
# recipe (configs/san/_base_/mixed_2xb32.py): 100 epochs, MNIST statistics.
# FearsomeTuna/SAN config/sketch_eitz/sketch_eitz_hybrid_nl_3-1.yaml
_base_ = [
    '../_base_/datasets/sketch_eitz.py',
    './_base_/mixed_2xb32.py',
]

model = dict(
    backbone=dict(arch='hybrid_nl_3-1'),
    head=dict(num_classes=250),
)
