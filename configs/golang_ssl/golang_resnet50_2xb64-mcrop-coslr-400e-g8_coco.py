# Ablation: 8 local groups (M = 128 / 8 = 16 tokens per view), the original
# command-line default that the README recipe overrode with 4.
_base_ = './golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'

num_groups = 8
model = dict(neck=dict(num_groups=num_groups))
