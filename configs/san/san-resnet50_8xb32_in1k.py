# ResNet-50 baseline of hszhao/SAN (torchvision v1.5 bottlenecks, blocks
# (3, 4, 6, 3), ~25.6M params) on ImageNet-1k. Upstream never stated its
# baseline recipe (hszhao/SAN#16); this uses SAN's recipe
# (configs/san/_base_/san_8xb32_in1k.py).
_base_ = ['./_base_/san_8xb32_in1k.py']

model = dict(
    backbone=dict(type='SANResNet', depth=50),
)
