# mini-QuickDraw (300 classes, 240,000 / 60,000 sketches; 45 further
# classes are held out for zero-shot retrieval) in the SAN fork's txt-list
# layout (datasets.md §4.8):
#   <DATA_ROOT>/miniQuickDraw/data/<class>/<n>.jpg
#   <DATA_ROOT>/miniQuickDraw/{train,val}.txt   <path>\t<idx>
#   <DATA_ROOT>/miniQuickDraw/mapping.txt       <class_name>\t<idx>
# projects/san/data_lists/miniQuickDraw/ holds the fork's val.txt, mapping
# and zero-shot lists with paths relative to the dataset root; the fork's
# 240,000-line train.txt was absent from the repository snapshot we read:
# rebuild it as every image of the 300 mapped classes that is not in
# val.txt with make_dataset_paths.py + init_to_txt.py --classes mapping.txt
# --exclude val.txt (the commands are in init_to_txt.py's docstring).
# Alternatives to the txt lists (datasets.md §4.8), as dataloader overrides:
#   dataset=dict(type='SANInitFileDataset', data_root=data_root,
#                ann_file='train_init.pt', pipeline=train_pipeline)
#   in memory: dataset=dict(type='SANInMemoryDataset', data_root=data_root,
#       ann_file='train_imgs.pt', expected_preprocess='train',
#       pipeline=train_pipeline[1:])  (val: 'val_imgs.pt', 'val' and only
#       PackInputs, the file being resized to 256 and centre-cropped to 224)
# The fork's legacy *_imgs.pt files must first be converted with
# tools/dataset_converters/san_imgs_to_raw.py --trust-source.
# Recipe of san.md §3.1/§3.2: RandomResizedCrop 224 + flip for training,
# short side 256 + centre crop 224 for validation, pillow decoding; MNIST
# statistics (0.1307 / 0.3081, x255) on the three identical channels.
dataset_type = 'SANTxtListDataset'
data_root = '{{$DATA_ROOT:data}}/miniQuickDraw/'

data_preprocessor = dict(
    num_classes=300,
    mean=[0.1307 * 255] * 3,
    std=[0.3081 * 255] * 3,
    to_rgb=True,
)

train_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train.txt',
        classes_file='mapping.txt',
        check_path_class=True,
        pipeline=train_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='val.txt',
        classes_file='mapping.txt',
        check_path_class=True,
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))

# The fork has no separate test split: its test run reuses val.
test_dataloader = val_dataloader
test_evaluator = val_evaluator
