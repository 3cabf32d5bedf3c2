"""An exported file in place of the model, for the toolbox's own test loop
(``tools/test.py CONFIG MODEL.onnx|MODEL.pte``), as mmdeploy's test tool
does.

:class:`DeployedModel` is an mmengine ``BaseModel``: the config's data
preprocessor normalises and pads the batch as for the PyTorch model, then
each image (its valid part) is fitted into the exported input size
(resized keeping the aspect ratio when the metadata says so, else
stretched; padded bottom/right with 0), run in its runtime through
``deploy/host.py``, and the result is mapped back to the original image:
boxes divided by the fit and the pipeline's ``scale_factor``; label maps
cropped and resized (nearest) to ``ori_shape``. The evaluator sees the
same data samples as from ``model.predict``.

:func:`backend_test_config` points a test config at it and resizes the
test pipeline to the exported size (``Resize`` scale = the model's W, H),
so that images need no second resize in most cases.
"""
import os.path as osp
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from . import host

#: File endings evaluated by :class:`DeployedModel`.
BACKEND_ENDINGS = ('.onnx', '.pte')


def is_backend_file(path: str) -> bool:
    return str(path).endswith(BACKEND_ENDINGS)


@MODELS.register_module(name='MMMobileMambaDeployedModel', force=True)
class DeployedModel(BaseModel):
    """Runs ``model_path`` (with its metadata) on a test batch.

    Args:
        model_path (str): ``.onnx`` or ``.pte`` file.
        data_preprocessor (dict): The config's data preprocessor.
        threads (int, optional): Runtime threads.
    """

    def __init__(self, model_path: str, data_preprocessor: dict,
                 threads: Optional[int] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.model_path = model_path
        self.backend = host.Model(model_path, threads=threads)
        self.meta = self.backend.meta
        if self.meta['task'] not in ('detection', 'segmentation'):
            raise ValueError(
                f'{model_path} is a {self.meta["task"]} model: tools/test.py '
                'evaluates exported detectors and segmentors (classifiers: '
                'tools/deployment/eval_deployed.py)')
        shape = self.meta['input']['shape']
        if shape[0] not in (1, -1):
            raise ValueError(f'{model_path} takes batch {shape[0]}; export '
                             'it at batch 1 (or --dynamic-batch)')
        self.input_hw = (int(shape[2]), int(shape[3]))
        self.keep_ratio = bool(self.meta['preprocess'].get('keep_ratio'))
        self.register_buffer('_device_probe', torch.zeros(0),
                             persistent=False)

    def _fit(self, img: torch.Tensor):
        """(1, 3, H, W) float32 array of the model's input, fit scales."""
        h, w = int(img.shape[-2]), int(img.shape[-1])
        ih, iw = self.input_hw
        if self.keep_ratio and h <= ih and w <= iw:
            rh, rw = h, w  # already inside: pad only
        else:
            rh, rw = host.fit_size((h, w), (ih, iw), self.keep_ratio)
        x = img[None].float()
        if (rh, rw) != (h, w):
            x = F.interpolate(x, size=(rh, rw), mode='bilinear',
                              align_corners=False)
        x = F.pad(x, (0, iw - rw, 0, ih - rh), value=0.)
        return x.cpu().numpy(), (rw / w, rh / h), (rh, rw)

    def forward(self, inputs, data_samples=None, mode: str = 'predict'):
        if mode != 'predict':
            raise RuntimeError(f'an exported model only predicts (mode '
                               f'{mode!r})')
        results = []
        for img, sample in zip(inputs, data_samples):
            vh, vw = sample.metainfo['img_shape'][:2]
            x, (sx, sy), valid = self._fit(img[:, :vh, :vw])
            self._valid = valid
            out = host.decode_outputs(self.backend.run(x), self.meta)
            if self.meta['task'] == 'detection':
                results.append(self._detections(out, sample, sx, sy))
            else:
                results.append(self._label_map(out, sample, valid))
        return results

    def _detections(self, out, sample, sx, sy):
        from mmengine.structures import InstanceData
        dets = out['dets'].astype(np.float32).copy()
        scale = sample.metainfo.get('scale_factor', (1., 1.))
        dets[:, 0:4:2] /= sx * float(scale[0])
        dets[:, 1:4:2] /= sy * float(scale[1])
        inst = InstanceData()
        inst.bboxes = torch.from_numpy(dets[:, :4])
        inst.scores = torch.from_numpy(dets[:, 4])
        inst.labels = torch.from_numpy(out['labels'].astype(np.int64))
        if 'masks' in out:
            fit = host.Fit(sx * float(scale[0]), sy * float(scale[1]),
                           self._valid, sample.metainfo['ori_shape'][:2])
            inst.masks = torch.from_numpy(host.unfit_masks(out['masks'],
                                                           fit))
        sample.pred_instances = inst
        return sample

    def _label_map(self, out, sample, valid):
        from mmengine.structures import PixelData
        ori_h, ori_w = sample.metainfo['ori_shape'][:2]
        fit = host.Fit(1., 1., valid, (ori_h, ori_w))
        labels = host.unfit_label_map(out['label_map'], fit)
        sample.pred_sem_seg = PixelData(
            data=torch.from_numpy(np.ascontiguousarray(labels))[None])
        return sample


def _resize_steps(pipeline: List[dict]):
    for step in pipeline:
        kind = str(step.get('type', '')).split('.')[-1]
        if kind == 'Resize' and step.get('scale') is not None:
            yield step
        for key in ('transforms', ):  # TestTimeAug and the like
            for inner in step.get(key) or []:
                if isinstance(inner, dict):
                    yield from _resize_steps([inner])


def backend_test_config(cfg, model_path: str,
                        threads: Optional[int] = None):
    """``cfg`` (changed in place) evaluating ``model_path`` instead of the
    model: the model replaced, nothing loaded, the test pipeline's
    ``Resize`` at the exported size."""
    if not osp.isfile(model_path):
        raise FileNotFoundError(f'model file {model_path} not found')
    meta = host.load_metadata(model_path)
    pre = cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor')
    cfg.model = dict(type='MMMobileMambaDeployedModel',
                     model_path=model_path, data_preprocessor=pre,
                     threads=threads)
    cfg.load_from = None
    ih, iw = meta['input']['shape'][2:]
    loader = cfg.test_dataloader
    dataset = loader.dataset
    while 'pipeline' not in dataset and 'dataset' in dataset:
        dataset = dataset.dataset
    for step in _resize_steps(dataset.pipeline):
        step['scale'] = (int(iw), int(ih))
        step['keep_ratio'] = bool(meta['preprocess'].get('keep_ratio'))
    return cfg
