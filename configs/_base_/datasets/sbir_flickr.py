# SBIR data of the SAN fork (san.md §3.3, datasets.md §4.9):
#   train: Sketch_EITZ train sketches paired with flickr25k train photos
#          (SANSBIRDataset: pairs in the contrastive phase, triplets after
#          the SBIR phase hook switches the mode);
#   val:   the 250 Sketch_EITZ val_queries against the 5,000 flickr25k val
#          photos (the gallery, val_gallery_dataloader);
#   test:  Flickr15k, 330 sketch queries against 14,501 photos
#          (test_gallery_dataloader). Flickr15k classes are named 0..32 and
#          its sketch folders are 1-based, so check_path_class stays off.
# Layouts (txt lists <path>\t<idx> + mapping.txt <class_name>\t<idx>; the
# fork's lists ship in projects/san/data_lists/<same folder names>, paths
# relative to each folder: copy them into <DATA_ROOT>):
#   <DATA_ROOT>/Sketch_EITZ/{train,val_queries}.txt
#   <DATA_ROOT>/flickr25k_photos/{train,val}.txt   (class names and indices
#       must equal Sketch_EITZ's; the fork's README warns that Flickr25k
#       names may need renaming)
#   <DATA_ROOT>/Flickr15k/{sketches,photos}/test.txt
#       (images in Flickr15k/photos/images/<name>/<n>.jpg and
#       Flickr15k/sketches/<1..33>/<n>.png)
# ImageNet statistics for both modalities; projects/san's SBIR configs set
# the model's SANSBIRDataPreprocessor, val_evaluator / test_evaluator
# (SANRetrievalMetric with the gallery dataloaders below) and add the
# SAN-only transforms: SANRandomRotation(20, fill 255) after the sketch flip
# and SANResizeShortMax(224, 225) instead of the sketch ResizeEdge below.
sketch_root = '{{$DATA_ROOT:data}}/Sketch_EITZ/'
photo_root = '{{$DATA_ROOT:data}}/flickr25k_photos/'
flickr15k_root = '{{$DATA_ROOT:data}}/Flickr15k/'

data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

load_image = dict(
    type='LoadImageFromFile',
    imdecode_backend='pillow',
    color_type='color_ignore_orientation',
)

sketch_train_pipeline = [
    load_image,
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.9, 1.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]
photo_train_pipeline = [
    load_image,
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.7, 1.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
]

sketch_val_pipeline = [
    load_image,
    dict(
        type='ResizeEdge',
        scale=224,
        edge='short',
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_pipeline = [
    load_image,
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
    batch_size=64,
    num_workers=4,
    # The phase hook changes the dataset's mode and epoch between epochs,
    # which persistent workers would not see.
    persistent_workers=False,
    dataset=dict(
        type='SANSBIRDataset',
        sketch_dataset=dict(
            type='SANTxtListDataset',
            data_root=sketch_root,
            ann_file='train.txt',
            check_path_class=True,
        ),
        photo_dataset=dict(
            type='SANTxtListDataset',
            data_root=photo_root,
            ann_file='train.txt',
            check_path_class=True,
        ),
        sketch_pipeline=sketch_train_pipeline,
        photo_pipeline=photo_train_pipeline,
        pipeline=[dict(type='PackPairInputs')],
        mode='pair',
    ),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type='SANTxtListDataset',
        data_root=sketch_root,
        ann_file='val_queries.txt',
        check_path_class=True,
        pipeline=sketch_val_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_gallery_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type='SANTxtListDataset',
        data_root=photo_root,
        ann_file='val.txt',
        check_path_class=True,
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)

test_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type='SANTxtListDataset',
        data_root=flickr15k_root + 'sketches/',
        ann_file='test.txt',
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_gallery_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type='SANTxtListDataset',
        data_root=flickr15k_root + 'photos/',
        ann_file='test.txt',
        pipeline=test_pipeline,
    ),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
