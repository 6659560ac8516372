# Ablation: no random permutation of the predictor's local tokens.
_base_ = './golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'

model = dict(head=dict(loss=dict(local_shuffle=False)))
