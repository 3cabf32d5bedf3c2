"""The configs use the crash-safe pieces and the warm-up EMA, and leave
the lr as written unless --auto-scale-lr is given."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmmobilemamba.engine import make_resumable
from mmmobilemamba.utils import prepare_train_config

from ..helpers import REPO

T2 = osp.join(REPO, 'configs', 'mobilemamba', 'mobilemamba-t2_8xb128_in1k.py')


def test_classification_config():
    cfg = Config.fromfile(T2)
    assert cfg.auto_scale_lr == dict(base_batch_size=1024)  # not enabled
    assert cfg.default_hooks.checkpoint.type == 'ResumableCheckpointHook'
    assert cfg.train_cfg.type == 'ResumableEpochBasedTrainLoop'
    ema = [h for h in cfg.custom_hooks if h.type == 'EMAHook']
    assert ema and ema[0].ema_type == 'WarmupEMA'
    assert ema[0].momentum == 2e-4


@pytest.mark.parametrize('flag', [False, True])
def test_auto_scale_lr_only_with_the_flag(flag, tiny_imagenet_folder):
    opts = {f'{s}_dataloader.dataset.data_root': tiny_imagenet_folder
            for s in ('train', 'val')}
    cfg = prepare_train_config(T2, auto_scale_lr=flag, cfg_options=opts)
    assert cfg.auto_scale_lr.get('enable', False) is flag
    assert cfg.auto_scale_lr.base_batch_size == 1024


@pytest.mark.parametrize('config', [
    'retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py',
    'mask-rcnn/mask-rcnn_mobilemamba-b1_fpn_1x_coco.py',
    'ssdlite/ssdlite_mobilemamba-b1_600e_coco-320.py',
    'deeplabv3/deeplabv3_mobilemamba-b4_80k_ade20k-512x512.py',
    'resnet/resnet18_1xb64_digits-32px.py'
])
def test_tools_train_makes_every_config_resumable(config):
    cfg = Config.fromfile(osp.join(REPO, 'configs', config))
    make_resumable(cfg)
    assert cfg.default_hooks.checkpoint.type == 'ResumableCheckpointHook'
    assert cfg.train_cfg.type in ('ResumableEpochBasedTrainLoop',
                                  'ResumableIterBasedTrainLoop')
    assert 'by_epoch' not in cfg.train_cfg
    assert make_resumable(cfg) == []  # idempotent
