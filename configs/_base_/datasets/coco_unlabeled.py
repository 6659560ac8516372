# Unlabelled COCO images for GOLANG self-supervised pre-training
# (datasets.md §4.7): every image of coco/train2014/ (82,783; 118,287 for
# train2017, set data_prefix='train2017'). Unlike SS-PRL, train2014 is NOT
# moved under a dummy class folder; CustomDataset(with_label=False) scans it.
#
# Layout under data_root (DATA_ROOT=/your/data moves it; default data/coco/):
#   train2014/COCO_train2014_<12 digits>.jpg
#
# Synthetic copy (the coco format writes train2014/ too):
#   python tools/dataset_converters/make_synthetic.py --format coco \
#       --out data --num-classes 8 --per-class 16 --size-range 160 320
dataset_type = 'CustomDataset'
data_root = '{{$DATA_ROOT:data}}/coco/'

train_pipeline = [
    # PIL decoding without EXIF rotation, as the originals (datasets.md §2.2).
    dict(
        type='LoadImageFromFile',
        imdecode_backend='pillow',
        color_type='color_ignore_orientation',
    ),
    # Placeholder: the multi-crop MultiView pipeline (golang_ssl.md §3)
    # belongs to the projects/golang_ssl configs, which replace this list.
    dict(type='PackInputs'),
]

# golang_ssl.md §3: 64 per GPU, 10 workers, shuffled, default_collate and
# drop_last=True (the queue needs full batches).
train_dataloader = dict(
    batch_size=64,
    num_workers=10,
    drop_last=True,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        max_refetch=0,  # never swap in another sample (datasets.md §2.1)
        data_root=data_root,
        data_prefix='train2014',
        with_label=False,
        pipeline=train_pipeline,
    ),
)
