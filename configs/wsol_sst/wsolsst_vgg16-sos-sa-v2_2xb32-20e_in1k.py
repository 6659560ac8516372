# WSOL-SST VGG16, sos+sa_v2: raw F5 feeds the cls head, SA(F5) the SOS head (TC/MSE;
# needs sos_start <= sa_start).
_base_ = ['./_base_/wsolsst_vgg16_in1k.py']

model = dict(mode='sos+sa_v2', sos_cfg=dict(loss='mse'))
