"""End to end on generated COCO data, as a user runs it: tools/train.py for a
few iterations from scratch, tools/test.py (COCO mAP via CocoMetric, --out,
--show-dir), and mmdet's inference API (init_detector + inference_detector,
DetInferencer) on an image file. Plus the missing-data errors."""
import glob
import json
import os
import os.path as osp
import re
import shutil

import pytest

from ..helpers import REPO, load_tool, run_tool

pytest.importorskip('mmdet')

CONFIGS = {
    'retinanet': 'configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py',
    'mask-rcnn': 'configs/mask-rcnn/mask-rcnn_mobilemamba-b1_fpn_1x_coco.py',
    'ssdlite-320': 'configs/ssdlite/ssdlite_mobilemamba-b1_600e_coco-320.py',
}
# Small images and cheap settings so each detector trains in seconds on a
# CPU; the real config files are used, only overridden.
IMAGE_SCALE = {'ssdlite-320': (160, 160)}
EXTRA_OPTIONS = {
    # every box is scored: an untrained model still gets a COCO evaluation
    'retinanet': {'model.test_cfg.score_thr': 0.0},
    'ssdlite-320': {
        'model.test_cfg.score_thr': 0.0,
        'train_dataloader.dataset.times': 1,
        'train_dataloader.batch_size': 2,
        'val_dataloader.batch_size': 1,
    },
    'mask-rcnn': {
        'model.test_cfg.rcnn.score_thr': 0.0,
        'model.train_cfg.rpn_proposal.nms_pre': 300,
        'model.train_cfg.rpn_proposal.max_per_img': 100,
        'model.train_cfg.rcnn.sampler.num': 64,
        'model.test_cfg.rpn.nms_pre': 300,
        'model.test_cfg.rpn.max_per_img': 50,
    },
}


def options(name, root):
    """``--cfg-options`` dict: data at ``root``, small and from scratch."""
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config

    coco_cfg_options = load_tool(
        'dataset_converters/make_coco.py').coco_cfg_options
    cfg = Config.fromfile(osp.join(REPO, CONFIGS[name]))
    opts = coco_cfg_options(cfg, root, IMAGE_SCALE.get(name, (192, 128)),
                            num_workers=0)
    opts.update({
        'model.backbone.init_cfg': None,  # no pretrained weights here
        'model.backbone.norm_eval': False,
        'train_cfg.max_epochs': 1,
        'train_cfg.val_interval': 100,  # tools/test.py evaluates instead
        'default_hooks.logger.interval': 1,
        'default_hooks.visualization.score_thr': 0.0,
    })
    opts.update(EXTRA_OPTIONS[name])
    return opts


def as_cli(opts):
    return [f'{k}={v}'.replace(' ', '') for k, v in opts.items()]


_TRAINED = {}


