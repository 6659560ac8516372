# CUB in the wsolevaluation layout (datasets.md §4.3), read by
# WSOLMetaDataset: images under <DATA_ROOT>/wsol/dataset/CUB/<NNN.Class>/
# (CUB and the CUBV2 held-out images share the class folders), metadata in
# <DATA_ROOT>/wsol/metadata/CUB/{train,val,test}/. val = CUBV2 (1,000
# images, the split to select on), test = the CUB test split (5,794).
# A synthetic copy:
#   python tools/dataset_converters/make_synthetic.py --format cub \
#       --out data --num-classes 200 --per-class 30 --val-per-class 5
# DATA_ROOT=/elsewhere moves every dataloader (default: data/).
_base_ = ['./wsol_loc_common.py']

data_root = '{{$DATA_ROOT:data}}/wsol/dataset/CUB/'
metadata_root = '{{$DATA_ROOT:data}}/wsol/metadata/CUB/'
data_preprocessor = dict(num_classes=200)

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
        loc_type='box',
    )
)
val_evaluator = dict(type='MaxBoxAccMetric')

test_dataloader = dict(
    dataset=dict(
        type='WSOLMetaDataset',
        data_root=data_root,
        metadata_root=metadata_root + 'test',
        loc_type='box',
    )
)
test_evaluator = val_evaluator
