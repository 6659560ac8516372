# WSOL-SST VGG16, sos+sa_v3 (SPA2Net, the final model): the same SA(F5) feeds both heads
# (TC/BCE).
_base_ = ['./_base_/wsolsst_vgg16_in1k.py']

model = dict(mode='sos+sa_v3')
