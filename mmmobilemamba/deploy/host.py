"""Run an exported MobileMamba model with nothing but its runtime: the
host side of a deployed classifier, detector or segmentor.

This file needs only numpy, plus the runtime of the model file
(``onnxruntime`` for ``.onnx``, ``executorch`` for ``.pte``) and OpenCV or
Pillow to read and draw images. It imports nothing from torch, mmdet,
mmseg or the rest of this package on the ONNX Runtime path, so an
application can copy it as it is (``tools/deployment/infer.py`` loads it
by its path for that reason).

Every model file ``MODEL`` has a metadata file ``MODEL.json`` beside it
(written by ``tools/deployment/export.py``; :func:`metadata_path`), which
says how to feed the model and read its outputs::

    {"task": "detection" | "segmentation" | "classification",
     "input": {"name": "input", "shape": [1, 3, H, W]},
     "preprocess": {"to_rgb": true, "mean": [...], "std": [...],
                    "keep_ratio": true, "pad_value": 0.0},
     "classes": [...], "outputs": [...], "output_format": "...",
     "postprocess": {...}}

* **pre-processing** (:func:`preprocess`): the image (RGB, H x W x 3
  uint8) is resized to the model's input size, keeping its aspect ratio
  and padding bottom/right with ``pad_value`` when ``keep_ratio`` (else
  stretched), put in the model's channel order, normalised with
  ``mean``/``std`` and laid out as (1, 3, H, W) float32;
* **outputs**, by ``output_format``:

  - ``"dets_labels"`` (detectors in ONNX): ``dets`` (N, 5) float32
    ``x1, y1, x2, y2, score`` in input pixels, sorted by score, and
    ``labels`` (N,) int64; batch 1. Decoding and NMS are in the graph;
  - ``"dets_labels_masks"`` (Mask R-CNN in ONNX): the same plus ``masks``
    (N, H, W) bool at the input size, pasted and thresholded in the graph;
  - ``"boxes_scores"`` (detectors in ExecuTorch): ``boxes`` (1, A, 4)
    decoded boxes of every anchor and ``scores`` (1, A, C); the host runs
    :func:`detections_from_dense` (score threshold, top-k per level,
    per-class NMS: the same rule as the ONNX graph and mmdet);
  - ``"label_map"`` (segmentors): ``labels`` (N, H, W) int64 class indices
    at the input size (resize and argmax are in the graph);
  - ``"logits"`` (classifiers): (N, num_classes) float32.

* :func:`unfit_boxes` and :func:`unfit_label_map` take results from
  input pixels back to the original image.
"""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: Metadata format written by the export tool.
METADATA_FORMAT = 'mmmobilemamba-deploy/1'
#: Model file ending -> the runtime that loads it, and its pip package.
RUNTIME_PACKAGES = {'.onnx': ('onnxruntime', 'onnxruntime'),
                    '.pte': ('executorch', 'executorch')}


# --------------------------------------------------------------------------
# metadata


def metadata_path(model_path: str) -> str:
    """The metadata file of ``model_path``: ``MODEL.json`` beside it."""
    return model_path + '.json'


def load_metadata(model_path: str) -> dict:
    """The metadata of ``model_path``.

    Raises:
        FileNotFoundError: If the file ``MODEL.json`` does not exist.
        ValueError: If it is not a metadata file of this format.
    """
    path = metadata_path(model_path)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'no metadata file {path} beside {model_path}; export the model '
            'with tools/deployment/export.py, which writes it')
    with open(path) as f:
        meta = json.load(f)
    if meta.get('format') != METADATA_FORMAT:
        raise ValueError(f'{path} is not a {METADATA_FORMAT} metadata file '
                         f'(format {meta.get("format")!r})')
    return meta


# --------------------------------------------------------------------------
# images


def read_image(path: str) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), read with OpenCV or Pillow."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'image {path} not found')
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f'cannot read {path} as an image')
        return np.ascontiguousarray(img[..., ::-1])
    from PIL import Image
    with Image.open(path) as img:
        return np.asarray(img.convert('RGB'))


