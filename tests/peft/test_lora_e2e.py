"""The LoRA configs as a user runs them, at toy scale: a base checkpoint,
a few LoRA iterations with tools/train.py, tools/test.py on the adapter-only
checkpoint, merge_lora.py, then the merged checkpoint through the plain
config (tools/test.py) and tools/deployment/fuse_bn.py; and the dense
config built on a backbone checkpoint."""
import os.path as osp
import re

import pytest
import torch

from mmmobilemamba.checkpoint import load_checkpoint_file

from ..helpers import REPO, load_tool, run_tool

pytest.importorskip('mmpretrain')

LORA = osp.join(REPO, 'configs', 'mobilemamba',
                'mobilemamba-t2-lora_1xb32_digits-32px.py')
RETINA = osp.join(REPO, 'configs', 'retinanet',
                  'retinanet_mobilemamba-b1-lora_fpn_1x_coco.py')
TINY = dict(embed_dims=(32, 48, 80), depths=(1, 1, 1))
# the LoRA config on a tiny T2-shaped backbone (an arch dict does not pass
# through --cfg-options)
TINY_CONFIG = '''_base_ = [{base!r}]
model = dict(module=dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=(32, 48, 80), depths=(1, 1, 1)),
        init_cfg=dict(checkpoint={ckpt!r})),
    head=dict(in_channels=80)))
'''


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
    pytest.importorskip('sklearn')
    make_imagenet_folder = load_tool(
        'dataset_converters/make_imagenet_folder.py').make_imagenet_folder
    root = str(tmp_path_factory.mktemp('digits'))
    # what tools/dataset_converters/make_imagenet_folder.py writes
    make_imagenet_folder(root, 2, 1, 32, seed=0, source='digits')
    return root


