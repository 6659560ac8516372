# WSOL-SST VGG16, spa: CE + RA on the cls map; maps CAM and SCG (the SPA baseline).
_base_ = ['./_base_/wsolsst_vgg16_cub.py']

model = dict(mode='spa')
# No SOS head in this mode: CAM and SCG entries only.
test_evaluator = [
    {{_base_.cam_metric}},
    {{_base_.scg_metric}},
    {{_base_.cam_wsol_metric}},
    {{_base_.scg_wsol_metric}},
]