def resize_image(img: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W, C) uint8/float image to ``size_hw``
    (OpenCV's ``INTER_LINEAR``, as mmcv resizes; Pillow without OpenCV)."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if img.shape[:2] == (h, w):
        return img
    try:
        import cv2
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    except ImportError:
        from PIL import Image
        return np.asarray(Image.fromarray(img).resize((w, h),
                                                      Image.BILINEAR))


class Fit:
    """Where an image went inside the model's input.

    Args:
        scale_x, scale_y (float): Input pixels per image pixel.
        valid_hw (tuple[int, int]): The part of the input the image covers
            (the rest is padding), from the top-left corner.
        image_hw (tuple[int, int]): The original image size.
    """

    def __init__(self, scale_x: float, scale_y: float,
                 valid_hw: Tuple[int, int], image_hw: Tuple[int, int]):
        self.scale_x, self.scale_y = float(scale_x), float(scale_y)
        self.valid_hw = (int(valid_hw[0]), int(valid_hw[1]))
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))


def fit_size(image_hw: Sequence[int], input_hw: Sequence[int],
             keep_ratio: bool) -> Tuple[int, int]:
    """The size an image of ``image_hw`` is resized to inside an input of
    ``input_hw``: the whole input, or (keep_ratio) the largest size of the
    image's aspect ratio that fits."""
    h, w = int(image_hw[0]), int(image_hw[1])
    ih, iw = int(input_hw[0]), int(input_hw[1])
    if not keep_ratio:
        return ih, iw
    scale = min(ih / h, iw / w)
    return (min(ih, max(1, int(h * scale + 0.5))),
            min(iw, max(1, int(w * scale + 0.5))))


def preprocess(img: np.ndarray, meta: dict) -> Tuple[np.ndarray, Fit]:
    """An RGB uint8 image (H, W, 3) as the model's input.

    Returns:
        tuple: (input (1, 3, H, W) float32, :class:`Fit`).
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'expected an RGB image (H, W, 3), got shape '
                         f'{img.shape}')
    pre = meta['preprocess']
    ih, iw = meta['input']['shape'][-2:]
    h, w = img.shape[:2]
    rh, rw = fit_size((h, w), (ih, iw), pre.get('keep_ratio', False))
    resized = resize_image(img, (rh, rw)).astype(np.float32)
    if not pre.get('to_rgb', True):
        resized = resized[..., ::-1]  # the model takes BGR
    mean = np.asarray(pre['mean'], np.float32)
    std = np.asarray(pre['std'], np.float32)
    resized = (resized - mean) / std
    out = np.full((ih, iw, 3), pre.get('pad_value', 0.), np.float32)
    out[:rh, :rw] = resized
    x = np.ascontiguousarray(out.transpose(2, 0, 1)[None])
    return x, Fit(rw / w, rh / h, (rh, rw), (h, w))


def unfit_boxes(boxes: np.ndarray, fit: Fit, clip: bool = True
                ) -> np.ndarray:
    """Boxes (N, 4+) from input pixels to the original image's pixels (the
    columns after the 4th, e.g. the score, are kept)."""
    out = np.array(boxes, dtype=np.float32, copy=True)
    out[:, 0:4:2] /= fit.scale_x
    out[:, 1:4:2] /= fit.scale_y
    if clip:
        h, w = fit.image_hw
        out[:, 0:4:2] = out[:, 0:4:2].clip(0, w)
        out[:, 1:4:2] = out[:, 1:4:2].clip(0, h)
    return out


def unfit_label_map(labels: np.ndarray, fit: Fit) -> np.ndarray:
    """A label map (H, W) at the input size -> at the original image size:
    the padding is cropped and the rest resized with nearest neighbour."""
    vh, vw = fit.valid_hw
    labels = np.asarray(labels)[:vh, :vw]
    h, w = fit.image_hw
    if (vh, vw) == (h, w):
        return labels
    rows = np.minimum(((np.arange(h) + 0.5) * vh / h).astype(np.int64),
                      vh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * vw / w).astype(np.int64),
                      vw - 1)
    return labels[rows[:, None], cols[None, :]]


def unfit_masks(masks: np.ndarray, fit: Fit) -> np.ndarray:
    """Instance masks (N, H, W) at the input size -> (N, h, w) at the
    original image size (crop, nearest neighbour)."""
    masks = np.asarray(masks)
    if len(masks) == 0:
        return np.zeros((0, ) + fit.image_hw, bool)
    return np.stack([unfit_label_map(m, fit) for m in masks]).astype(bool)


# --------------------------------------------------------------------------
# detection post-processing (numpy): the host function of .pte detectors


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with boxes (N, 4), areas as (x2-x1)*(y2-y1)."""
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.maximum(0., xx2 - xx1) * np.maximum(0., yy2 - yy1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = inter / (area + areas - inter)
    return np.nan_to_num(iou, nan=0.)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float,
        max_num: int = -1) -> np.ndarray:
    """Greedy NMS of one class: indices kept, by descending score. A box is
    suppressed by a kept one when their IoU is > ``iou_thr``."""
    order = np.argsort(-scores, kind='stable')
    keep: List[int] = []
    suppressed = np.zeros(len(order), bool)
    boxes = boxes.astype(np.float32)
    for pos, i in enumerate(order):
        if suppressed[pos]:
            continue
        keep.append(int(i))
        if 0 < max_num <= len(keep):
            break
        rest = order[pos + 1:]
        suppressed[pos + 1:] |= box_iou_one(boxes[i], boxes[rest]) > iou_thr
    return np.asarray(keep, np.int64)


