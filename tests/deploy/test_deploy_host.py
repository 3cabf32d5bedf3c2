"""``mmmobilemamba/deploy/host.py``, the numpy-only host side of deployed
models: its NMS against torchvision's, its dense-detector post-processing
against the in-graph one (:class:`DetectorNMS` in PyTorch), the fitting of
images into the input and back, the tie-aware comparisons, and the errors
for a missing runtime or metadata file."""
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from ..helpers import REPO

HOST = osp.join(REPO, 'mmmobilemamba', 'deploy', 'host.py')


@pytest.fixture(scope='module')
def host():
    """host.py loaded by its path, as tools/deployment/infer.py does."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('host_under_test', HOST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_boxes(n, gen, size=100.):
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 3 + 1
    return torch.cat([xy, xy + wh], 1)


def test_nms_matches_torchvision(host):
    torchvision = pytest.importorskip('torchvision')
    gen = torch.Generator().manual_seed(0)
    for n, thr in ((50, 0.5), (300, 0.3), (300, 0.7)):
        boxes = random_boxes(n, gen)
        scores = torch.rand(n, generator=gen)
        want = torchvision.ops.nms(boxes, scores, thr).numpy()
        got = host.nms(boxes.numpy(), scores.numpy(), thr)
        np.testing.assert_array_equal(got, want)
        labels = torch.randint(0, 4, (n, ), generator=gen)
        want = torchvision.ops.batched_nms(boxes, scores, labels, thr)
        got = host.multiclass_nms(boxes.numpy(), scores.numpy(),
                                  labels.numpy(), thr, -1)
        np.testing.assert_array_equal(got, want.numpy())


def test_host_postprocess_equals_nms_graph(host):
    """The .pte host function and the ONNX graph's module agree."""
    from mmmobilemamba.deploy.dense.detector import DetectorNMS
    from mmmobilemamba.deploy.dense.parity import (compare_detections,
                                                   detections_agree)
    gen = torch.Generator().manual_seed(1)
    levels = [120, 60, 20]
    boxes = random_boxes(sum(levels), gen)[None]
    scores = torch.rand(1, sum(levels), 3, generator=gen)

    class Dense(torch.nn.Module):
        def forward(self, x):
            return boxes, scores

    dense = Dense()
    dense.levels = levels
    settings = dict(score_thr=0.2, nms_pre=100, iou_thr=0.45,
                    max_per_img=40, min_bbox_size=5.)
    want = DetectorNMS(dense, **settings)(torch.zeros(1, 3, 8, 8))
    got = host.detections_from_dense(boxes.numpy(), scores.numpy(), levels,
                                     **settings)
    result = compare_detections(want[0].numpy(), want[1].numpy(), *got,
                                max_per_img=40)
    assert detections_agree(result, box_tol=0), result
    assert len(got[0]) == 40 and got[0].dtype == np.float32


def test_compare_detections_handles_ties():
    from mmmobilemamba.deploy.dense.parity import (compare_detections,
                                                   detections_agree)
    dets = np.array([[0, 0, 10, 10, .9], [20, 20, 30, 30, .5],
                     [40, 40, 50, 50, .5], [60, 60, 70, 70, .4]], np.float32)
    labels = np.array([0, 1, 2, 0])
    # the tied pair in the other order: equal
    swapped = dets[[0, 2, 1, 3]], labels[[0, 2, 1, 3]]
    assert detections_agree(compare_detections(dets, labels, *swapped))
    # a different box is not
    moved = dets.copy()
    moved[3, 0] += 0.01
    assert not detections_agree(compare_detections(dets, labels, moved,
                                                   labels))
    # cut at max_per_img inside the tie: the cut group is not compared
    result = compare_detections(dets[:2], labels[:2], dets[[0, 2]],
                                labels[[0, 2]], max_per_img=2)
    assert result['skipped'] == 1 and detections_agree(result)


def test_label_agreement_skips_ties():
    from mmmobilemamba.deploy.dense.parity import label_agreement
    logits = np.zeros((3, 2, 2), np.float32)
    logits[0, 0, 0] = 1.  # pixel (0, 0): class 0; the others: ties
    ref = np.zeros((2, 2), np.int64)
    got = np.array([[0, 2], [1, 0]])
    assert label_agreement(ref, got, logits) == (1, 0, 3)
    assert label_agreement(ref, got) == (4, 2, 0)


def test_fit_and_unfit(host):
    meta = dict(input=dict(shape=[1, 3, 64, 96]),
                preprocess=dict(to_rgb=True, mean=[0, 0, 0], std=[1, 1, 1],
                                keep_ratio=True, pad_value=0.))
    img = np.full((100, 50, 3), 7, np.uint8)  # portrait into landscape
    x, fit = host.preprocess(img, meta)
    assert x.shape == (1, 3, 64, 96) and x.dtype == np.float32
    assert fit.valid_hw == (64, 32)
    assert (x[0, :, :, :32] == 7).all() and (x[0, :, :, 32:] == 0).all()
    boxes = host.unfit_boxes(np.array([[0, 0, 32, 64, .5]]), fit)
    np.testing.assert_allclose(boxes[0], [0, 0, 50, 100, .5], rtol=1e-6)
    label_map = np.zeros((64, 96), np.int64)
    label_map[:32, :32] = 3
    out = host.unfit_label_map(label_map, fit)
    assert out.shape == (100, 50)
    assert (out[:50] == 3).all() and (out[50:] == 0).all()
    meta['preprocess'].update(keep_ratio=False, to_rgb=False)
    img[..., 0] = 1
    x, fit = host.preprocess(img, meta)  # stretched, channels to BGR
    assert fit.valid_hw == (64, 96) and (x[0, 2] == 1).all()


def test_missing_runtime_and_metadata_errors(host, tmp_path):
    model = tmp_path / 'm.onnx'
    model.write_bytes(b'not a model')
    with pytest.raises(FileNotFoundError, match=r'm\.onnx\.json'):
        host.Model(str(model))
    (tmp_path / 'm.onnx.json').write_text(json.dumps(
        dict(format=host.METADATA_FORMAT, task='classification')))
    # onnxruntime made unimportable in a child process
    code = (
        'import sys, importlib.util; sys.modules["onnxruntime"] = None; '
        f'spec = importlib.util.spec_from_file_location("h", {HOST!r}); '
        'h = importlib.util.module_from_spec(spec); '
        'spec.loader.exec_module(h); '
        f'h.Model({str(model)!r})')
    proc = subprocess.run([sys.executable, '-c', code], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode != 0
    assert "needs the 'onnxruntime' package" in proc.stdout, proc.stdout
    assert 'pip install onnxruntime' in proc.stdout
