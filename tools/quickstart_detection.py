"""Detection quick start on a CPU: generate, train, test (~6 min, 2 cores).

    python tools/quickstart_detection.py [--data data/coco_shapes]
        [--work-dir work_dirs/quickstart_det] [--epochs 5] [--arch T2]
        [--num-train 600] [--num-val 200]

1. writes a small COCO-format dataset (``tools/dataset_converters/
   make_coco.py``: 256x256 images with one to three textured polygons of six
   classes, boxes and masks) unless ``--data`` already holds one;
2. trains ``configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py`` on
   it with ``tools/train.py``, from scratch (no pretrained weights), with the
   T2 backbone variant and a slimmer neck/head so it fits a laptop CPU
   (``--arch B1`` keeps the config's backbone);
3. evaluates the last checkpoint with ``tools/test.py`` (COCO bbox mAP via
   ``CocoMetric``) and writes drawn predictions to ``WORK_DIR/vis``.

The default run is the proof of learning recorded in docs/detection.md
(seeded, so a rerun on the same machine reproduces it). Every override is an
ordinary ``--cfg-options`` entry and is printed with the exact commands, so
the run can be repeated (or scaled up) by hand.
"""
import argparse
import os
import os.path as osp
import re
import runpy
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/retinanet/retinanet_mobilemamba-b1_fpn_1x_coco.py'
MAKE_COCO = 'tools/dataset_converters/make_coco.py'
#: make_coco.py arguments of the generated data: 256x256 images, 1-3
#: objects whose circumradius is 14-30 % of the side (boxes of about 70-150
#: px, the sizes of the RetinaNet anchors on strides 8-32)
DATA_ARGS = ('--min-size', '256', '--max-size', '256', '--max-objects', '3',
             '--object-size', '0.14', '0.3')
IMAGE_SCALE = (256, 256)


def quickstart_options(root: str, epochs: int, arch: str = 'T2',
                       width: int = 64, image_scale=IMAGE_SCALE) -> dict:
    """``--cfg-options`` for a short CPU run of the RetinaNet config.

    From scratch and on a few hundred iterations, three things matter (see
    docs/detection.md, "Proof of learning"): the input resolution (the
    backbone's finest map is stride 16, so 128-px images localise poorly),
    an AdamW lr of 2e-3 (4e-3 diverged in a trial) and GroupNorm in the
    head's convs.

    Args:
        root (str): COCO-format data root.
        epochs (int): Training epochs; lr warms up over 50 iterations, stays
            constant, then decays with a cosine over the last
            ``epochs - epochs // 2`` epochs.
        arch (str): Backbone variant. The config's B1 is kept at 'B1'; the
            default T2 (same design, fewer and narrower blocks) trains about
            2.4x faster per pixel on a CPU.
        width (int): Channels of the neck and head (the config has 256).
        image_scale (tuple[int, int]): Resize scale (w, h), ratio kept.
    """
    import mmmobilemamba  # noqa: F401
    from mmengine.config import Config

    from mmmobilemamba.models.backbones.mobilemamba import resolve_arch

    # the converter is a script, not a module: run its file for its function
    coco_cfg_options = runpy.run_path(
        osp.join(REPO, MAKE_COCO))['coco_cfg_options']
    cfg = Config.fromfile(osp.join(REPO, CONFIG))
    opts = coco_cfg_options(cfg, root, image_scale, num_workers=0)
    half = epochs // 2
    opts.update({
        # no ImageNet weights: train the backbone, BN statistics included
        'model.backbone.init_cfg': None,
        'model.backbone.norm_eval': False,
        'model.backbone.arch': arch,
        'model.neck.in_channels': list(resolve_arch(arch)['embed_dims']),
        'model.neck.out_channels': width,
        'model.bbox_head.in_channels': width,
        'model.bbox_head.feat_channels': width,
        'model.bbox_head.stacked_convs': 1,
        # GroupNorm in the head's stacked convs (none in the config)
        'model.bbox_head.norm_cfg.type': 'GN',
        'model.bbox_head.norm_cfg.num_groups': 16,
        'model.bbox_head.norm_cfg.requires_grad': True,
        'train_dataloader.batch_size': 8,
        'optim_wrapper.optimizer.lr': 2e-3,
        'optim_wrapper.clip_grad.max_norm': 5.0,
        'param_scheduler.0.end': 50,
        'param_scheduler.1.begin': half,
        'param_scheduler.1.T_max': epochs - half,
        'param_scheduler.1.end': epochs,
        'train_cfg.max_epochs': epochs,
        'train_cfg.val_interval': epochs,
        'default_hooks.checkpoint.interval': epochs,
        'default_hooks.logger.interval': 10,
        # a fixed seed makes the recorded result repeatable
        'randomness.seed': 0,
    })
    return opts


def _run(args, log):
    print('$ ' + ' '.join(args), flush=True)
    start = time.time()
    proc = subprocess.run([sys.executable] + args, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    with open(log, 'w') as f:
        f.write(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f'{args[0]} failed (exit {proc.returncode}); last lines:\n'
                 + proc.stdout[-4000:] + f'\nfull log: {log}')
    return proc.stdout, time.time() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', default='data/coco_shapes',
                        help='COCO-format root (generated if missing)')
    parser.add_argument('--work-dir', default='work_dirs/quickstart_det')
    parser.add_argument('--epochs', type=int, default=5,
                        help='training epochs (75 iterations each at the '
                        'default 600 images; ~1.3 min each on 2 cores)')
    parser.add_argument('--arch', default='T2',
                        help="backbone variant (the config's is B1)")
    parser.add_argument('--num-train', type=int, default=600)
    parser.add_argument('--num-val', type=int, default=200)
    args = parser.parse_args(argv)
    data = osp.abspath(osp.join(REPO, args.data))
    work = osp.abspath(osp.join(REPO, args.work_dir))

    os.makedirs(work, exist_ok=True)
    if not osp.isfile(osp.join(data, 'annotations',
                               'instances_val2017.json')):
        _run([MAKE_COCO, data, '--num-train',
              str(args.num_train), '--num-val', str(args.num_val),
              *DATA_ARGS],
             osp.join(work, 'make_coco.out'))
    opts = [f'{k}={v}'.replace(' ', '')
            for k, v in quickstart_options(data, args.epochs,
                                                   args.arch).items()]
    _, train_s = _run(['tools/train.py', CONFIG, '--work-dir', work,
                       '--cfg-options'] + opts, osp.join(work, 'train.out'))
    ckpt = osp.join(work, f'epoch_{args.epochs}.pth')
    out, test_s = _run(['tools/test.py', CONFIG, ckpt, '--work-dir',
                        osp.join(work, 'test'), '--show-dir',
                        osp.join(work, 'vis'), '--cfg-options'] + opts,
                       osp.join(work, 'test.out'))
    found = re.search(r'coco/bbox_mAP: ([\d.]+)\s+coco/bbox_mAP_50: ([\d.]+)',
                      out)
    if not found:
        sys.exit(f'no bbox mAP in the test output; see {work}/test.out')
    print(f'\ntrained {args.epochs} epochs in {train_s / 60:.1f} min, '
          f'tested in {test_s:.0f} s')
    print(f'COCO bbox mAP: {float(found.group(1)):.3f}   '
          f'mAP@0.5: {float(found.group(2)):.3f}')
    print(f'checkpoint: {ckpt}\ndrawn predictions: {work}/vis')


if __name__ == '__main__':
    main()
