# CUB-200-2011 with boxes, original layout (datasets.md §4.1), read by CUBLoc:
#   <DATA_ROOT>/CUB_200_2011/{images/<NNN.Class>/, images.txt,
#       image_class_labels.txt, train_test_split.txt, bounding_boxes.txt,
#       classes.txt}
# TS-CAM and WGOL evaluate on the test split (val = test here; the held-out
# CUBV2 split is in cub_wsolmeta.py). A synthetic copy:
#   python tools/dataset_converters/make_synthetic.py --format cub \
#       --out data --num-classes 200 --per-class 30 --val-per-class 29
# DATA_ROOT=/elsewhere moves every dataloader (default: data/).
_base_ = ['./wsol_loc_common.py']

data_root = '{{$DATA_ROOT:data}}/CUB_200_2011/'
data_preprocessor = dict(num_classes=200)

train_dataloader = dict(
    dataset=dict(type='CUBLoc', data_root=data_root, split='train')
)
val_dataloader = dict(
    dataset=dict(type='CUBLoc', data_root=data_root, split='test')
)
val_evaluator = dict(type='MaxBoxAccMetric')

test_dataloader = val_dataloader
test_evaluator = val_evaluator
