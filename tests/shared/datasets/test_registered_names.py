"""Every name of datasets.md §1 is registered once, by shared.datasets, and
none shadows an mmpretrain, mmcv or mmengine name (§8 item 10).

A duplicate inside mmpretrain's registry would already fail at import
(``register_module`` without ``force``), so shadowing can only happen
against the root registries that hold mmcv's and mmengine's names."""

from __future__ import annotations

from tests.test_registry import run

DATASET_NAMES = [
    'CUBLoc',
    'ImageNetLoc',
    'WSOLMetaDataset',
    'WSOLListDataset',
    'COCOMultiLabel',
    'VOCClassList',
    'SANTxtListDataset',
    'SANInitFileDataset',
    'SANInMemoryDataset',
    'SANSBIRDataset',
]
TRANSFORM_NAMES = [
    'LoadLocAnnotations',
    'LocResize',
    'LocRandomCrop',
    'LocCenterCrop',
    'LocRandomFlip',
    'LocRandomResizedCrop',
    'PackLocInputs',
    'PackPairInputs',
]
REUSED = {'DATASETS': ['CUB', 'ImageNet', 'VOC', 'CustomDataset']}


def test_names_registered_by_shared_and_not_shadowing():
    proc = run(f"""
        from shared.utils.compat import apply_patches
        apply_patches()
        from mmpretrain.utils import register_all_modules
        register_all_modules(init_default_scope=False)
        import mmcv.transforms  # noqa: F401 - mmcv's names in the root
        import mmengine.registry as root
        import mmpretrain.registry as mp
        root_names = {{n: set(getattr(root, n)._module_dict)
                      for n in ('DATASETS', 'TRANSFORMS')}}
        import shared.datasets  # noqa: F401
        for reg, names in (('DATASETS', {DATASET_NAMES!r}),
                           ('TRANSFORMS', {TRANSFORM_NAMES!r})):
            registry = getattr(mp, reg)
            for name in names:
                assert name not in root_names[reg], (reg, name, 'root')
                obj = registry.get(name)
                assert obj is not None, (reg, name)
                assert obj.__module__.startswith('shared.datasets.'), (
                    reg, name, obj.__module__)
        for name in {REUSED['DATASETS']!r}:
            assert mp.DATASETS.get(name).__module__.startswith(
                'mmpretrain.'), name
        from shared.datasets import CUBLoc
        from mmpretrain.datasets import CUB
        assert issubclass(CUBLoc, CUB)
        print('names ok')
        """)
    assert 'names ok' in proc.stdout