def trained(name, root, tmp_path_factory):
    """Train ``name`` once per session: (config, checkpoint, options)."""
    if name not in _TRAINED:
        work = str(tmp_path_factory.mktemp(f'train_{name}'))
        opts = options(name, root)
        out = run_tool('tools/train.py', CONFIGS[name], '--work-dir', work,
                       '--cfg-options', *as_cli(opts))
        assert re.search(r'Epoch\(train\) \[1\]\[2/2\].*loss: [\d.]+', out), \
            out[-3000:]
        ckpt = osp.join(work, 'epoch_1.pth')
        assert osp.isfile(ckpt)
        _TRAINED[name] = (CONFIGS[name], ckpt, opts)
    return _TRAINED[name]


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_train_then_test_tool_reports_coco_map(name, tiny_coco,
                                               tmp_path_factory, tmp_path):
    config, ckpt, opts = trained(name, tiny_coco, tmp_path_factory)
    show_dir = str(tmp_path / 'vis')
    dump = str(tmp_path / 'preds.pkl')
    out = run_tool('tools/test.py', config, ckpt, '--work-dir',
                   str(tmp_path / 'test'), '--out', dump, '--show-dir',
                   show_dir, '--cfg-options', *as_cli(opts))
    metrics = ['bbox'] + (['segm'] if name == 'mask-rcnn' else [])
    for metric in metrics:
        match = re.search(rf'coco/{metric}_mAP: (-?[\d.]+)', out)
        assert match, out[-3000:]
        assert 0.0 <= float(match.group(1)) <= 1.0
    assert osp.getsize(dump) > 0
    drawn = glob.glob(osp.join(show_dir, '**', '*.jpg'), recursive=True)
    assert len(drawn) == 2, drawn  # one per val image


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_inference_api_draws_predictions(name, tiny_coco, tmp_path_factory,
                                         tmp_path):
    import numpy as np
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    from mmengine.config import Config
    from PIL import Image
    config, ckpt, opts = trained(name, tiny_coco, tmp_path_factory)
    image = sorted(glob.glob(osp.join(tiny_coco, 'val2017', '*.jpg')))[0]

    model = init_detector(osp.join(REPO, config), ckpt, device='cpu',
                          cfg_options=opts)
    result = inference_detector(model, image)
    pred = result.pred_instances
    assert len(pred) > 0 and pred.bboxes.shape[1] == 4
    w, h = Image.open(image).size
    # boxes come back in the input image's coordinates
    assert float(pred.bboxes[:, 2].max()) <= w + 1
    assert float(pred.bboxes[:, 3].max()) <= h + 1
    if name == 'mask-rcnn':
        assert tuple(pred.masks.shape[1:]) == (h, w)

    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.merge_from_dict(opts)
    inferencer = DetInferencer(model=cfg, weights=ckpt, device='cpu',
                               show_progress=False)
    out_dir = str(tmp_path / 'infer')
    res = inferencer(image, out_dir=out_dir, pred_score_thr=0.0,
                     no_save_pred=False)
    assert len(res['predictions'][0]['bboxes']) > 0
    vis = osp.join(out_dir, 'vis', osp.basename(image))
    assert osp.isfile(vis)
    drawn = np.asarray(Image.open(vis).convert('RGB'), np.int16)
    original = np.asarray(Image.open(image).convert('RGB'), np.int16)
    assert drawn.shape == original.shape
    assert np.abs(drawn - original).max() > 50  # boxes were drawn
    preds = glob.glob(osp.join(out_dir, 'preds', '*.json'))
    assert preds and json.load(open(preds[0]))['labels']


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_missing_dataset_names_path_and_generator(tool, tmp_path):
    missing = str(tmp_path / 'no_coco')
    config = CONFIGS['retinanet']
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config

    coco_cfg_options = load_tool(
        'dataset_converters/make_coco.py').coco_cfg_options
    opts = as_cli(coco_cfg_options(Config.fromfile(osp.join(REPO, config)),
                                   missing))
    if tool == 'train':
        args = ['tools/train.py', config]
    else:
        ckpt = str(tmp_path / 'any.pth')
        open(ckpt, 'wb').close()
        args = ['tools/test.py', config, ckpt]
    code, out = run_tool(*args, '--work-dir', str(tmp_path / 'w'),
                         '--cfg-options', *opts, check=False)
    assert code != 0
    assert 'dataset not found' in out and missing in out
    assert f'python tools/dataset_converters/make_coco.py {missing}' in out


def test_missing_annotation_file_is_named(tiny_coco, tmp_path):
    root = str(tmp_path / 'coco_without_val_json')
    shutil.copytree(tiny_coco, root)
    ann = osp.join(root, 'annotations', 'instances_val2017.json')
    os.remove(ann)
    config = CONFIGS['mask-rcnn']
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config

    coco_cfg_options = load_tool(
        'dataset_converters/make_coco.py').coco_cfg_options
    opts = as_cli(coco_cfg_options(Config.fromfile(osp.join(REPO, config)),
                                   root))
    code, out = run_tool('tools/train.py', config, '--work-dir',
                         str(tmp_path / 'w'), '--cfg-options', *opts,
                         check=False)
    assert code != 0
    assert ann in out and 'ann_file' in out
    assert 'make_coco.py' in out
