"""Write a small dataset in mmpretrain's ImageNet folder format.

    python tools/dataset_converters/make_imagenet_folder.py data/imagenet \
        [--source shapes|digits] [--train-per-class 40] [--val-per-class 10] \
        [--size 64] [--seed 0]

``--source shapes`` (default) draws ten procedural shape classes;
``--source digits`` writes scikit-learn's real 8x8 handwritten-digit scans
(at most 174 per class in total), upscaled to ``--size``.

Train on it with any classification config by pointing the data roots at it,
e.g. ``--cfg-options train_dataloader.dataset.data_root=data/imagenet``.
"""
import argparse

from mmmobilemamba.data_gen import make_imagenet_folder
from mmmobilemamba.data_gen.imagenet_folder import SOURCES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder')
    parser.add_argument('--source', choices=SOURCES, default='shapes',
                        help='procedural shapes or real digit scans')
    parser.add_argument('--train-per-class', type=int, default=40)
    parser.add_argument('--val-per-class', type=int, default=10)
    parser.add_argument('--size', type=int, default=64, help='image side')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_imagenet_folder(args.root, args.train_per_class,
                                  args.val_per_class, args.size,
                                  seed=args.seed, source=args.source)
    print(f'wrote {counts["train"]} train and {counts["val"]} val images '
          f'({args.source}, 10 classes) to {args.root}')


if __name__ == '__main__':
    main()
