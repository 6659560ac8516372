# Ablation (not faithful): the per-position scores fold the 49 positions
# into the batch of one g call (one BN statistic and running-stat update)
# instead of the original's 49 separate calls.
_base_ = './golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'

model = dict(neck=dict(position_bn='flatten'))
