"""Convert release checkpoints (docs/architecture.md#checkpoint-layout) to this
project's classifier layout (``backbone.*`` + ``head.*``).

The conversion is all-or-nothing: every source key must be consumed and every
target key filled with a tensor of the right shape, otherwise
:class:`ConversionError` lists the offending keys. The two frozen Haar filter
tensors of each wavelet module are consumed by checking that they hold the
Haar filters (this project rebuilds them from PyWavelets as non-persistent
buffers), so a checkpoint with other filters is refused rather than silently
changed.

Key mapping (release -> ours, ``backbone.`` omitted; ``D`` below is
``stages.{1,2}.downsample``)::

    patch_embed.{0,2,4,6}.c / .bn           stem.convs.{0..3}.conv / .bn
    blocks1.{i}                             stages.0.blocks.{i}
    blocks{2,3}.0.0.m / .0.1.m              D.pre_dw / D.pre_ffn
    blocks{2,3}.1.conv1/conv2/se/conv3      D.merge.expand/dw/se/project
    blocks{2,3}.2.0.m / .2.1.m              D.post_dw / D.post_ffn
    blocks{2,3}.{3+i}                       stages.{1,2}.blocks.{i}
    (block) dw0.m, ffn0.m, dw1.m, ffn1.m    dw1, ffn1, dw2, ffn2
    (block) mixer.m.attn.proj.1             mrffi.proj
    (block) mixer.m.attn.local_op.{dwconv3x3,bn1,dwconv1x1,bn2}
                                            mrffi.local_op.{spatial.0.conv,
                                            spatial.0.bn, channel.conv,
                                            channel.bn}
    (block) mixer.m.attn.global_op.global_atten.*
                                            mrffi.global_op.ss2d.*
    head.bn / head.l                        head.bn / head.fc

and inside Conv-BNs ``c`` -> ``conv``. Per-direction SS2D tensors keep their
(direction-major) layout, so they are copied unchanged.
"""
import re
from typing import Dict, List, Optional, Tuple

import torch

from .loader import load_checkpoint_file, save_checkpoint_file
from mmmobilemamba.models.backbones.mobilemamba import (MobileMamba,
                                                        arch_settings)
from mmmobilemamba.ops.wavelet import haar_filters

StateDict = Dict[str, torch.Tensor]


