# Zero-shot sketch-to-sketch retrieval of the SAN fork (san.md §3.4;
# FearsomeTuna/SAN tool/monomodal_zeroshot_test.py): the hybrid patchwise
# 2-2 NL network trained on the 300 miniQuickDraw classes
# (mixed-hybrid-patch-2-2-nl_2xb32_mini-quickdraw.py) embeds sketches of 45
# unseen classes by its pooled last-stage feature (2048-d); the 2,250 query
# sketches are ranked against the 22,500-sketch catalog by cosine
# similarity. Reports mAP, MRR and P@10 (SANRetrievalMetric). Evaluation
# only:
#   python tools/test.py THIS_CONFIG \
#       work_dirs/mixed-hybrid-patch-2-2-nl_2xb32_mini-quickdraw/CKPT.pth
# The checkpoint's backbone.* keys load into the retriever; its
# classification head is not used.
# Layout (txt lists <path>\t<idx>; the fork's lists ship in
# projects/san/data_lists/miniQuickDraw with paths relative to the folder):
#   <DATA_ROOT>/miniQuickDraw/data/<class>/<name>.jpg
#   <DATA_ROOT>/miniQuickDraw/{zeroshot_queries,zeroshot_catalog}.txt
#   <DATA_ROOT>/miniQuickDraw/mapping_zeroshot.txt
# Test transform as the fork's: short side 256, centre 224; MNIST
# statistics (0.1307 / 0.3081, x255) on the three identical channels.
_base_ = ['../_base_/default_runtime.py']

default_scope = 'mmpretrain'
custom_imports = dict(imports=['projects.san'], allow_failed_imports=False)

data_root = '{{$DATA_ROOT:data}}/miniQuickDraw/'

model = dict(
    type='SANEmbeddingRetriever',
    backbone=dict(type='SANMixedNet', arch='hybrid_patch_2-2_nl'),
    data_preprocessor=dict(
        type='SANSBIRDataPreprocessor',
        mean=[0.1307 * 255] * 3,
        std=[0.3081 * 255] * 3,
        to_rgb=True,
    ),
)

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


def _zeroshot_loader(ann_file):
    return dict(
        batch_size=32,
        num_workers=4,
        dataset=dict(
            type='SANTxtListDataset',
            data_root=data_root,
            ann_file=ann_file,
            classes_file='mapping_zeroshot.txt',
            check_path_class=True,
            pipeline=test_pipeline,
        ),
        sampler=dict(type='DefaultSampler', shuffle=False),
    )


test_dataloader = _zeroshot_loader('zeroshot_queries.txt')
test_gallery_dataloader = _zeroshot_loader('zeroshot_catalog.txt')
del _zeroshot_loader
test_evaluator = dict(type='SANRetrievalMetric', topk=10)
test_cfg = dict()

# The catalog holds sketches too: embed it as the queries are embedded.
custom_hooks = [
    dict(
        type='SANGalleryHook',
        test_gallery=test_gallery_dataloader,
        modality='sketch',
    )
]
