"""Whole detectors and segmentors exported (issue 29): every shipped dense
config with a T2 backbone and random weights (BatchNorm statistics
randomised) at a small size, ONNX in-process for each, ExecuTorch for
DeepLabv3 and SSDLite, compared with the model's own ``predict``:

* segmentors: the label map (N, H, W) int64 equals ``predict``'s at every
  pixel whose two best logits differ by more than 1e-4 (ties skipped);
* detectors: ``dets``/``labels`` equal ``predict``'s (rescale off)
  detection by detection, boxes within 1e-3 px; runs of equal scores are
  matched as sets (:mod:`mmmobilemamba.deploy.dense.parity`).

Mask R-CNN: RPN, RoIAlign, both heads, NMS and mask pasting in one ONNX
graph, equal to ``predict``; its .pte export is refused with an error
naming the heads.
"""
import os.path as osp

import numpy as np
import pytest
import torch

from ..helpers import REPO

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

T2 = {'model.backbone.init_cfg': None, 'model.backbone.arch': 'T2'}
#: name -> (config, overrides for a T2 backbone and a small test)
DENSE = {
    'deeplabv3': ('deeplabv3/deeplabv3_mobilemamba-b4_80k_ade20k-512x512.py',
                  {'model.decode_head.in_channels': 368,
                   'model.auxiliary_head.in_channels': 272}),
    'pspnet': ('pspnet/pspnet_mobilemamba-b4_80k_ade20k-512x512.py',
               {'model.decode_head.in_channels': 368,
                'model.auxiliary_head.in_channels': 272}),
    'sem-fpn': ('sem-fpn/sem-fpn_mobilemamba-b4_160k_ade20k-512x512.py',
                {'model.neck.in_channels': [144, 272, 368]}),
    # 4 classes and a score threshold that random weights pass: >= 100
    # detections, so max_per_img cuts the list
    'retinanet': ('retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py',
                  {'model.neck.in_channels': [144, 272, 368],
                   'model.bbox_head.num_classes': 4,
                   'model.test_cfg.score_thr': 0.3}),
    'ssdlite-320': ('ssdlite/ssdlite_mobilemamba-b1_600e_coco-320.py',
                    {'model.neck.in_channels': [144, 272],
                     'model.neck.out_channels': [144, 272, 512, 256, 256,
                                                 128],
                     'model.bbox_head.in_channels': [144, 272, 512, 256, 256,
                                                     128],
                     'model.bbox_head.num_classes': 4,
                     'model.test_cfg.score_thr': 0.2}),
}
SEGMENTORS = ('deeplabv3', 'pspnet', 'sem-fpn')
DETECTORS = ('retinanet', 'ssdlite-320')
# non-square; multiples of 64 (the segmentors' size divisor); PSPNet's
# stride-64 map (2 x 3) is smaller than its 3- and 6-cell poolings
SEG_HW = (128, 192)
DET_HW = (128, 128)


def config_path(name: str) -> str:
    return osp.join(REPO, 'configs', DENSE[name][0])


def options(name: str) -> dict:
    return dict(T2, **DENSE[name][1])


def cli_options(name: str) -> list:
    return [f'{k}={v}'.replace(' ', '') for k, v in options(name).items()]


def build(name: str):
    """(model with random weights and BN statistics, cfg)."""
    from mmmobilemamba.analysis.random_norms import randomize_norms
    from mmmobilemamba.deploy.model_source import load_model
    torch.manual_seed(0)
    model, cfg = load_model(config_path(name), None, options(name))
    randomize_norms(model, seed=0)
    return model.eval(), cfg


def image(hw, seed=1):
    return torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(
        seed))


def seg_reference(model, x):
    """(label map, logits) of mmseg's predict at the input size."""
    from mmseg.structures import SegDataSample
    hw = tuple(x.shape[-2:])
    sample = SegDataSample(metainfo=dict(img_shape=hw, ori_shape=hw))
    with torch.no_grad():
        out = model.predict(x, [sample])[0]
    return out.pred_sem_seg.data.numpy(), out.seg_logits.data.numpy()


def det_reference(model, x):
    """(dets (N, 5), labels) of mmdet's predict, boxes in input pixels."""
    from mmdet.structures import DetDataSample
    hw = tuple(x.shape[-2:])
    sample = DetDataSample(metainfo=dict(
        img_shape=hw, ori_shape=hw, pad_shape=hw, batch_input_shape=hw,
        scale_factor=(1., 1.)))
    with torch.no_grad():
        inst = model.predict(x, [sample], rescale=False)[0].pred_instances
    dets = torch.cat([inst.bboxes, inst.scores[:, None]], 1).numpy()
    return dets, inst.labels.numpy()


