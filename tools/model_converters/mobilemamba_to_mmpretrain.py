"""Convert a released MobileMamba checkpoint to this project's classifier.

    python tools/model_converters/mobilemamba_to_mmpretrain.py SRC DST [--ema]
        [--trust-checkpoint]

SRC is the authors' checkpoint: a plain state_dict, or a trainer dict with
'net' (and 'net_E', the EMA weights, taken with --ema). DST is written as
``{'state_dict': ..., 'meta': ...}`` with ``backbone.*``/``head.*`` keys, for
the configs in configs/_base_/models/ (the variant is recognised from the
tensor shapes and printed).

Every source key must be used and every target key filled; otherwise the
tool exits with an error listing them and writes nothing. SRC loads without
unpickling arbitrary objects; a trainer checkpoint that holds more than
tensors (e.g. its argparse options) is refused unless you trust it and pass
--trust-checkpoint.
"""
import argparse
import os.path as osp
import sys

from mmmobilemamba.checkpoint import (CheckpointError, add_trust_argument,
                                     trust_checkpoints)
from mmmobilemamba.checkpoint.release import ConversionError, convert_release_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help="the release's checkpoint")
    parser.add_argument('dst', help='output checkpoint for mmpretrain')
    parser.add_argument('--ema', action='store_true',
                        help="convert the EMA weights ('net_E')")
    add_trust_argument(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not osp.isfile(args.src):
        print(f'error: {args.src} does not exist', file=sys.stderr)
        return 2
    try:
        with trust_checkpoints(args.trust_checkpoint):
            meta = convert_release_checkpoint(args.src, args.dst,
                                              ema=args.ema)
    except (ConversionError, CheckpointError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    name = meta['arch_name'] or f"custom {meta['arch']}"
    print(f"converted {meta['num_source_keys']} keys of {args.src} "
          f"({'EMA' if args.ema else 'model'} weights, MobileMamba {name}, "
          f"{meta['num_classes']} classes) -> {args.dst}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
