"""The tests' one helpers module: repository paths, running tools/ as a user
would or loading one as a module, model builders and comparisons, and a
writer of the authors' release checkpoint layout. Session fixtures
(generated datasets) live in conftest.py."""
import functools
import importlib.util
import math
import os
import os.path as osp
import subprocess
import sys
import types
from typing import Dict, Sequence

import torch
import torch.nn as nn

from mmmobilemamba.analysis.random_norms import randomize_norms  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED = osp.join(osp.dirname(REPO), 'shared')


def run_tool(*args: str, cwd: str = REPO, env: dict = None,
             timeout: int = 900, check: bool = True) -> str:
    """Run ``python <args>`` from the repository root; return its output.

    On failure the output is part of the assertion message.
    """
    full_env = dict(os.environ)
    full_env.setdefault('PYTHONUNBUFFERED', '1')
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=full_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(args)} exited {proc.returncode}:\n'
                             f'{proc.stdout[-6000:]}')
    return proc.stdout if check else (proc.returncode, proc.stdout)


@functools.lru_cache(maxsize=None)
def load_tool(path: str) -> types.ModuleType:
    """A file of tools/ loaded as a module, e.g. the dataset generators.

    Tools are scripts, not a package, so the file is loaded by its path
    (once per session); its ``main`` does not run.

    Args:
        path (str): Path under tools/, e.g.
            ``'dataset_converters/make_coco.py'``.
    """
    name = 'tools_' + osp.splitext(path)[0].replace('/', '_')
    spec = importlib.util.spec_from_file_location(
        name, osp.join(REPO, 'tools', path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data_root_options(root: str) -> list:
    """``--cfg-options`` entries pointing every split's dataset at ``root``."""
    return [f'{split}_dataloader.dataset.data_root={root}'
            for split in ('train', 'val', 'test')]


def own_loader_options(config: str, max_workers: int = 2) -> list:
    """``--cfg-options`` entries giving a config's training dataloader back
    its own ``num_workers`` (at most ``max_workers``, to fit CI) and
    ``persistent_workers``; placed after entries that turned workers off,
    they win. The sampler is left as the config has it."""
    from mmengine.config import Config
    loader = Config.fromfile(config,
                             import_custom_modules=False).train_dataloader
    workers = min(int(loader.get('num_workers', 0)), max_workers)
    persistent = bool(loader.get('persistent_workers')) and workers > 0
    return [f'train_dataloader.num_workers={workers}',
            f'train_dataloader.persistent_workers={persistent}']


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def build_classifier(arch: str = 't2', **overrides) -> nn.Module:
    """The classifier of configs/_base_/models/mobilemamba-{arch}.py.

    Built under the 'mmpretrain' scope explicitly, so that a default scope
    left behind by another test (e.g. 'mmdet') cannot redirect the build.

    Args:
        arch (str): Variant. Defaults to 't2'.
        **overrides: Dotted config keys merged into ``model``, e.g.
            ``{'backbone.deploy': True}``.
    """
    import os.path as osp

    import mmmobilemamba  # noqa: F401  (registration)
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(
        osp.join(REPO, 'configs', '_base_', 'models',
                 f'mobilemamba-{arch.lower()}.py'))
    cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(cfg.model)


# the four 2x2 Haar filters (LL, b1, b2, b3), entries +-0.5 (WTE-Mamba)
HAAR = 0.5 * torch.tensor([[[1., 1.], [1., 1.]], [[1., 1.], [-1., -1.]],
                           [[1., -1.], [1., -1.]], [[1., -1.], [-1., 1.]]])


def release_state_dict(embed_dims: Sequence[int],
                       depths: Sequence[int],
                       kernels: Sequence[int] = (7, 5, 3),
                       global_ratios: Sequence[float] = (0.8, 0.7, 0.6),
                       local_ratios: Sequence[float] = (0.2, 0.2, 0.3),
                       num_classes: int = 10,
                       seed: int = 0) -> Dict[str, torch.Tensor]:
    """A state_dict in the authors' release layout, from the key list of
    docs/architecture.md#checkpoint-layout, independently of the converter."""
    from mmmobilemamba.models import split_channels
    gen = torch.Generator().manual_seed(seed)
    sd: Dict[str, torch.Tensor] = {}

    def rand(*shape, low=-0.1, high=0.1):
        return torch.rand(shape, generator=gen) * (high - low) + low

    def bn(prefix, c):
        sd[f'{prefix}.weight'] = rand(c, low=0.5, high=1.5)
        sd[f'{prefix}.bias'] = rand(c)
        sd[f'{prefix}.running_mean'] = rand(c)
        sd[f'{prefix}.running_var'] = rand(c, low=0.5, high=1.5)
        sd[f'{prefix}.num_batches_tracked'] = torch.tensor(7)

    def conv_bn(prefix, cin, cout, k=1, groups=1):
        sd[f'{prefix}.c.weight'] = rand(cout, cin // groups, k, k)
        bn(f'{prefix}.bn', cout)

    def ffn(prefix, c):
        conv_bn(f'{prefix}.pw1', c, 2 * c)
        conv_bn(f'{prefix}.pw2', 2 * c, c)

    def block(prefix, c, k, gr, lr):
        conv_bn(f'{prefix}.dw0.m', c, c, 3, c)
        ffn(f'{prefix}.ffn0.m', c)
        cg, cl, _ = split_channels(c, gr, lr)
        att = f'{prefix}.mixer.m.attn'
        loc = f'{att}.local_op'
        sd[f'{loc}.dwconv3x3.weight'] = rand(cl, 1, k, k)
        bn(f'{loc}.bn1', cl)
        sd[f'{loc}.dwconv1x1.weight'] = rand(cl, 1, 1, 1)
        bn(f'{loc}.bn2', cl)
        glo = f'{att}.global_op'
        sd[f'{glo}.wt_filter'] = HAAR[:, None].repeat(cg, 1, 1, 1)
        sd[f'{glo}.iwt_filter'] = HAAR[:, None].repeat(cg, 1, 1, 1)
        di, r = 2 * cg, math.ceil(cg / 16)
        ga = f'{glo}.global_atten'
        sd[f'{ga}.x_proj_weight'] = rand(2, r + 2, di)
        sd[f'{ga}.Ds'] = rand(2 * di, low=0.5, high=1.5)
        sd[f'{ga}.A_logs'] = rand(2 * di, 1)
        sd[f'{ga}.dt_projs_weight'] = rand(2, di, r)
        sd[f'{ga}.dt_projs_bias'] = rand(2, di)
        sd[f'{ga}.out_norm.weight'] = rand(di, low=0.5, high=1.5)
        sd[f'{ga}.out_norm.bias'] = rand(di)
        conv_bn(f'{ga}.in_proj', cg, 2 * di)
        sd[f'{ga}.conv2d.weight'] = rand(di, 1, 3, 3)
        sd[f'{ga}.conv2d.bias'] = rand(di)
        conv_bn(f'{ga}.out_proj', di, cg)
        sd[f'{glo}.base_scale.weight'] = rand(1, cg, 1, 1, low=0.5, high=1.5)
        sd[f'{glo}.wavelet_convs.0.weight'] = rand(4 * cg, 1, k, k)
        sd[f'{glo}.wavelet_scale.0.weight'] = rand(1, 4 * cg, 1, 1)
        conv_bn(f'{att}.proj.1', c, c)
        conv_bn(f'{prefix}.dw1.m', c, c, 3, c)
        ffn(f'{prefix}.ffn1.m', c)

    c0 = embed_dims[0]
    widths = [3, c0 // 8, c0 // 4, c0 // 2, c0]
    for i in range(4):
        conv_bn(f'patch_embed.{2 * i}', widths[i], widths[i + 1], 3)
    for i in range(depths[0]):
        block(f'blocks1.{i}', c0, kernels[0], global_ratios[0],
              local_ratios[0])
    for s in (1, 2):
        cin, cout, name = embed_dims[s - 1], embed_dims[s], f'blocks{s + 1}'
        conv_bn(f'{name}.0.0.m', cin, cin, 3, cin)
        ffn(f'{name}.0.1.m', cin)
        conv_bn(f'{name}.1.conv1', cin, 4 * cin)
        conv_bn(f'{name}.1.conv2', 4 * cin, 4 * cin, 3, 4 * cin)
        sd[f'{name}.1.se.fc1.weight'] = rand(cin, 4 * cin, 1, 1)
        sd[f'{name}.1.se.fc1.bias'] = rand(cin)
        sd[f'{name}.1.se.fc2.weight'] = rand(4 * cin, cin, 1, 1)
        sd[f'{name}.1.se.fc2.bias'] = rand(4 * cin)
        conv_bn(f'{name}.1.conv3', 4 * cin, cout)
        conv_bn(f'{name}.2.0.m', cout, cout, 3, cout)
        ffn(f'{name}.2.1.m', cout)
        for i in range(depths[s]):
            block(f'{name}.{3 + i}', cout, kernels[s], global_ratios[s],
                  local_ratios[s])
    bn('head.bn', embed_dims[2])
    sd['head.l.weight'] = rand(num_classes, embed_dims[2])
    sd['head.l.bias'] = rand(num_classes)
    return sd


class _Marker:
    """Unpickling this creates the directory ``path`` (os.makedirs)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path, 0o777, True))


def write_payload_checkpoint(path: str, marker: str,
                             state_dict: dict = None) -> None:
    """A checkpoint with a state dict plus an object whose unpickling would
    run code: here it only creates the directory ``marker``."""
    torch.save({'state_dict': dict(state_dict or {'w': torch.ones(2)}),
                'meta': {}, 'payload': _Marker(marker)}, path)


# kill-and-resume tests: run tools/train.py, compare two runs bit for bit
# the kill-and-resume test configs import tests.data.kill_hook
TRAIN_ENV = dict(PYTHONPATH=os.pathsep.join(
    p for p in (REPO, os.environ.get('PYTHONPATH')) if p))


def train(config, work_dir, options, *extra, check=True, env=None):
    """tools/train.py CONFIG --work-dir DIR [extra] --cfg-options ..."""
    return run_tool('tools/train.py', config, '--work-dir', work_dir,
                    *extra, '--cfg-options', *options,
                    env=dict(TRAIN_ENV, **(env or {})), check=check)


def load(path):
    """A Runner checkpoint, through the package's weights-only loader (so
    every test that reads one also checks that it loads without trust)."""
    from mmmobilemamba.checkpoint import load_checkpoint_file
    return load_checkpoint_file(path, map_location='cpu')


def assert_same_weights(ckpt_a, ckpt_b):
    """Model, EMA and optimizer state of two checkpoints are identical."""
    a, b = load(ckpt_a), load(ckpt_b)
    for key in ('state_dict', 'ema_state_dict'):
        if key not in a and key not in b:
            continue
        assert a[key].keys() == b[key].keys(), key
        differ = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert not differ, f'{key}: {len(differ)} tensors differ, e.g. ' \
            f'{differ[:3]} ({ckpt_a} vs {ckpt_b})'
    opt_a = a['optimizer'].get('state', a['optimizer'])
    opt_b = b['optimizer'].get('state', b['optimizer'])
    assert opt_a.keys() == opt_b.keys()
    for k in opt_a:
        for name, value in opt_a[k].items():
            assert torch.equal(torch.as_tensor(value),
                               torch.as_tensor(opt_b[k][name])), (k, name)


def last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def quantized_weight_consumers(path: str) -> set:
    """Operator types fed by a quantized weight (a DequantizeLinear of an
    initializer or Constant) in the ONNX file ``path``."""
    import onnx
    graph = onnx.load(path).graph
    constants = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == 'Constant' for o in n.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    return {op for node in graph.node if node.op_type == 'DequantizeLinear'
            and node.input[0] in constants
            for op in consumers.get(node.output[0], [])}