def assert_labels_match(ref, logits, got):
    from mmmobilemamba.deploy.dense.parity import label_agreement
    assert got.dtype == np.int64 and got.shape == ref.shape, \
        (got.dtype, got.shape)
    compared, differ, ties = label_agreement(ref, got, logits)
    assert differ == 0, f'{differ} of {compared} pixels differ ({ties} ties)'
    assert compared > 0.99 * ref.size


def assert_detections_match(ref, got, max_per_img):
    from mmmobilemamba.deploy.dense.parity import (compare_detections,
                                                   describe_detections,
                                                   detections_agree)
    result = compare_detections(*ref, *got, max_per_img=max_per_img)
    assert result['compared'] >= 10, describe_detections(result)
    assert detections_agree(result, box_tol=1e-3), describe_detections(
        result)


def export_and_load(module, target, x, path, names):
    from mmmobilemamba.deploy import export, runtimes
    done = export(module, target, x, path, output_names=names)
    runtime = 'onnxruntime' if target == 'onnx' else 'executorch'
    return done, runtimes.make_runner(runtime, done.path)


@pytest.mark.parametrize('name', SEGMENTORS)
def test_segmentor_onnx_label_map(name, tmp_path):
    from mmmobilemamba.deploy.dense import deployable
    model, _ = build(name)
    x = image(SEG_HW)
    ref, logits = seg_reference(model, x)
    dep = deployable(model, 'onnx', SEG_HW)
    assert dep.output_format == 'label_map'
    # the PyTorch module itself, then the file in onnxruntime
    with torch.no_grad():
        assert_labels_match(ref, logits, dep.module(x).numpy())
    _, run = export_and_load(dep.module, 'onnx', x, str(tmp_path / 'm.onnx'),
                             dep.output_names)
    assert_labels_match(ref, logits, run(x)[0])


@pytest.mark.parametrize('name', DETECTORS)
def test_detector_onnx_nms_in_graph(name, tmp_path):
    import onnx

    from mmmobilemamba.deploy.dense import deployable
    model, _ = build(name)
    x = image(DET_HW)
    ref = det_reference(model, x)
    dep = deployable(model, 'onnx', DET_HW)
    settings = dep.postprocess
    head_cfg = model.bbox_head.test_cfg
    assert settings['score_thr'] == head_cfg.score_thr
    assert settings['iou_thr'] == head_cfg.nms.iou_threshold
    assert settings['max_per_img'] == head_cfg.max_per_img
    assert len(ref[0]) == settings['max_per_img']  # the cut is exercised
    with torch.no_grad():
        dets, labels = dep.module(x)
    assert_detections_match(ref, (dets.numpy(), labels.numpy()),
                            settings['max_per_img'])
    done, run = export_and_load(dep.module, 'onnx', x,
                                str(tmp_path / 'm.onnx'), dep.output_names)
    ops = {n.op_type for n in onnx.load(done.path).graph.node}
    assert {'NonMaxSuppression', 'TopK'} <= ops, sorted(ops)
    dets, labels = run(x)
    assert dets.shape[1] == 5 and labels.dtype == np.int64
    assert_detections_match(ref, (dets, labels), settings['max_per_img'])


@pytest.mark.slow
def test_segmentor_executorch_label_map(tmp_path):
    """DeepLabv3 in one XNNPACK subgraph; only the argmax outside."""
    pytest.importorskip('executorch')
    from mmmobilemamba.deploy.dense import deployable
    model, _ = build('deeplabv3')
    x = image(SEG_HW)
    ref, logits = seg_reference(model, x)
    dep = deployable(model, 'xnnpack', SEG_HW)
    done, run = export_and_load(dep.module, 'xnnpack', x,
                                str(tmp_path / 'm.pte'), dep.output_names)
    _, inside, outside = done.delegation
    assert set(outside) <= {'argmax'}, outside
    assert_labels_match(ref, logits, run(x)[0])


