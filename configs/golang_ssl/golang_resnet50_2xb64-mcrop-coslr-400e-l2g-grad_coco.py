# Ablation: the local-to-global loss is not detached (l2g_stop_grad=False),
# so it trains the local embedding, g, h and the trunk, the apparent intent
# of the paper; the released code detached it (trains only C_x).
_base_ = './golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'

model = dict(head=dict(loss=dict(l2g_stop_grad=False)))
