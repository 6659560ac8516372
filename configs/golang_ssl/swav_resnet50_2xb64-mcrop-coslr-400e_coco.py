# Plain SwAV on COCO-2014 with the GOLANG recipe (the ablation without the
# local branch and the local-to-global term): exactly SwAV, with the
# Sinkhorn-Knopp all-reduced over ranks as the original (unlike
# mmpretrain 1.2.0's SwAVLoss). Equal weights over one term = weight 1.
_base_ = './golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'

model = dict(
    neck=dict(with_local=False),
    head=dict(loss=dict(with_local=False, with_l2g=False)),
)