def multiclass_nms(boxes: np.ndarray, scores: np.ndarray,
                   labels: np.ndarray, iou_thr: float,
                   max_num: int) -> np.ndarray:
    """NMS within each class; indices kept, by descending score, at most
    ``max_num`` (all if <= 0)."""
    keep = [idx[nms(boxes[idx], scores[idx], iou_thr, max_num)]
            for idx in (np.nonzero(labels == c)[0] for c in np.unique(labels))]
    if not keep:
        return np.zeros(0, np.int64)
    keep = np.concatenate(keep)
    keep = keep[np.argsort(-scores[keep], kind='stable')]
    return keep[:max_num] if max_num > 0 else keep


def detections_from_dense(boxes: np.ndarray, scores: np.ndarray,
                          levels: Sequence[int], score_thr: float,
                          nms_pre: int, iou_thr: float, max_per_img: int,
                          min_bbox_size: float = -1
                          ) -> Tuple[np.ndarray, np.ndarray]:
    """Detections from the decoded boxes and scores of every anchor (what a
    ``.pte`` detector returns), by mmdet's rule for dense heads.

    Per level: the (anchor, class) pairs scoring above ``score_thr``, at
    most ``nms_pre`` best of them; over all levels: boxes whose width and
    height are > ``min_bbox_size`` (when >= 0), NMS per class at
    ``iou_thr``, the ``max_per_img`` best.

    Args:
        boxes (ndarray): (A, 4) or (1, A, 4) x1, y1, x2, y2, input pixels.
        scores (ndarray): (A, C) or (1, A, C) class scores.
        levels (Sequence[int]): Anchors per feature level (sum A).

    Returns:
        tuple: dets (N, 5) float32 (x1, y1, x2, y2, score) and labels (N,)
        int64, by descending score.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32)
    scores = scores.reshape(boxes.shape[0], -1)
    num_classes = scores.shape[1]
    if sum(levels) != boxes.shape[0]:
        raise ValueError(f'levels {list(levels)} add up to {sum(levels)} '
                         f'anchors, the model gave {boxes.shape[0]}')
    cand_boxes, cand_scores, cand_labels = [], [], []
    start = 0
    for count in levels:
        flat = scores[start:start + count].reshape(-1)
        valid = np.nonzero(flat > score_thr)[0]
        order = np.argsort(-flat[valid], kind='stable')
        if nms_pre > 0:
            order = order[:nms_pre]
        pick = valid[order]
        cand_boxes.append(boxes[start:start + count][pick // num_classes])
        cand_scores.append(flat[pick])
        cand_labels.append(pick % num_classes)
        start += count
    b = np.concatenate(cand_boxes)
    s = np.concatenate(cand_scores)
    lab = np.concatenate(cand_labels).astype(np.int64)
    if min_bbox_size >= 0:
        ok = ((b[:, 2] - b[:, 0]) > min_bbox_size) & (
            (b[:, 3] - b[:, 1]) > min_bbox_size)
        b, s, lab = b[ok], s[ok], lab[ok]
    keep = multiclass_nms(b, s, lab, iou_thr, max_per_img)
    dets = np.concatenate([b[keep], s[keep, None]], 1).astype(np.float32)
    return dets.reshape(-1, 5), lab[keep]


def decode_outputs(outputs: Sequence[np.ndarray], meta: dict) -> dict:
    """The raw outputs of a model as a result dict in input pixels:
    ``{'dets', 'labels'}`` (detection), ``{'label_map'}`` (segmentation),
    ``{'logits'}`` (classification); batch 1."""
    fmt = meta['output_format']
    if fmt in ('dets_labels', 'dets_labels_masks'):
        out = dict(dets=np.asarray(outputs[0], np.float32).reshape(-1, 5),
                   labels=np.asarray(outputs[1]).reshape(-1))
        if fmt == 'dets_labels_masks':
            out['masks'] = np.asarray(outputs[2]).astype(bool)
        return out
    if fmt == 'boxes_scores':
        post = meta['postprocess']
        dets, labels = detections_from_dense(
            outputs[0], outputs[1], post['levels'], post['score_thr'],
            post['nms_pre'], post['iou_thr'], post['max_per_img'],
            post.get('min_bbox_size', -1))
        return dict(dets=dets, labels=labels)
    if fmt == 'label_map':
        return dict(label_map=np.asarray(outputs[0])[0])
    if fmt == 'logits':
        return dict(logits=np.asarray(outputs[0])[0])
    raise ValueError(f'unknown output format {fmt!r}')


# --------------------------------------------------------------------------
# runtimes


def require(module: str, package: str, what: str):
    """Import ``module``; an ImportError naming the pip package if absent."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f'{what} needs the {package!r} package, which is not installed '
            f'({err}); install it with: pip install {package}') from err


