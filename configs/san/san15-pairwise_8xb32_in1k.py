# SAN15 pairwise (Zhao et al., CVPR 2020; hszhao/SAN README: ~14.1M params),
# blocks per stage (3, 2, 3, 5, 2), SA kernels (3, 7, 7, 7, 7), on ImageNet-1k
# with SAN's recipe (configs/san/_base_/san_8xb32_in1k.py).
_base_ = ['./_base_/san_8xb32_in1k.py']

model = dict(
    backbone=dict(
        type='SAN',
        sa_type='pairwise',
        layers=(3, 2, 3, 5, 2),
        kernels=(3, 7, 7, 7, 7),
    ),
)
