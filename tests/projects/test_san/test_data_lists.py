"""The fork's data lists shipped in ``projects/san/data_lists`` (san.md §5).

Each list parses with ``SANTxtListDataset`` (labels inside the mapping,
class folders named after their class where the dataset has them), holds
the published number of entries, uses relative paths only, and the SBIR
pair (Sketch_EITZ, flickr25k_photos) shares one class mapping.
"""

from __future__ import annotations

from collections import Counter

import pytest

from shared.datasets import SANTxtListDataset
from tests.conftest import REPO_ROOT

LISTS = REPO_ROOT / 'projects/san/data_lists'

#: (folder, list, mapping, entries, classes, check_path_class)
CASES = [
    ('Sketch_EITZ', 'train.txt', 'mapping.txt', 16000, 250, True),
    ('Sketch_EITZ', 'val.txt', 'mapping.txt', 4000, 250, True),
    ('Sketch_EITZ', 'val_queries.txt', 'mapping.txt', 250, 250, True),
    ('flickr25k_photos', 'train.txt', 'mapping.txt', 20000, 250, True),
    ('flickr25k_photos', 'val.txt', 'mapping.txt', 5000, 250, True),
    ('Flickr15k/photos', 'test.txt', 'mapping.txt', 14501, 33, False),
    ('Flickr15k/sketches', 'test.txt', 'mapping.txt', 330, 33, False),
    ('miniQuickDraw', 'val.txt', 'mapping.txt', 60000, 300, True),
    (
        'miniQuickDraw',
        'zeroshot_catalog.txt',
        'mapping_zeroshot.txt',
        22500,
        45,
        True,
    ),
    (
        'miniQuickDraw',
        'zeroshot_queries.txt',
        'mapping_zeroshot.txt',
        2250,
        45,
        True,
    ),
]


def _load(folder: str, ann: str, mapping: str, check: bool):
    return SANTxtListDataset(
        data_root=str(LISTS / folder),
        ann_file=ann,
        classes_file=mapping,
        check_path_class=check,
    )


@pytest.mark.parametrize(
    'folder,ann,mapping,entries,classes,check',
    CASES,
    ids=[f'{c[0]}/{c[1]}' for c in CASES],
)
def test_list_parses_with_published_size(
    folder, ann, mapping, entries, classes, check
):
    ds = _load(folder, ann, mapping, check)
    assert len(ds) == entries
    assert len(ds.metainfo['classes']) == classes
    raw = [ds.get_data_info(i)['img_id'] for i in range(len(ds))]
    assert not [p for p in raw if p.startswith('/') or '\\' in p]
    assert len(set(raw)) == entries, 'duplicate paths'
    root = str(LISTS / folder) + '/'
    assert all(
        ds.get_data_info(i)['img_path'].startswith(root) for i in (0, -1)
    )


def test_every_class_is_present_in_queries_and_splits():
    # 250 val_queries: one sketch per class; the val split is random and
    # unstratified as committed, yet covers every class.
    queries = _load('Sketch_EITZ', 'val_queries.txt', 'mapping.txt', True)
    counts = Counter(
        queries.get_data_info(i)['gt_label'] for i in range(len(queries))
    )
    assert sorted(counts) == list(range(250))
    assert set(counts.values()) == {1}
    for folder in ('Sketch_EITZ', 'flickr25k_photos'):
        splits = [
            _load(folder, a, 'mapping.txt', True)
            for a in ('train.txt', 'val.txt')
        ]
        paths = []
        for ds in splits:
            labels = {ds.get_data_info(i)['gt_label'] for i in range(len(ds))}
            assert labels == set(range(250)), folder
            paths.append(
                {ds.get_data_info(i)['img_id'] for i in range(len(ds))}
            )
        assert not paths[0] & paths[1], f'{folder}: train and val overlap'


def test_sbir_sketch_and_photo_mappings_agree():
    sketches = _load('Sketch_EITZ', 'val_queries.txt', 'mapping.txt', True)
    photos = _load('flickr25k_photos', 'val.txt', 'mapping.txt', True)
    assert sketches.metainfo['classes'] == photos.metainfo['classes']
    f15_s = _load('Flickr15k/sketches', 'test.txt', 'mapping.txt', False)
    f15_p = _load('Flickr15k/photos', 'test.txt', 'mapping.txt', False)
    assert f15_s.metainfo['classes'] == f15_p.metainfo['classes']
    assert f15_s.metainfo['classes'] == tuple(str(i) for i in range(33))


def test_zero_shot_classes_are_unseen_in_training():
    train = _load('miniQuickDraw', 'val.txt', 'mapping.txt', True)
    zs = _load(
        'miniQuickDraw', 'zeroshot_queries.txt', 'mapping_zeroshot.txt', True
    )
    assert not set(train.metainfo['classes']) & set(zs.metainfo['classes'])
    catalog = _load(
        'miniQuickDraw', 'zeroshot_catalog.txt', 'mapping_zeroshot.txt', True
    )
    overlap = {catalog.get_data_info(i)['img_id'] for i in range(len(catalog))}
    overlap &= {zs.get_data_info(i)['img_id'] for i in range(len(zs))}
    assert not overlap, 'a query image is also in the catalog'


def test_val_queries_are_drawn_from_val():
    def paths(ann):
        ds = _load('Sketch_EITZ', ann, 'mapping.txt', True)
        return {ds.get_data_info(i)['img_id'] for i in range(len(ds))}

    queries = paths('val_queries.txt')
    assert queries <= paths('val.txt')
    assert not queries & paths('train.txt')
