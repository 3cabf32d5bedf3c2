"""Write a small semantic-segmentation dataset in ADE20K's folder layout.

    python tools/dataset_converters/make_ade20k.py data/ade/ADEChallengeData2016 \
        [--num-train 200] [--num-val 50] [--min-size 192] [--max-size 320]
        [--seed 0]

ROOT receives ``images/{training,validation}/*.jpg`` and
``annotations/{training,validation}/*.png`` (150-class ADE20K indexing, 0 =
not labelled), so the segmentation configs read it unchanged; point them at
another folder with e.g.
``--cfg-options train_dataloader.dataset.data_root=ROOT`` (see
docs/segmentation.md). The scenes are procedural street/landscape views with
ten ADE20K classes.
"""
import argparse

from mmmobilemamba.data_gen import ADE20K_SCENE_CLASSES, make_ade20k


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder (the ADEChallengeData2016 '
                        'data_root)')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--min-size', type=int, default=192,
                        help='smallest image width/height')
    parser.add_argument('--max-size', type=int, default=320,
                        help='largest image width/height')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_ade20k(args.root, args.num_train, args.num_val,
                         (args.min_size, args.max_size), args.seed)
    names = ', '.join(f'{name} ({value})'
                      for value, name in ADE20K_SCENE_CLASSES)
    print(f'wrote {counts["training"]} training and {counts["validation"]} '
          f'validation images to {args.root}\n'
          f'classes (PNG value): {names}; 0 = not labelled')


if __name__ == '__main__':
    main()
