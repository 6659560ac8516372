# ResNet-38 baseline of hszhao/SAN (torchvision v1.5 bottlenecks, blocks
# (2, 3, 5, 2), ~19.6M params) on ImageNet-1k. Upstream never stated its
# baseline recipe (hszhao/SAN#16); this uses SAN's recipe
# (configs/san/_base_/san_8xb32_in1k.py).
_base_ = ['./_base_/san_8xb32_in1k.py']

model = dict(
    backbone=dict(type='SANResNet', depth=38),
)
