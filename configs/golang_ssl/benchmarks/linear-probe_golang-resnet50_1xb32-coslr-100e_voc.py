# Linear multi-label probe of a GOLANG ResNet-50 on PASCAL VOC-2007 (SS-PRL
# protocol, golang_ssl.md §7): the COCO probe with VOC07 trainval -> test
# (difficult-only classes ignored), 20 classes, batch 32 and lr 0.03.
_base_ = './linear-probe_golang-resnet50_1xb128-coslr-100e_coco.py'

voc_root = '{{$DATA_ROOT:data}}/VOCdevkit/VOC2007/'
num_classes = 20

data_preprocessor = dict(num_classes=num_classes)
model = dict(head=dict(num_classes=num_classes))

train_dataloader = dict(
    batch_size=32,
    dataset=dict(
        _delete_=True,
        type='VOC',
        max_refetch=0,  # never swap in another sample (datasets.md §2.1)
        data_root=voc_root,
        split='trainval',
        pipeline={{_base_.train_pipeline}},
    ),
)
val_dataloader = dict(
    batch_size=32,
    dataset=dict(
        _delete_=True,
        type='VOC',
        max_refetch=0,
        data_root=voc_root,
        split='test',
        pipeline={{_base_.test_pipeline}},
    ),
)
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=0.03))
auto_scale_lr = dict(base_batch_size=32)
