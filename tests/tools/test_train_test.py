"""tools/train.py and tools/test.py end to end on CPU with synthetic data."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from shared.utils.checkpoint import safe_load, save_state_dict
from shared.utils.entrypoint import ConfigError, load_config
from tests.conftest import REPO_ROOT, load_tool, run_tool

CFG = 'configs/demo/resnet18-micro_1xb16-5e_synthetic-imagefolder.py'
FAST = ['default_hooks.logger.interval=1']


def train(work_dir, *extra, env=None, check=True):
    return run_tool(
        ['tools/train.py', CFG, '--work-dir', str(work_dir), *extra],
        env=env,
        check=check,
    )


@pytest.fixture(scope='module')
def trained(synthetic_root, tmp_path_factory):
    """A 3-epoch run with --auto-scale-lr and persistent workers asked for."""
    work = tmp_path_factory.mktemp('train')
    proc = train(
        work,
        '--auto-scale-lr',
        '--cfg-options',
        'train_cfg.max_epochs=3',
        'train_dataloader.persistent_workers=True',
        *FAST,
        env={'DATA_ROOT': str(synthetic_root)},
    )
    return work, proc.output


def test_training_writes_checkpoints_and_config(trained):
    work, log = trained
    for epoch in (1, 2, 3):
        assert (work / f'epoch_{epoch}.pth').is_file()
    last = (work / 'last_checkpoint').read_text().strip()
    assert last.endswith('epoch_3.pth')
    dumped = work / Path(CFG).name
    assert dumped.is_file()
    assert 'compat patches applied: ' in log
    # --auto-scale-lr: 1 process x 16 / base 16 = ratio 1, logged by mmengine
    assert 'LR is set based on batch size of 16' in log
    assert 'Scaling the original LR by 1.0' in log
    ckpt = safe_load(work / 'epoch_3.pth')
    assert ckpt['meta']['world_size'] == 1
    assert ckpt['meta']['epoch'] == 3


def test_resume_equals_uninterrupted(trained, synthetic_root, tmp_path):
    """Resume from epoch 1 of the 3-epoch run: same final weights."""
    work, _ = trained
    resumed = tmp_path / 'resumed'
    resumed.mkdir()
    (resumed / 'epoch_1.pth').write_bytes((work / 'epoch_1.pth').read_bytes())
    proc = train(
        resumed,
        '--resume',
        str(resumed / 'epoch_1.pth'),
        '--cfg-options',
        'train_cfg.max_epochs=3',
        *FAST,
        env={'DATA_ROOT': str(synthetic_root)},
    )
    assert 'resumed epoch: 1' in proc.output
    a = safe_load(work / 'epoch_3.pth')['state_dict']
    b = safe_load(resumed / 'epoch_3.pth')['state_dict']
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_auto_and_changed_schedule_warning(
    trained, synthetic_root, tmp_path
):
    work, _ = trained
    fresh = train(
        tmp_path / 'empty',
        '--resume',
        '--cfg-options',
        'train_cfg.max_epochs=1',
        env={'DATA_ROOT': str(synthetic_root)},
    )
    assert 'no checkpoint in' in fresh.output
    assert 'starting a fresh run' in fresh.output
    cont = tmp_path / 'cont'
    cont.mkdir()
    (cont / 'epoch_3.pth').write_bytes((work / 'epoch_3.pth').read_bytes())
    (cont / 'last_checkpoint').write_text(str(cont / 'epoch_3.pth'))
    proc = train(
        cont,
        '--resume',
        'auto',
        '--cfg-options',
        'train_cfg.max_epochs=4',
        'optim_wrapper.optimizer.lr=0.01',
        env={'DATA_ROOT': str(synthetic_root)},
    )
    assert 'changed schedule' in proc.output
    assert 'train_cfg.max_epochs: 3 -> 4' in proc.output
    assert 'optim_wrapper.optimizer.lr: 0.05 -> 0.01' in proc.output
    assert (cont / 'epoch_4.pth').is_file()


def test_test_tool_outputs(trained, synthetic_root, tmp_path):
    work, _ = trained
    env = {'DATA_ROOT': str(synthetic_root)}
    ckpt = str(work / 'epoch_3.pth')
    dumped = str(work / Path(CFG).name)
    metrics = tmp_path / 'metrics.json'
    proc = run_tool(
        [
            'tools/test.py',
            dumped,
            ckpt,
            '--work-dir',
            str(tmp_path / 'w'),
            '--out',
            str(metrics),
        ],
        env=env,
    )
    assert 'accuracy/top1' in proc.stdout
    values = json.loads(metrics.read_text())
    assert 0 <= values['accuracy/top1'] <= 100
    preds = tmp_path / 'preds.pkl'
    show = tmp_path / 'show'
    run_tool(
        [
            'tools/test.py',
            CFG,
            ckpt,
            '--work-dir',
            str(tmp_path / 'w'),
            '--out',
            str(preds),
            '--show-dir',
            str(show),
        ],
        env=env,
    )
    with open(preds, 'rb') as f:
        # Our own output, written by DumpResults a line above.
        samples = pickle.load(f)  # noqa: S301
    assert len(samples) == 12  # 4 classes x 3 validation images
    assert {'pred_score', 'gt_label'} <= set(samples[0])
    images = list(show.rglob('*.png')) + list(show.rglob('*.jpg'))
    # mmpretrain's VisualizationHook names files by image basename.
    assert len(images) == len({Path(s['img_path']).name for s in samples})


@pytest.mark.parametrize(
    'where', ['load_from', 'resume', 'pretrained', 'test']
)
def test_malicious_checkpoint_entry_points(where, synthetic_root, tmp_path):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    from tests.shared.utils.test_checkpoint import write_malicious

    write_malicious(evil, marker, legacy=False)
    env = {'DATA_ROOT': str(synthetic_root)}
    common = [
        '--work-dir',
        str(tmp_path / 'w'),
        '--cfg-options',
        'train_cfg.max_epochs=1',
    ]
    if where == 'load_from':
        proc = train(
            tmp_path / 'w',
            '--cfg-options',
            f'load_from={evil}',
            env=env,
            check=False,
        )
    elif where == 'resume':
        proc = train(
            tmp_path / 'w', '--resume', str(evil), env=env, check=False
        )
    elif where == 'pretrained':
        proc = run_tool(
            [
                'tools/train.py',
                CFG,
                *common,
                'model.backbone.init_cfg.type=Pretrained',
                f'model.backbone.init_cfg.checkpoint={evil}',
            ],
            env=env,
            check=False,
        )
    else:
        proc = run_tool(
            [
                'tools/test.py',
                CFG,
                str(evil),
                '--work-dir',
                str(tmp_path / 'w'),
            ],
            env=env,
            check=False,
        )
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.output
    assert 'posix.system' in proc.output
    assert not marker.exists()


def test_resume_never_evaluates_stored_config_text(
    trained, synthetic_root, tmp_path
):
    """A checkpoint's meta.cfg is text; resuming must not execute it."""
    work, _ = trained
    marker = tmp_path / 'pwned'
    ckpt = safe_load(work / 'epoch_1.pth')
    ckpt['meta']['cfg'] = f"open({str(marker)!r}, 'w').close()\n"
    ckpt['meta'].pop('schedule', None)
    evil = tmp_path / 'w' / 'epoch_1.pth'
    save_state_dict(ckpt, str(evil))
    train(
        tmp_path / 'w',
        '--resume',
        str(evil),
        '--cfg-options',
        'train_cfg.max_epochs=2',
        env={'DATA_ROOT': str(synthetic_root)},
    )
    assert not marker.exists()