class ConversionError(KeyError):
    """A checkpoint could not be converted completely."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ''


_SSD = 'mrffi.global_op.ss2d.'
# Inside a MobileMamba block: (release regex, our name template).
_BLOCK_RULES: List[Tuple[str, str]] = [
    (r'dw0\.m\.c\.(.+)', 'dw1.conv.{0}'),
    (r'dw0\.m\.bn\.(.+)', 'dw1.bn.{0}'),
    (r'dw1\.m\.c\.(.+)', 'dw2.conv.{0}'),
    (r'dw1\.m\.bn\.(.+)', 'dw2.bn.{0}'),
    (r'ffn0\.m\.(pw[12])\.c\.(.+)', 'ffn1.{0}.conv.{1}'),
    (r'ffn0\.m\.(pw[12])\.bn\.(.+)', 'ffn1.{0}.bn.{1}'),
    (r'ffn1\.m\.(pw[12])\.c\.(.+)', 'ffn2.{0}.conv.{1}'),
    (r'ffn1\.m\.(pw[12])\.bn\.(.+)', 'ffn2.{0}.bn.{1}'),
    (r'mixer\.m\.attn\.proj\.1\.c\.(.+)', 'mrffi.proj.conv.{0}'),
    (r'mixer\.m\.attn\.proj\.1\.bn\.(.+)', 'mrffi.proj.bn.{0}'),
    (r'mixer\.m\.attn\.local_op\.dwconv3x3\.(.+)',
     'mrffi.local_op.spatial.0.conv.{0}'),
    (r'mixer\.m\.attn\.local_op\.bn1\.(.+)',
     'mrffi.local_op.spatial.0.bn.{0}'),
    (r'mixer\.m\.attn\.local_op\.dwconv1x1\.(.+)',
     'mrffi.local_op.channel.conv.{0}'),
    (r'mixer\.m\.attn\.local_op\.bn2\.(.+)', 'mrffi.local_op.channel.bn.{0}'),
    (r'mixer\.m\.attn\.global_op\.base_scale\.weight',
     'mrffi.global_op.base_scale'),
    (r'mixer\.m\.attn\.global_op\.wavelet_convs\.0\.weight',
     'mrffi.global_op.wavelet_conv.weight'),
    (r'mixer\.m\.attn\.global_op\.wavelet_scale\.0\.weight',
     'mrffi.global_op.wavelet_scale'),
    (r'mixer\.m\.attn\.global_op\.global_atten\.x_proj_weight',
     _SSD + 'x_proj_weight'),
    (r'mixer\.m\.attn\.global_op\.global_atten\.dt_projs_weight',
     _SSD + 'dt_proj_weight'),
    (r'mixer\.m\.attn\.global_op\.global_atten\.dt_projs_bias',
     _SSD + 'dt_proj_bias'),
    (r'mixer\.m\.attn\.global_op\.global_atten\.(Ds|A_logs)', _SSD + '{0}'),
    (r'mixer\.m\.attn\.global_op\.global_atten\.out_norm\.(.+)',
     _SSD + 'out_norm.{0}'),
    (r'mixer\.m\.attn\.global_op\.global_atten\.conv2d\.(.+)',
     _SSD + 'dwconv.{0}'),
    (r'mixer\.m\.attn\.global_op\.global_atten\.(in_proj|out_proj)\.c\.(.+)',
     _SSD + '{0}.conv.{1}'),
    (r'mixer\.m\.attn\.global_op\.global_atten\.(in_proj|out_proj)\.bn\.(.+)',
     _SSD + '{0}.bn.{1}'),
]
# The frozen Haar filters: checked, not copied.
_HAAR_KEY = re.compile(
    r'blocks[123]\.\d+\.mixer\.m\.attn\.global_op\.(wt|iwt)_filter')
# Bricks of the downsampling in stages 2 and 3 (block index 0, 1, 2).
_DOWNSAMPLE_RULES: List[Tuple[str, str]] = [
    (r'0\.0\.m\.c\.(.+)', 'pre_dw.conv.{0}'),
    (r'0\.0\.m\.bn\.(.+)', 'pre_dw.bn.{0}'),
    (r'0\.1\.m\.(pw[12])\.c\.(.+)', 'pre_ffn.{0}.conv.{1}'),
    (r'0\.1\.m\.(pw[12])\.bn\.(.+)', 'pre_ffn.{0}.bn.{1}'),
    (r'1\.conv1\.c\.(.+)', 'merge.expand.conv.{0}'),
    (r'1\.conv1\.bn\.(.+)', 'merge.expand.bn.{0}'),
    (r'1\.conv2\.c\.(.+)', 'merge.dw.conv.{0}'),
    (r'1\.conv2\.bn\.(.+)', 'merge.dw.bn.{0}'),
    (r'1\.se\.(fc[12])\.(.+)', 'merge.se.{0}.{1}'),
    (r'1\.conv3\.c\.(.+)', 'merge.project.conv.{0}'),
    (r'1\.conv3\.bn\.(.+)', 'merge.project.bn.{0}'),
    (r'2\.0\.m\.c\.(.+)', 'post_dw.conv.{0}'),
    (r'2\.0\.m\.bn\.(.+)', 'post_dw.bn.{0}'),
    (r'2\.1\.m\.(pw[12])\.c\.(.+)', 'post_ffn.{0}.conv.{1}'),
    (r'2\.1\.m\.(pw[12])\.bn\.(.+)', 'post_ffn.{0}.bn.{1}'),
]
_NUM_DOWNSAMPLE_ENTRIES = 3  # blocks{2,3}.0 / .1 / .2


def _apply(rules: List[Tuple[str, str]], name: str) -> Optional[str]:
    for pattern, template in rules:
        match = re.fullmatch(pattern, name)
        if match:
            return template.format(*match.groups())
    return None


def map_release_key(key: str) -> Optional[str]:
    """Our classifier key for one release key, or None if none matches.

    The Haar filter keys map to None too (they are checked, not copied).
    """
    match = re.fullmatch(r'patch_embed\.([0246])\.(c|bn)\.(.+)', key)
    if match:
        index, kind, rest = match.groups()
        kind = 'conv' if kind == 'c' else 'bn'
        return f'backbone.stem.convs.{int(index) // 2}.{kind}.{rest}'
    match = re.fullmatch(r'blocks1\.(\d+)\.(.+)', key)
    if match:
        inner = _apply(_BLOCK_RULES, match.group(2))
        return (None if inner is None else
                f'backbone.stages.0.blocks.{match.group(1)}.{inner}')
    match = re.fullmatch(r'blocks([23])\.(\d+)\.(.+)', key)
    if match:
        stage = int(match.group(1)) - 1
        index = int(match.group(2))
        if index < _NUM_DOWNSAMPLE_ENTRIES:
            inner = _apply(_DOWNSAMPLE_RULES, f'{index}.{match.group(3)}')
            return (None if inner is None else
                    f'backbone.stages.{stage}.downsample.{inner}')
        inner = _apply(_BLOCK_RULES, match.group(3))
        return (None if inner is None else f'backbone.stages.{stage}.blocks.'
                f'{index - _NUM_DOWNSAMPLE_ENTRIES}.{inner}')
    match = re.fullmatch(r'head\.(bn|l)\.(.+)', key)
    if match:
        layer = 'bn' if match.group(1) == 'bn' else 'fc'
        return f'head.{layer}.{match.group(2)}'
    return None


def extract_state_dict(checkpoint: dict, ema: bool = False) -> StateDict:
    """The model weights inside a release checkpoint.

    Accepts a plain state_dict or a trainer dict holding 'net' (and 'net_E',
    the EMA weights); a 'module.' prefix on every key is removed.

    Args:
        checkpoint (dict): What ``torch.load`` returned.
        ema (bool): Take the EMA weights ('net_E'). Defaults to False.

    Returns:
        dict: name -> tensor.
    """
    if not isinstance(checkpoint, dict):
        raise ConversionError(f'expected a dict checkpoint, got '
                              f'{type(checkpoint).__name__}')
    wrapper = 'net_E' if ema else 'net'
    if 'net' in checkpoint or 'net_E' in checkpoint:
        if wrapper not in checkpoint:
            raise ConversionError(
                f'checkpoint has no {wrapper!r} entry (keys: '
                f'{sorted(checkpoint)}); '
                + ('drop --ema' if ema else 'pass --ema for the EMA weights'))
        state = checkpoint[wrapper]
    elif ema:
        raise ConversionError(f'--ema needs a trainer checkpoint with '
                              f"'net_E'; this one has keys "
                              f'{sorted(checkpoint)[:8]}...')
    elif isinstance(checkpoint.get('state_dict'), dict):
        state = checkpoint['state_dict']
    else:
        state = checkpoint
    if hasattr(state, 'state_dict') and not isinstance(state, dict):
        state = state.state_dict()  # a pickled module
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def infer_arch(state: StateDict) -> dict:
    """Embed dims and depths of a release-layout state_dict.

    Returns:
        dict: ``dict(embed_dims=..., depths=...)``.
    """
    needed = ('patch_embed.6.c.weight', 'blocks2.1.conv3.c.weight',
              'blocks3.1.conv3.c.weight')
    absent = [k for k in needed if k not in state]
    if absent:
        raise ConversionError(f'not a released MobileMamba checkpoint: '
                              f'missing {absent}; first keys: '
                              f'{sorted(state)[:5]}')
    dims = tuple(int(state[k].shape[0]) for k in needed)

    def count(prefix: str, offset: int) -> int:
        idx = {int(m.group(1)) for k in state
               for m in [re.match(rf'{prefix}\.(\d+)\.', k)] if m}
        return len([i for i in idx if i >= offset])

    depths = (count('blocks1', 0), count('blocks2', _NUM_DOWNSAMPLE_ENTRIES),
              count('blocks3', _NUM_DOWNSAMPLE_ENTRIES))
    return dict(embed_dims=dims, depths=depths)


def arch_name(arch: dict) -> Optional[str]:
    """The first released variant with these dims and depths, else None."""
    for name, setting in arch_settings.items():
        if (tuple(setting['embed_dims']) == tuple(arch['embed_dims'])
                and tuple(setting['depths']) == tuple(arch['depths'])):
            return name.upper()
    return None


def target_shapes(arch: dict, num_classes: int) -> Dict[str, torch.Size]:
    """Every key (and shape) of this project's classifier for ``arch``."""
    with torch.device('meta'):
        backbone = MobileMamba(arch=arch)
    shapes = {f'backbone.{k}': v.shape
              for k, v in backbone.state_dict().items()}
    c2 = arch['embed_dims'][-1]
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        shapes[f'head.bn.{name}'] = torch.Size([c2])
    shapes['head.bn.num_batches_tracked'] = torch.Size([])
    shapes['head.fc.weight'] = torch.Size([num_classes, c2])
    shapes['head.fc.bias'] = torch.Size([num_classes])
    return shapes


