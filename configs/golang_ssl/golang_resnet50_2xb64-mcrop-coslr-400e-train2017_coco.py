# GOLANG pre-trained on COCO-2017 train (118,287 images; the README's 65.1
# mAP row). Probing it on val2014 is optimistic: train2017 contains most of
# val2014 (golang_ssl.md §7, leakage); state both splits in tables.
_base_ = './golang_resnet50_2xb64-mcrop-coslr-400e_coco.py'

train_dataloader = dict(dataset=dict(data_prefix='train2017'))
