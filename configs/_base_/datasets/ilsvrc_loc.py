# ILSVRC-2012 (datasets.md §4.2): training with mmpretrain ImageNet on
# <DATA_ROOT>/ILSVRC2012/train/<wnid>/ (meta/train.txt when present),
# evaluation with ImageNetLoc on val/ (flat or val/<wnid>/, detected) and
# the ILSVRC2012_bbox_val_v3 XMLs in bbox_val/. For TS-CAM's list instead
# set ann_format='tscam_list' (ann_file='ILSVRC2012_list/val_folder_new.txt').
# Class order: synsets.txt when present, else the sorted train/ folders.
# A synthetic copy:
#   python tools/dataset_converters/make_synthetic.py --format imagenet-loc \
#       --out data --num-classes 10 --per-class 20 --val-per-class 5
# DATA_ROOT=/elsewhere moves every dataloader (default: data/).
_base_ = ['./wsol_loc_common.py']

data_root = '{{$DATA_ROOT:data}}/ILSVRC2012/'
data_preprocessor = dict(num_classes=1000)

train_dataloader = dict(
    dataset=dict(
        type='ImageNet', data_root=data_root, split='train', max_refetch=0
    )
)
val_dataloader = dict(
    dataset=dict(
        type='ImageNetLoc',
        data_root=data_root,
        ann_format='xml',
        ann_dir='bbox_val',
        val_layout='auto',
    )
)
val_evaluator = dict(type='MaxBoxAccMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
