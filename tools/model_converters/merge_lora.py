"""Fold a LoRA checkpoint into its base: the plain model's checkpoint.

    python tools/model_converters/merge_lora.py CONFIG CHECKPOINT OUT
        [--out-config OUT_CONFIG] [--check-size H W]
        [--cfg-options k=v ...] [--trust-checkpoint]

CONFIG is a LoRA config (``model.type='MobileMambaLoRA'``); its
``init_cfg`` gives the base weights and CHECKPOINT (an adapter-only
checkpoint, e.g. a Runner checkpoint of that config) must have been trained
on them. Each adapter ``B @ A`` is added to its weight, and OUT holds the
plain model's state dict: the same keys and module classes as the base
model, so it is tested, BN-fused (tools/deployment/fuse_bn.py) and exported
(tools/deployment/export_*.py) with the plain config, which
``--out-config`` writes (the LoRA config's ``model.module``, with the
backbone's ``init_cfg`` cleared: the weights are in OUT).

Before writing, the backbone outputs of the merged and the adapted model
are compared on a random input (an error above 1e-5 relative). CHECKPOINT
loads without unpickling arbitrary objects (``--trust-checkpoint`` lifts
that for a file you trust); OUT is written under a temporary name and
renamed when complete.
"""
import argparse
import copy
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope

import mmmobilemamba  # noqa: F401  (registration)
from mmmobilemamba.checkpoint import (add_trust_argument,
                                      load_checkpoint_file,
                                      save_checkpoint_file, trust_checkpoints)
from mmmobilemamba.peft import load_lora_checkpoint, merge_lora
from mmmobilemamba.utils.output_check import report_difference

TOLERANCE = 1e-5
LORA_TYPE = 'MobileMambaLoRA'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='LoRA config file')
    parser.add_argument('checkpoint', help='LoRA (adapter-only) checkpoint')
    parser.add_argument('out', help='where to write the merged checkpoint')
    parser.add_argument('--out-config',
                        help='also write the plain config of OUT here')
    parser.add_argument('--check-size', nargs=2, type=int, default=(64, 64),
                        metavar=('H', 'W'),
                        help='input size of the equivalence check')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    add_trust_argument(parser)
    return parser.parse_args(argv)


def plain_config(cfg: Config) -> Config:
    """The config of the merged model: ``model.module``, the backbone's
    pretrained ``init_cfg`` cleared."""
    plain = copy.deepcopy(cfg)
    plain.model = plain.model.module
    if plain.model.get('backbone') is not None:
        plain.model.backbone.init_cfg = None
    return plain


def _backbone_outputs(model, x):
    with torch.no_grad():
        outs = model.backbone(x)
    return outs if isinstance(outs, (list, tuple)) else (outs, )


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.model.get('type') != LORA_TYPE:
        print(f'error: {args.config} is not a LoRA config (model.type is '
              f'{cfg.model.get("type")!r}, not {LORA_TYPE!r})',
              file=sys.stderr)
        return 1
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    with trust_checkpoints(args.trust_checkpoint):
        # a copy: building changes some entries in place (mmpretrain appends
        # the no-augmentation probability to train_cfg.probs), and cfg is
        # dumped as the plain config below
        model = MODELS.build(copy.deepcopy(cfg.model))  # base via init_cfg
        load_lora_checkpoint(model, args.checkpoint, strict=True)
        checkpoint = load_checkpoint_file(args.checkpoint, 'cpu')
    model.eval()

    backbone = getattr(model.model, 'backbone', None)
    x = torch.rand(2, getattr(backbone, 'in_channels', 3), *args.check_size)
    refs = _backbone_outputs(model.model, x) if backbone is not None else ()
    plain = merge_lora(model).eval()
    if refs and report_difference('merged vs adapted backbone outputs',
                                  _backbone_outputs(plain, x), refs,
                                  TOLERANCE):
        return 1

    meta = dict(checkpoint.get('meta', {})) if isinstance(checkpoint,
                                                          dict) else {}
    meta.pop('lora', None)
    meta.update(lora_merged_from=args.checkpoint)
    state = {k: v.detach().cpu() for k, v in plain.state_dict().items()}
    save_checkpoint_file(dict(state_dict=state, meta=meta), args.out)
    print(f'merged checkpoint written to {args.out} ({len(state)} keys)')
    if args.out_config:
        plain_config(cfg).dump(args.out_config)
        print(f'its config: {args.out_config}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
