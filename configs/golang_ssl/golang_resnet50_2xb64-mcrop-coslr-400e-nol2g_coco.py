# Ablation: no local-to-global prediction (global + local terms, 1/2 each).
_base_ = './golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'

model = dict(head=dict(loss=dict(with_l2g=False)))