def test_load_from_published_weights_keeps_seed(
    trained, synthetic_root, tmp_path
):
    """load_from takes weights only: RNG state is not restored from it."""
    work, _ = trained
    run_tool(
        [
            'tools/model_converters/publish_model.py',
            str(work / 'epoch_3.pth'),
            str(tmp_path / 'pub'),
            '--name',
            'demo',
        ]
    )
    published = next((tmp_path / 'pub').glob('demo_*.pth'))
    finals = []
    for seed in (1, 2):
        out = tmp_path / f'seed{seed}'
        train(
            out,
            '--cfg-options',
            f'load_from={published}',
            'train_cfg.max_epochs=1',
            f'randomness.seed={seed}',
            env={'DATA_ROOT': str(synthetic_root)},
        )
        finals.append(safe_load(out / 'epoch_1.pth')['state_dict'])
    assert any(not torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


# -- errors raised before any Runner is built (in-process) -------------------
@pytest.fixture(scope='module')
def train_tool():
    return load_tool('tools/train.py')


@pytest.fixture(scope='module')
def test_tool():
    return load_tool('tools/test.py')


def test_amp_without_gpu(train_tool, test_tool, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('a CUDA GPU is visible')
    with pytest.raises(ConfigError, match='--amp needs a CUDA GPU; none is'):
        train_tool.main([CFG, '--amp', '--work-dir', str(tmp_path)])
    ckpt = tmp_path / 'w.pth'
    torch.save({}, ckpt)
    with pytest.raises(ConfigError, match='--amp needs a CUDA GPU'):
        test_tool.main([CFG, str(ckpt), '--amp', '--work-dir', str(tmp_path)])
    with pytest.raises(ConfigError, match='optim_wrapper.type'):
        train_tool.main(
            [
                CFG,
                '--work-dir',
                str(tmp_path),
                '--cfg-options',
                'optim_wrapper.type=AmpOptimWrapper',
            ]
        )


def test_missing_checkpoints(train_tool, test_tool, tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        train_tool.main([CFG, '--resume', str(tmp_path / 'nope.pth')])
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        test_tool.main([CFG, str(tmp_path / 'nope.pth')])


def test_auto_scale_lr_needs_base_batch(train_tool, tmp_path):
    with pytest.raises(ConfigError, match='auto_scale_lr.base_batch_size'):
        train_tool.main(
            [
                CFG,
                '--auto-scale-lr',
                '--work-dir',
                str(tmp_path),
                '--cfg-options',
                'auto_scale_lr.base_batch_size=None',
            ]
        )


def test_test_tool_output_and_display_errors(test_tool, tmp_path, monkeypatch):
    ckpt = tmp_path / 'w.pth'
    torch.save({}, ckpt)
    with pytest.raises(ConfigError, match=r'allowed: \.json, \.yaml'):
        test_tool.main([CFG, str(ckpt), '--out', str(tmp_path / 'x.txt')])
    with pytest.raises(ConfigError, match='--out-item needs --out'):
        test_tool.main([CFG, str(ckpt), '--out-item', 'metrics'])
    monkeypatch.delenv('DISPLAY', raising=False)
    with pytest.raises(ConfigError, match='use --show-dir'):
        test_tool.main([CFG, str(ckpt), '--show'])
    with pytest.raises(ConfigError, match='default_hooks.visualization'):
        test_tool.main(
            [
                CFG,
                str(ckpt),
                '--show-dir',
                str(tmp_path),
                '--cfg-options',
                'default_hooks.visualization=None',
            ]
        )


def test_unregistered_type_message(
    train_tool, synthetic_root, tmp_path, monkeypatch
):
    monkeypatch.setenv('DATA_ROOT', str(synthetic_root))
    with pytest.raises(KeyError) as err:
        train_tool.main(
            [
                CFG,
                '--work-dir',
                str(tmp_path),
                '--cfg-options',
                'model.backbone.type=NoSuchNet',
            ]
        )
    msg = str(err.value)
    assert 'NoSuchNet is not registered' in msg
    assert "'mmpretrain'" in msg and 'shared/__init__.py' in msg


def test_plugin_import_failure_and_allow_failed(tmp_path):
    base = f"_base_ = ['{REPO_ROOT / CFG}']\n"
    bad = tmp_path / 'bad.py'
    bad.write_text(
        base + "custom_imports = dict(imports=['projects.nope'], "
        'allow_failed_imports=False)\n'
    )
    with pytest.raises(ImportError, match='projects.nope'):
        load_config(str(bad))
    hiding = tmp_path / 'hiding.py'
    hiding.write_text(
        base + "custom_imports = dict(imports=['shared'], "
        'allow_failed_imports=True)\n'
    )
    with pytest.raises(ConfigError, match='allow_failed_imports=True'):
        load_config(str(hiding))


def test_work_dir_precedence_and_cfg_options(train_tool, tmp_path):
    cfg = load_config(str(REPO_ROOT / CFG))
    args = train_tool.parse_args([CFG])
    train_tool.merge_args(cfg, args)
    assert cfg.work_dir == 'work_dirs/' + Path(CFG).stem
    cfg = load_config(str(REPO_ROOT / CFG))
    cfg.work_dir = 'from_config'
    train_tool.merge_args(cfg, train_tool.parse_args([CFG]))
    assert cfg.work_dir == 'from_config'
    train_tool.merge_args(
        cfg,
        train_tool.parse_args(
            [
                CFG,
                '--work-dir',
                'cli',
                '--cfg-options',
                'train_dataloader.dataset.pipeline.1.scale=48',
                'optim_wrapper.optimizer._delete_=True',
                'optim_wrapper.optimizer.type=Adam',
                'optim_wrapper.optimizer.lr=0.001',
            ]
        ),
    )
    assert cfg.work_dir == 'cli'
    assert cfg.train_dataloader.dataset.pipeline[1].scale == 48
    assert cfg.train_dataloader.dataset.pipeline[2].type == 'RandomFlip'
    assert dict(cfg.optim_wrapper.optimizer) == dict(type='Adam', lr=0.001)
    # persistent workers are switched off without workers
    assert cfg.train_dataloader.persistent_workers is False


TOOLS = sorted(
    str(p.relative_to(REPO_ROOT))
    for p in (REPO_ROOT / 'tools').rglob('*.py')
    if not p.name.startswith('_')
)


@pytest.mark.parametrize('tool', TOOLS)
def test_help(tool):
    proc = run_tool([tool, '--help'])
    assert 'usage' in proc.stdout


def test_local_rank_spellings(train_tool, monkeypatch):
    for flag in ('--local-rank', '--local_rank'):
        monkeypatch.delenv('LOCAL_RANK', raising=False)
        args = train_tool.parse_args([CFG, flag, '3'])
        assert args.local_rank == 3
        from shared.utils.entrypoint import set_local_rank

        set_local_rank(args.local_rank)
        import os

        assert os.environ['LOCAL_RANK'] == '3'


def test_slurm_dry_run(tmp_path):
    proc = run_tool(
        ['tools/slurm_train.sh', 'gpu', 'job', CFG, str(tmp_path), '--amp'],
        env={
            'DRY_RUN': '1',
            'GPUS': '16',
            'GPUS_PER_NODE': '8',
            'MASTER_PORT': '23456',
        },
    )
    line = proc.stdout.strip()
    assert line.startswith('MASTER_PORT=23456 srun -p gpu --job-name=job')
    assert '--gres=gpu:8 --ntasks=16 --ntasks-per-node=8' in line
    assert '--cpus-per-task=5 --kill-on-bad-exit=1' in line
    assert line.endswith(
        f'tools/train.py {CFG} --work-dir={tmp_path} --amp --launcher slurm'
    )
    proc = run_tool(
        ['tools/slurm_test.sh', 'p', 'j', CFG, 'c.pth'], env={'DRY_RUN': '1'}
    )
    port = int(proc.stdout.split()[0].split('=')[1])
    assert 20000 <= port < 40000
    assert 'tools/test.py' in proc.stdout and '--ntasks=8' in proc.stdout
