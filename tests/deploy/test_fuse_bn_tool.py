"""tools/deployment/fuse_bn.py as a user runs it: the fused checkpoint gives
the unfused model's predictions in tools/test.py and the mmpretrain
inferencer when built with the printed deploy options."""
import glob
import os.path as osp
import pickle
import re

import pytest
import torch

from ..helpers import REPO, data_root_options, randomize_norms, run_tool

pytest.importorskip('mmpretrain')

STOCK = osp.join(REPO, 'tests', 'data', 'configs',
                 'stock_resnet_tiny_folder.py')
DEPLOY = ['model.backbone.deploy=True', 'model.head.deploy=True']

CONFIG = f"""_base_ = [{STOCK!r}]
model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(type='MobileMamba', arch='T2', out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='BNLinearClsHead', num_classes=10, in_channels=368,
              topk=(1, )))
"""



@pytest.mark.slow
def test_fuse_bn_tool_with_test_tool_and_inferencer(tiny_imagenet_folder,
                                                    tmp_path):
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.apis import ImageClassificationInferencer
    from mmpretrain.registry import MODELS

    config = tmp_path / 'mobilemamba_t2_tiny.py'
    config.write_text(CONFIG)
    cfg = Config.fromfile(str(config))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = randomize_norms(MODELS.build(cfg.model))
    ckpt, fused = str(tmp_path / 'model.pth'), str(tmp_path / 'fused.pth')
    classes = [f'class_{i}' for i in range(10)]
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': classes}}}, ckpt)

    out = run_tool('tools/deployment/fuse_bn.py', str(config), ckpt, fused,
                   '--check-size', '48', '48')
    assert 'max relative difference' in out
    assert ' '.join(DEPLOY) in out
    saved = torch.load(fused)
    assert not any('.bn.' in k for k in saved['state_dict'])
    assert saved['meta']['dataset_meta']['classes'] == classes

    scores = []
    for weights, extra in ((ckpt, []), (fused, DEPLOY)):
        dump = str(tmp_path / f'{osp.basename(weights)}.pkl')
        run_tool('tools/test.py', str(config), weights, '--work-dir',
                 str(tmp_path / 'work'), '--out', dump, '--cfg-options',
                 *data_root_options(tiny_imagenet_folder), *extra)
        with open(dump, 'rb') as f:
            scores.append(torch.stack([r['pred_score'] for r in
                                       pickle.load(f)]))
    assert scores[0].shape[0] == 40  # 10 classes x 4 validation images
    torch.testing.assert_close(scores[1], scores[0], rtol=1e-4, atol=1e-6)

    image = sorted(glob.glob(osp.join(tiny_imagenet_folder, 'val', '**',
                                      '*.*'), recursive=True))[0]
    results = []
    for weights, extra in ((ckpt, {}), (fused, DEPLOY)):
        icfg = Config.fromfile(str(config))
        if extra:
            icfg.merge_from_dict({k.split('=')[0]: True for k in extra})
        # the inferencer builds its pipeline in the current default scope,
        # which earlier tests (e.g. mmdet's inference API) may have changed
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            inferencer = ImageClassificationInferencer(
                model=icfg, pretrained=weights, device='cpu')
            results.append(inferencer(image)[0])
    assert results[0]['pred_class'] == results[1]['pred_class']
    torch.testing.assert_close(
        torch.as_tensor(results[1]['pred_scores']),
        torch.as_tensor(results[0]['pred_scores']), rtol=1e-4, atol=1e-6)


def test_output_check_reports_and_fails_above_the_bar(capsys):
    import torch

    from mmmobilemamba.utils.output_check import (max_relative_difference,
                                                  report_difference)
    ref = [torch.tensor([1., -2.]), torch.tensor([4.])]
    near = [torch.tensor([1., -2.00001]), torch.tensor([4.])]
    assert max_relative_difference(near, ref) == pytest.approx(5e-6, rel=1e-2)
    assert report_difference('a vs b', near, ref, 1e-4) == 0
    assert re.search(r'a vs b: max relative difference 5(\.0\d)?e-06',
                     capsys.readouterr().out)
    far = [torch.tensor([1., -1.]), torch.tensor([4.])]
    assert report_difference('a vs b', far, ref, 1e-4) == 1
    assert 'error: difference above 0.0001' in capsys.readouterr().err
    with pytest.raises(ValueError, match='as many outputs'):
        max_relative_difference(near[:1], ref)
