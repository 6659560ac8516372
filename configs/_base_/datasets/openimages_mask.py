# OpenImages30k with instance masks, wsolevaluation layout (datasets.md
# §4.3), read by WSOLMetaDataset: images and pngs under
# <DATA_ROOT>/wsol/dataset/OpenImages/{train,val,test}/<cls>/, metadata in
# <DATA_ROOT>/wsol/metadata/OpenImages/{train,val,test}/. val (2,500 masks)
# is the split to select on, test has 5,000; 100 classes.
# A synthetic copy:
#   python tools/dataset_converters/make_synthetic.py \
#       --format openimages-mask --out data --num-classes 100 \
#       --per-class 30 --val-per-class 5
# DATA_ROOT=/elsewhere moves every dataloader (default: data/).
_base_ = ['./wsol_loc_common.py']

data_root = '{{$DATA_ROOT:data}}/wsol/dataset/OpenImages/'
metadata_root = '{{$DATA_ROOT:data}}/wsol/metadata/OpenImages/'
data_preprocessor = dict(num_classes=100)

train_dataloader = dict(
    dataset=dict(
        type='WSOLMetaDataset',
        data_root=data_root,
        metadata_root=metadata_root + 'train',
        loc_type='none',  # weak supervision: labels only
    )
)
val_dataloader = dict(
    dataset=dict(
        type='WSOLMetaDataset',
        data_root=data_root,
        metadata_root=metadata_root + 'val',
        loc_type='mask',
    )
)
val_evaluator = dict(type='PxAPMetric')

test_dataloader = dict(
    dataset=dict(
        type='WSOLMetaDataset',
        data_root=data_root,
        metadata_root=metadata_root + 'test',
        loc_type='mask',
    )
)
test_evaluator = val_evaluator
