# Ablation: explicit loss weights 1 / 0.25 / 0.25 (SS-PRL's weighting)
# instead of the released equal 1/3 each.
_base_ = './golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'

model = dict(
    head=dict(
        loss=dict(
            loss_weights=dict(_delete_=True, glb=1.0, alg=0.25, l2g=0.25)
        )
    )
)
