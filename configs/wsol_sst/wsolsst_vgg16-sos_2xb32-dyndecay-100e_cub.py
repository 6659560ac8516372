# WSOL-SST VGG16, sos: SPA plus the SOS head trained on the SCG pseudo-mask (TC/BCE).
_base_ = ['./_base_/wsolsst_vgg16_cub.py']

model = dict(mode='sos')
