# WSOL-SST VGG16, sos+sa_v1: SA(F5) feeds the cls head, raw F5 the SOS head (TC/MSE).
_base_ = ['./_base_/wsolsst_vgg16_cub.py']

model = dict(mode='sos+sa_v1', sos_cfg=dict(loss='mse'))