def runtime_for(path: str) -> Tuple[str, str]:
    """(runtime module, pip package) for a model file, by its ending."""
    for ending, pair in RUNTIME_PACKAGES.items():
        if path.endswith(ending):
            return pair
    raise ValueError(f'cannot tell the runtime of {path}: expected a file '
                     f'ending in one of {sorted(RUNTIME_PACKAGES)}')


class Model:
    """An exported model file with its metadata, run in its runtime.

    ``Model(path)(image)`` takes an RGB uint8 image (H, W, 3) and returns a
    dict in the original image's pixels: ``dets`` (N, 5), ``labels`` (N,)
    for detectors; ``label_map`` (H, W) for segmentors; ``logits`` for
    classifiers. ``run(x)`` runs a preprocessed input and returns the raw
    outputs.

    Args:
        path (str): ``.onnx`` or ``.pte`` file, with ``path + '.json'``.
        threads (int, optional): Intra-op threads (onnxruntime) / threadpool
            size (ExecuTorch). Defaults to the runtime's default.
        native_library (str, optional): The runtime's native scan library,
            which a file exported with ``--native-scan`` needs (its metadata
            says ``native_scan``); ``mmmobilemamba.deploy.native_library(
            runtime)`` gives its path on the machine that built it: ship the
            file with the model. Defaults to None.
    """

    def __init__(self, path: str, threads: Optional[int] = None,
                 native_library: Optional[str] = None) -> None:
        if not osp.isfile(path):
            raise FileNotFoundError(f'model file {path} not found')
        self.path = path
        self.meta = load_metadata(path)
        module, package = runtime_for(path)
        if self.meta.get('native_scan') and native_library is None:
            raise ValueError(
                f'{path} was exported with --native-scan: its scans need '
                f'the {module} native library (native_library=PATH, '
                'infer.py --native-library PATH; '
                f'mmmobilemamba.deploy.native_library({module!r}) gives it)')
        if native_library is not None and not osp.isfile(native_library):
            raise FileNotFoundError(
                f'native library {native_library} not found')
        if module == 'onnxruntime':
            ort = require('onnxruntime', package, f'running {path}')
            opts = ort.SessionOptions()
            if native_library is not None:
                opts.register_custom_ops_library(native_library)
            if threads is not None:
                opts.intra_op_num_threads = int(threads)
                opts.inter_op_num_threads = 1
            opts.add_session_config_entry('session.intra_op.allow_spinning',
                                          '0')
            self.session = ort.InferenceSession(
                path, sess_options=opts, providers=['CPUExecutionProvider'])
            self.input_name = self.session.get_inputs()[0].name
            self._run = self._run_ort
        else:
            require('executorch', package, f'running {path}')
            if native_library is not None:  # registers its kernels
                import ctypes
                ctypes.CDLL(native_library, mode=ctypes.RTLD_GLOBAL)
            from executorch.runtime import Runtime
            if threads is not None:
                from executorch.extension.pybindings.portable_lib import \
                    _unsafe_reset_threadpool
                _unsafe_reset_threadpool(int(threads))
            program = Runtime.get().load_program(path)
            self.method = program.load_method('forward')
            self._run = self._run_pte

    def _run_ort(self, x: np.ndarray) -> List[np.ndarray]:
        return self.session.run(None, {self.input_name: x})

    def _run_pte(self, x: np.ndarray) -> List[np.ndarray]:
        import torch  # ExecuTorch's Python runtime takes torch tensors
        outs = self.method.execute([torch.from_numpy(x).contiguous()])
        return [o.numpy() if hasattr(o, 'numpy') else np.asarray(o)
                for o in outs]

    def run(self, x: np.ndarray) -> List[np.ndarray]:
        """Raw outputs of a preprocessed input (1, 3, H, W) float32."""
        return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def __call__(self, img: np.ndarray) -> Dict[str, np.ndarray]:
        x, fit = preprocess(img, self.meta)
        result = decode_outputs(self.run(x), self.meta)
        if 'dets' in result:
            result['dets'] = unfit_boxes(result['dets'], fit)
        if 'label_map' in result:
            result['label_map'] = unfit_label_map(result['label_map'], fit)
        if 'masks' in result:
            result['masks'] = unfit_masks(result['masks'], fit)
        return result


