"""Fold the BatchNorms of a MobileMamba model into convs/Linear (deploy mode).

    python tools/deployment/fuse_bn.py CONFIG CHECKPOINT OUT
        [--cfg-options k=v ...] [--check-size H W] [--trust-checkpoint]

Works for classifiers, detectors and segmentors: the model is converted
with ``mmmobilemamba.deploy.convert(model, 'fused')`` (MobileMamba's Conv-BNs
and BNLinearClsHead; mmpretrain's RepVGG/MobileOne switch themselves).
Before saving, the backbone's outputs of the fused and unfused models are
compared on a random input and the largest relative difference is
printed (an error above 1e-4).

The fused checkpoint keeps the original ``meta`` (class names etc.) and loads
with the options the tool prints, e.g.::

    python tools/test.py CONFIG OUT \
        --cfg-options model.backbone.deploy=True model.head.deploy=True

CHECKPOINT loads without unpickling arbitrary objects (``--trust-checkpoint``
lifts that for a file you trust); OUT is written under a temporary name and
renamed when complete.
"""
import argparse
import copy
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

import mmmobilemamba  # noqa: F401  (registration)
from mmmobilemamba.checkpoint import (add_trust_argument,
                                      save_checkpoint_file, trust_checkpoints)
from mmmobilemamba.deploy.convert import convert, count_converted
from mmmobilemamba.utils.output_check import report_difference

TOLERANCE = 1e-4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='unfused checkpoint')
    parser.add_argument('out', help='where to write the fused checkpoint')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--check-size', nargs=2, type=int,
                        default=(224, 224), metavar=('H', 'W'),
                        help='input size of the equivalence check')
    add_trust_argument(parser)
    return parser.parse_args(argv)


def deploy_options(model: torch.nn.Module) -> list:
    """The --cfg-options that build ``model``'s modules in fused form."""
    options = []
    for name in ('backbone', 'head'):
        module = getattr(model, name, None)
        if module is not None and hasattr(module, 'deploy'):
            options.append(f'model.{name}.deploy=True')
    return options


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    if cfg.model.get('type') == 'MobileMambaLoRA':
        print('error: a LoRA config; fold the adapters into the base weights '
              'first (tools/model_converters/merge_lora.py CONFIG CHECKPOINT '
              'OUT --out-config OUT.py), then fuse OUT with OUT.py',
              file=sys.stderr)
        return 1
    backbone_cfg = cfg.model.get('backbone')
    if backbone_cfg is not None and backbone_cfg.get('deploy'):
        print('error: the config already builds a fused backbone '
              '(deploy=True); pass the unfused config', file=sys.stderr)
        return 1
    if backbone_cfg is not None:
        backbone_cfg['init_cfg'] = None  # weights come from CHECKPOINT
    model = MODELS.build(cfg.model)
    # strict: a mismatching checkpoint is an error, never a partial fuse.
    with trust_checkpoints(args.trust_checkpoint):
        checkpoint = load_checkpoint(model, args.checkpoint,
                                     map_location='cpu', strict=True)
    model.eval()
    if not count_converted(model, 'fused'):
        print(f'error: {type(model).__name__} has no BatchNorm to fold and '
              'nothing that re-parameterises itself', file=sys.stderr)
        return 1
    reference = copy.deepcopy(model)
    convert(model, 'fused', inplace=True)

    backbone = getattr(model, 'backbone', None)
    if backbone is not None:
        in_channels = getattr(backbone, 'in_channels', 3)
        x = torch.rand(1, in_channels, *args.check_size)
        with torch.no_grad():
            outs = backbone(x)
            refs = reference.backbone(x)
        if report_difference('fused vs unfused backbone outputs', outs,
                             refs, TOLERANCE):
            return 1

    meta = dict(checkpoint.get('meta', {})) if isinstance(checkpoint,
                                                          dict) else {}
    options = deploy_options(model)
    meta.update(fused_from=args.checkpoint, deploy_cfg_options=options)
    save_checkpoint_file(dict(state_dict=model.state_dict(), meta=meta),
                         args.out)
    print(f'fused checkpoint written to {args.out}; load it with\n'
          f'    --cfg-options {" ".join(options)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
