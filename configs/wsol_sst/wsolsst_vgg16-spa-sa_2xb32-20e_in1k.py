# WSOL-SST VGG16, spa+sa: SPA with the edge self-attention feeding the cls head.
_base_ = ['./_base_/wsolsst_vgg16_in1k.py']

model = dict(mode='spa+sa')
# No SOS head in this mode: CAM and SCG entries only.
test_evaluator = [
    {{_base_.cam_metric}},
    {{_base_.scg_metric}},
    {{_base_.cam_wsol_metric}},
    {{_base_.scg_wsol_metric}},
]
