# WSOL-SST with InceptionV3 (up to Mixed_6e, 28x28 grid) on CUB-200-2011
# (wsol_sst.md §5.2): the VGG16 CUB recipe with 8 GPUs x 8 images, lr
# backbone / cls / sos / sa = 1e-3 / 1e-2 / 5e-5 / 1e-2, RA gap 0, SOS
# thresholds 0.4 / 0.3. BN trains in training mode, without SyncBN.
_base_ = ['./wsolsst_vgg16_cub.py']

inception_pretrained = 'checkpoints/inception_v3_google-0cc3c7bd.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SSTInceptionV3',
        init_cfg=dict(type='Pretrained', checkpoint=inception_pretrained),
    ),
    cls_head=dict(in_channels=768),
    sos_head=dict(in_channels=768),
    sa=dict(embed_dims=768),
    sos_cfg=dict(fg_thr=0.4, bg_thr=0.3),
    ra_cfg=dict(gap=0.0),
)
optim_wrapper = dict(
    paramwise_cfg=dict(
        module_lr=dict(backbone=1e-3, cls_head=1e-2, sos_head=5e-5, sa=1e-2)
    )
)
train_dataloader = dict(batch_size=8)