def _check_haar(key: str, value: torch.Tensor) -> Optional[str]:
    dec, rec = haar_filters(torch.float64)
    ref = dec if '.wt_filter' in key else rec
    if value.dim() != 4 or value.shape[0] % 4 or value.shape[1:] != (1, 2, 2):
        return f'{key}: shape {tuple(value.shape)} is not (4C, 1, 2, 2)'
    expected = ref.repeat(value.shape[0] // 4, 1, 1, 1)
    if not torch.allclose(value.double(), expected, atol=1e-6):
        return f'{key}: holds other filters than the Haar wavelet'
    return None


def convert_release_state_dict(state: StateDict,
                               arch: Optional[dict] = None
                               ) -> Tuple[StateDict, dict]:
    """Convert a release-layout state_dict to our classifier layout.

    Args:
        state (dict): The release's weights, in its key names.
        arch (dict, optional): ``embed_dims``/``depths`` (and any other
            arch field); None infers them from the tensors. Defaults to None.

    Returns:
        tuple[dict, dict]: The converted state_dict and meta information
        (``arch`` dict, ``arch_name`` if a released variant, ``num_classes``).

    Raises:
        ConversionError: Listing every unused source key, unfilled target key
            and shape mismatch.
    """
    arch = dict(infer_arch(state) if arch is None else arch)
    if 'head.l.weight' not in state:
        raise ConversionError('checkpoint has no classifier head '
                              "('head.l.weight'); cannot build the classifier "
                              'layout')
    num_classes = int(state['head.l.weight'].shape[0])
    expected = target_shapes(arch, num_classes)

    converted: StateDict = {}
    unused, bad_filters, bad_shapes, duplicates = [], [], [], []
    for key, value in state.items():
        if _HAAR_KEY.fullmatch(key):
            problem = _check_haar(key, value)
            if problem:
                bad_filters.append(problem)
            continue
        target = map_release_key(key)
        if target is None or target not in expected:
            unused.append(key)
            continue
        if target in converted:
            duplicates.append(key)
            continue
        if value.shape != expected[target]:
            bad_shapes.append(f'{key} -> {target}: {tuple(value.shape)} != '
                              f'{tuple(expected[target])}')
            continue
        converted[target] = value.clone()
    unfilled = sorted(set(expected) - set(converted))
    problems = []
    if unused:
        problems.append(f'{len(unused)} source keys not used: '
                        f'{sorted(unused)}')
    if unfilled:
        problems.append(f'{len(unfilled)} target keys not filled: {unfilled}')
    if bad_shapes:
        problems.append(f'{len(bad_shapes)} shape mismatches: {bad_shapes}')
    if bad_filters:
        problems.append(f'wavelet filters: {bad_filters}')
    if duplicates:
        problems.append(f'keys mapped twice: {duplicates}')
    if problems:
        raise ConversionError(f'cannot convert the checkpoint (arch '
                              f'{arch}): ' + '; '.join(problems))
    meta = dict(arch=arch, arch_name=arch_name(arch), num_classes=num_classes)
    return converted, meta


def convert_release_checkpoint(src: str, dst: str, ema: bool = False) -> dict:
    """Read a release checkpoint file, convert it, save it for mmpretrain.

    SRC is read by :func:`mmmobilemamba.checkpoint.load_checkpoint_file`
    (a file holding more than weights needs trust; see there), and DST is
    written under a temporary name and renamed when complete.

    Args:
        src (str): Release checkpoint (plain state_dict or trainer dict).
        dst (str): Output path; saved as ``{'state_dict', 'meta'}``.
        ema (bool): Convert the EMA weights ('net_E'). Defaults to False.

    Returns:
        dict: The meta information saved with the weights.
    """
    checkpoint = load_checkpoint_file(src, map_location='cpu')
    state = extract_state_dict(checkpoint, ema=ema)
    converted, meta = convert_release_state_dict(state)
    meta.update(converted_from=str(src), ema=ema,
                num_source_keys=len(state))
    save_checkpoint_file(dict(state_dict=converted, meta=meta), dst)
    return meta