@pytest.fixture(scope='module')
def base_ckpt(tmp_path_factory):
    """A tiny-T2-shaped classifier checkpoint (keys backbone.*, head.*)
    with random BN statistics, standing in for the shapes backbone."""
    import mmmobilemamba  # noqa: F401
    from ..helpers import build_classifier, randomize_norms
    torch.manual_seed(0)
    model = build_classifier('t2', **{
        'backbone.arch': dict(TINY, _delete_=True),
        'head.in_channels': 80, 'head.num_classes': 10})
    randomize_norms(model)
    path = str(tmp_path_factory.mktemp('base') / 'base.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


@pytest.fixture(scope='module')
def lora_config(base_ckpt, tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'lora_tiny.py'
    path.write_text(TINY_CONFIG.format(base=LORA, ckpt=base_ckpt))
    return str(path)


def _opts(root, epochs=2):
    opts = [
        'model.targets.1.rank=2',  # the tiny SS2Ds' dt rank is 2 and 3
        f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=3',
        'default_hooks.logger.interval=1',
    ]
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.dataset.data_root={root}',
                 f'{split}_dataloader.batch_size=10',
                 f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    return opts


def _top1(out):
    match = re.search(r'accuracy/top1: ([\d.]+)', out)
    assert match, out[-3000:]
    return float(match.group(1))


@pytest.mark.slow
def test_lora_train_test_merge_fuse(digits_root, base_ckpt, lora_config,
                                    tmp_path, capsys):
    work = str(tmp_path / 'work')
    out = run_tool('tools/train.py', lora_config, '--work-dir', work,
                   '--cfg-options', *_opts(digits_root, epochs=2))
    assert 'MobileMambaLoRA: 39 adapted tensors' in out, out[-3000:]
    # resumes from the adapter-only checkpoint (optimizer state included)
    opts = _opts(digits_root, epochs=3)
    out = run_tool('tools/train.py', lora_config, '--work-dir', work,
                   '--resume', '--cfg-options', *opts)
    assert 'resumed epoch: 2' in out, out[-3000:]
    ckpt = osp.join(work, 'epoch_3.pth')
    state = load_checkpoint_file(ckpt, 'cpu')['state_dict']
    base = torch.load(base_ckpt, map_location='cpu',
                      weights_only=True)['state_dict']
    # adapter-only: LoRA factors, the head, the base fingerprint
    assert all('.lora_' in k or k.startswith('head.')
               or k == 'lora_base_fingerprint' for k in state), list(state)
    assert sum('.lora_' in k for k in state) == 2 * 39
    # the head trained, everything else of the base is not in the file
    assert not torch.equal(state['head.fc.weight'], base['head.fc.weight'])

    out = run_tool('tools/test.py', lora_config, ckpt, '--work-dir',
                   str(tmp_path / 'test'), '--cfg-options', *opts)
    lora_top1 = _top1(out)

    merged = str(tmp_path / 'merged.pth')
    plain_cfg = str(tmp_path / 'merged_config.py')
    out = run_tool('tools/model_converters/merge_lora.py', lora_config, ckpt,
                   merged,
                   '--out-config', plain_cfg, '--cfg-options', *opts)
    diff = float(re.search(r'max relative difference (\S+)', out).group(1))
    assert diff <= 1e-5
    merged_state = load_checkpoint_file(merged, 'cpu')['state_dict']
    assert list(merged_state) == list(base)  # the plain model's keys
    # the backbone changed by the adapters' updates, exactly where they are
    changed = {k for k in base if k.startswith('backbone.') and
               not torch.equal(merged_state[k], base[k])}
    assert changed and all(k.endswith(('conv.weight', 'x_proj_weight',
                                       'dt_proj_weight')) for k in changed)

    # the merged checkpoint tests with the plain config, same top-1
    data = [o for o in opts if 'dataloader' in o]
    out = run_tool('tools/test.py', plain_cfg, merged, '--work-dir',
                   str(tmp_path / 'test_merged'), '--cfg-options', *data)
    assert _top1(out) == lora_top1

    # and fuses like any plain checkpoint; the LoRA config itself is refused
    # (in this process: the tool's import is what a subprocess would cost)
    fuse_tool = _load_tool('tools/deployment/fuse_bn.py')
    fused = str(tmp_path / 'fused.pth')
    assert fuse_tool.main([plain_cfg, merged, fused, '--check-size', '32',
                           '32']) == 0
    assert osp.isfile(fused)
    refused = str(tmp_path / 'refused.pth')
    assert fuse_tool.main([lora_config, ckpt, refused]) == 1
    assert 'merge_lora.py' in capsys.readouterr().err
    assert not osp.exists(refused)
    export_tool = _load_tool('tools/deployment/export_onnx.py')
    assert export_tool.main([lora_config, ckpt, str(tmp_path / 'x.onnx')]) == 1
    assert 'merge_lora.py' in capsys.readouterr().err


def _load_tool(path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_retinanet_lora_config_builds_on_a_backbone_checkpoint(base_ckpt):
    pytest.importorskip('mmdet')
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    cfg = Config.fromfile(RETINA)
    cfg.merge_from_dict({
        'model.module.backbone.arch': dict(TINY, _delete_=True),
        'model.module.backbone.init_cfg.checkpoint': base_ckpt,
        'model.module.neck.in_channels': [32, 48, 80],
    })
    cfg.model.targets[1].rank = 2  # the tiny SS2Ds' dt rank is 2 and 3
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    base = torch.load(base_ckpt, map_location='cpu',
                      weights_only=True)['state_dict']
    # the backbone holds the checkpoint's weights (loaded through init_cfg
    # before the adapters were attached)
    backbone = model.model.backbone
    key = 'stages.0.blocks.0.ffn1.pw1.conv.parametrizations.weight.original'
    assert torch.equal(backbone.state_dict()[key],
                       base['backbone.stages.0.blocks.0.ffn1.pw1.conv.weight'])
    # only adapters, neck and head train
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(
        '.lora_' in n or n.startswith(('model.neck.', 'model.bbox_head.'))
        for n in trainable)
    assert any('ss2d.parametrizations.x_proj_weight' in n for n in trainable)
    model.train()
    feats = model.model.extract_feat(torch.rand(1, 3, 64, 64))
    sum(f.mean() for f in feats).backward()
    assert all(p.grad is None for n, p in model.named_parameters()
               if not p.requires_grad)
    assert all(not m.training for m in backbone.modules()
               if isinstance(m, torch.nn.BatchNorm2d))
