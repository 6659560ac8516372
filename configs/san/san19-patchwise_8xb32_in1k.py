# SAN19 patchwise (Zhao et al., CVPR 2020; hszhao/SAN README: ~20.5M params),
# blocks per stage (3, 3, 4, 6, 3), SA kernels (3, 7, 7, 7, 7), on ImageNet-1k
# with SAN's recipe (configs/san/_base_/san_8xb32_in1k.py).
_base_ = ['./_base_/san_8xb32_in1k.py']

model = dict(
    backbone=dict(
        type='SAN',
        sa_type='patchwise',
        layers=(3, 3, 4, 6, 3),
        kernels=(3, 7, 7, 7, 7),
    ),
)
