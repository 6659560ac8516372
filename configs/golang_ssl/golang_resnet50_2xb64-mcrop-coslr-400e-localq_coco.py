# Ablation: a local queue of 65,536 token embeddings (a multiple of
# M x B x W = 32 x 64 x 2 = 4096), scored with the local prototypes (the
# original scored it with the global ones; fixed, golang_ssl.md §4.5).
_base_ = './golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'

custom_hooks = [
    dict(
        type='GAELLEHook',
        epoch_queue_starts=7,
        queue_length=3840,
        local_queue_length=65536,
        frozen_layers_cfg=dict(prototypes=5005),
        interval=1,
        crops_for_assign={{_base_.crops_for_assign}},
        feat_dim={{_base_.feat_dim}},
    )
]
