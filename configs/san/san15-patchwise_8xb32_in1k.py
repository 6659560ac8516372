# SAN15 patchwise (Zhao et al., CVPR 2020; hszhao/SAN README: ~16.2M params),
# blocks per stage (3, 2, 3, 5, 2), SA kernels (3, 7, 7, 7, 7), on ImageNet-1k
# with SAN's recipe (configs/san/_base_/san_8xb32_in1k.py).
_base_ = ['./_base_/san_8xb32_in1k.py']

model = dict(
    backbone=dict(
        type='SAN',
        sa_type='patchwise',
        layers=(3, 2, 3, 5, 2),
        kernels=(3, 7, 7, 7, 7),
    ),
)
