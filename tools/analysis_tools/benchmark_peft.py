"""Cost of one fine-tuning method: trainable parameters, peak memory and
time per training iteration (docs/peft.md).

    python tools/analysis_tools/benchmark_peft.py CONFIG [--batch 32]
        [--size 32] [--iters 8] [--cfg-options k=v ...]

Builds the config's model (pretrained weights through its init_cfg, LoRA
adapters for a LoRA config) and its optimizer (fp32 ``OptimWrapper`` on a
CPU), then runs ``--iters`` training iterations (forward with the loss,
backward, optimizer step) on random images of ``--size`` pixels with random
labels; no data loading, no batch augmentation. Prints one line of
``key=value`` pairs:

* ``trainable`` / ``total``: parameters with and without gradients (LoRA
  factors counted in both);
* ``iter_s``: median seconds per iteration, the first two left out;
* ``peak_rss_mb``: the process's peak resident memory
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after the iterations;
  ``train_rss_mb``: how far training raised it above the peak after
  building model and optimizer: gradients, optimizer state and activations.

Run each method in a fresh process (the peak of a process never goes down).
"""
import argparse
import resource
import statistics
import sys
import time

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, init_default_scope

import mmmobilemamba  # noqa: F401  (registration)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='classification config')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--size', type=int, default=32, help='image side')
    parser.add_argument('--iters', type=int, default=8)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    args = parser.parse_args(argv)
    if args.iters < 3:
        parser.error('--iters must be at least 3 (two are warm-up)')
    return args


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample

    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()  # the Runner does this first (LoRA: already done)
    optim_cfg = cfg.optim_wrapper.copy()
    if optim_cfg.get('type') == 'AmpOptimWrapper' and \
            not torch.cuda.is_available():
        optim_cfg['type'] = 'OptimWrapper'  # as tools/train.py on a CPU
        optim_cfg.pop('dtype', None)
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    model.train()
    head = getattr(model, 'head', None)
    classes = getattr(head, 'num_classes', 10)
    inputs = torch.rand(args.batch, 3, args.size, args.size)
    samples = [DataSample().set_gt_label(i % classes)
               for i in range(args.batch)]
    built = peak_rss_mb()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        losses = model(inputs, samples, mode='loss')
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        optim_wrapper.update_params(loss)
        times.append(time.perf_counter() - start)
    peak = peak_rss_mb()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f'config={args.config} batch={args.batch} size={args.size} '
          f'trainable={trainable} total={total} '
          f'iter_s={statistics.median(times[2:]):.4f} '
          f'peak_rss_mb={peak:.0f} train_rss_mb={peak - built:.0f} '
          f'threads={torch.get_num_threads()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