@pytest.mark.slow
def test_detector_executorch_with_host_nms(tmp_path):
    """SSDLite: the dense part (decoded boxes and scores) in the .pte, the
    numpy host function for the rest, equal to mmdet's predict."""
    pytest.importorskip('executorch')
    from mmmobilemamba.deploy import runtimes
    from mmmobilemamba.deploy.dense import deployable
    from mmmobilemamba.deploy.host import detections_from_dense
    model, _ = build('ssdlite-320')
    x = image(DET_HW)
    ref = det_reference(model, x)
    dep = deployable(model, 'xnnpack', DET_HW)
    assert dep.output_format == 'boxes_scores'
    done, run = export_and_load(dep.module, 'xnnpack', x,
                                str(tmp_path / 'm.pte'), dep.output_names)
    boxes, scores = run(x)
    with torch.no_grad():
        want = [t.numpy() for t in dep.module(x)]
    assert runtimes.worst_difference(want, [boxes, scores]) < 1e-4
    post = dep.postprocess
    got = detections_from_dense(boxes, scores, post['levels'],
                                post['score_thr'], post['nms_pre'],
                                post['iou_thr'], post['max_per_img'],
                                post['min_bbox_size'])
    assert_detections_match(ref, got, post['max_per_img'])


def build_mask_rcnn():
    """Mask R-CNN with a T2 backbone, random weights, 4 classes and a
    score threshold random weights pass (the model's own train_cfg kept:
    two-stage detectors need it to build)."""
    import mmmobilemamba  # noqa: F401  (registration)
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmmobilemamba.analysis.random_norms import randomize_norms
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/mask-rcnn/mask-rcnn_mobilemamba-b1_fpn_1x_coco.py'))
    cfg.merge_from_dict(dict(T2, **{
        'model.neck.in_channels': [144, 272, 368],
        'model.roi_head.bbox_head.num_classes': 4,
        'model.roi_head.mask_head.num_classes': 4,
        'model.test_cfg.rcnn.score_thr': 0.2,
        'model.test_cfg.rpn.nms_pre': 300,
        'model.test_cfg.rpn.max_per_img': 100}))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    randomize_norms(model, seed=0)
    return model.eval()


def test_mask_rcnn_onnx_roi_align_and_masks_in_graph(tmp_path):
    """RPN, RoIAlign, box head, per-class NMS, mask head and mask pasting
    in one ONNX graph, equal to mmdet's predict (masks pixel for pixel);
    no .pte path, and the error names the heads."""
    import onnx

    from mmmobilemamba.deploy.dense import deployable
    from mmmobilemamba.deploy.dense.parity import mask_difference
    from mmdet.structures import DetDataSample
    model = build_mask_rcnn()
    x = image(DET_HW)
    hw = DET_HW
    sample = DetDataSample(metainfo=dict(
        img_shape=hw, ori_shape=hw, pad_shape=hw, batch_input_shape=hw,
        scale_factor=(1., 1.)))
    with torch.no_grad():
        inst = model.predict(x, [sample], rescale=False)[0].pred_instances
    ref = (torch.cat([inst.bboxes, inst.scores[:, None]], 1).numpy(),
           inst.labels.numpy())
    dep = deployable(model, 'onnx', DET_HW)
    assert dep.output_names == ['dets', 'labels', 'masks']
    done, run = export_and_load(dep.module, 'onnx', x,
                                str(tmp_path / 'm.onnx'), dep.output_names)
    ops = {n.op_type for n in onnx.load(done.path).graph.node}
    assert {'RoiAlign', 'NonMaxSuppression', 'GridSample'} <= ops
    dets, labels, masks = run(x)
    assert masks.dtype == bool and masks.shape == (len(dets), *DET_HW)
    assert_detections_match(ref, (dets, labels), 100)
    compared, differ = mask_difference(*ref, inst.masks.numpy(), dets,
                                       labels, masks)
    assert compared > 0 and differ == 0, (compared, differ)
    with pytest.raises(NotImplementedError,
                       match=r'MaskRCNN \(RPNHead, StandardRoIHead\): no '
                       'xnnpack export path'):
        deployable(model, 'xnnpack', DET_HW)


def test_adaptive_pool_form_matches_pytorch():
    from mmmobilemamba.deploy.dense.pooling import FixedAdaptiveAvgPool2d
    x = torch.randn(2, 3, 5, 8)
    for cells in (1, 2, 3, 4, 6, (3, 5)):
        ref = torch.nn.AdaptiveAvgPool2d(cells)(x)
        got = FixedAdaptiveAvgPool2d(cells)(x)
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