# --------------------------------------------------------------------------
# drawing


def palette(num: int, seed: int = 0) -> np.ndarray:
    """``num`` distinct-ish RGB colours (uint8)."""
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (max(1, num), 3)).astype(np.uint8)


def draw_label_map(img: np.ndarray, label_map: np.ndarray,
                   colors: Optional[np.ndarray] = None,
                   alpha: float = 0.5) -> np.ndarray:
    """The image with the label map blended over it in class colours."""
    label_map = np.asarray(label_map).astype(np.int64)
    if colors is None:
        colors = palette(int(label_map.max()) + 1)
    colour = np.asarray(colors, np.uint8)[label_map % len(colors)]
    out = img.astype(np.float32) * (1 - alpha) + colour * alpha
    return out.clip(0, 255).astype(np.uint8)


def draw_detections(img: np.ndarray, dets: np.ndarray, labels: np.ndarray,
                    classes: Sequence[str] = (), score_thr: float = 0.3,
                    colors: Optional[np.ndarray] = None,
                    masks: Optional[np.ndarray] = None) -> np.ndarray:
    """The image with boxes (and ``class score`` captions, and masks)
    drawn, those of score >= ``score_thr``."""
    from PIL import Image, ImageDraw
    if colors is None:
        colors = palette(max(len(classes), int(np.max(labels, initial=0)) + 1))
    img = np.array(img, np.uint8, copy=True)
    if masks is not None:
        for det, label, mask in zip(dets, labels, masks):
            if det[4] >= score_thr:
                colour = np.asarray(colors[int(label) % len(colors)], float)
                img[mask] = (0.5 * img[mask] + 0.5 * colour).astype(np.uint8)
    out = Image.fromarray(np.ascontiguousarray(img, np.uint8))
    draw = ImageDraw.Draw(out)
    for det, label in zip(dets, labels):
        if det[4] < score_thr:
            continue
        colour = tuple(int(c) for c in colors[int(label) % len(colors)])
        x1, y1, x2, y2 = (float(v) for v in det[:4])
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        name = classes[int(label)] if int(label) < len(classes) else \
            str(int(label))
        draw.text((x1 + 2, y1 + 1), f'{name} {det[4]:.2f}', fill=colour)
    return np.asarray(out)


def save_image(path: str, img: np.ndarray) -> None:
    """Write an RGB uint8 image (Pillow, else OpenCV)."""
    try:
        from PIL import Image
        Image.fromarray(np.ascontiguousarray(img, np.uint8)).save(path)
    except ImportError:
        import cv2
        cv2.imwrite(path, np.ascontiguousarray(img[..., ::-1]))
