"""The models the speed benchmarks time, built the same way by every
benchmark tool: random weights, random BatchNorm statistics (speed does not
depend on the values; BN folding needs non-trivial statistics to be a real
fold), nothing downloaded.
"""
import os.path as osp
import platform
from typing import Optional, Sequence, Tuple

import torch.nn as nn

from .random_norms import randomize_norms

def config_input_size(cfg) -> int:
    """The test crop size named by a config (its ``img_size``, else 224,
    when it names none)."""
    from mmmobilemamba.config_sizes import test_crop_size
    size = test_crop_size(cfg)
    return size[0] if size else int(cfg.get('img_size', 224))


#: What :func:`build_model` says it timed for an mmpretrain classifier.
CLASSIFIER = 'classifier (backbone + neck + head)'


def build_model(config: str, scan_backend: Optional[str] = None
                ) -> Tuple[nn.Module, Optional[Tuple[int, int]], str]:
    """The model of ``config`` to time, with random weights.

    Returns:
        tuple: the module (a classifier, or a detector's / segmentor's dense
        part), its default input (H, W) (a classifier's test crop, else the
        FLOP tables' size) and a description of what is timed
        (:data:`CLASSIFIER` for a classifier).
    """
    import mmmobilemamba  # noqa: F401  (registration)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmmobilemamba.analysis.dense_parts import DENSE_PARTS
    if not osp.isfile(config):
        raise FileNotFoundError(f'config {config} does not exist')
    cfg = Config.fromfile(config)
    backbone = cfg.model.get('backbone', {})
    if backbone.get('type') == 'MobileMamba':
        backbone['init_cfg'] = None  # speed does not need weights
        if scan_backend is not None:
            backbone['scan_backend'] = scan_backend
    scope = cfg.get('default_scope', 'mmpretrain')
    if scope in DENSE_PARTS:
        _, part, size, what = DENSE_PARTS[scope](cfg, None)
        return randomize_norms(part).eval(), size, what
    from mmpretrain.registry import MODELS
    cfg.model.pop('train_cfg', None)  # mixup/cutmix: training only
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    return (randomize_norms(model).eval(), (config_input_size(cfg), ) * 2,
            CLASSIFIER)


def build_peer(name: str) -> nn.Module:
    """An mmpretrain model by name, random weights (nothing is downloaded)."""
    from mmpretrain import get_model
    return randomize_norms(get_model(name, pretrained=False)).eval()


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100]."""
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
