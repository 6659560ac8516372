# WSOL-SST InceptionV3, sos+sa_v3 (SPA2Net) on CUB-200-2011: the
# InceptionV3 CUB base as it is (its mode is sos+sa_v3).
_base_ = ['./_base_/wsolsst_inception-v3_cub.py']

model = dict(mode='sos+sa_v3')
