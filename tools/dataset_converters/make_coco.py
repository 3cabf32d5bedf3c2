"""Write a small detection / instance-segmentation dataset in COCO format.

    python tools/dataset_converters/make_coco.py data/coco \
        [--num-train 200] [--num-val 50] [--min-size 192] [--max-size 256]
        [--max-objects 4] [--object-size 0.12 0.3]
        [--classes disc triangle ...] [--seed 0]

It writes ``annotations/instances_{train,val}2017.json`` and the
``train2017/``, ``val2017/`` image folders, so the detection configs read it
unchanged; point them at it with e.g.
``--cfg-options train_dataloader.dataset.data_root=data/coco_shapes/`` (see
docs/detection.md). Objects are textured polygons (boxes + polygon masks)
stored under six COCO category names.
"""
import argparse

from mmmobilemamba.data_gen import COCO_SHAPE_CATEGORIES, make_coco
from mmmobilemamba.data_gen.coco import select_shape_categories


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder (the COCO data_root)')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--min-size', type=int, default=192,
                        help='smallest image width/height')
    parser.add_argument('--max-size', type=int, default=256,
                        help='largest image width/height')
    parser.add_argument('--max-objects', type=int, default=4,
                        help='objects per image: 1 to this')
    parser.add_argument('--object-size', type=float, nargs=2,
                        default=(0.12, 0.3), metavar=('MIN', 'MAX'),
                        help='object circumradius range, as a fraction of '
                        'the shorter image side')
    parser.add_argument('--classes', nargs='+', default=None,
                        help='draw only these classes (COCO names or '
                        'shapes: ' + ', '.join(
                            c[3] for c in COCO_SHAPE_CATEGORIES) + ')')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    counts = make_coco(args.root, args.num_train, args.num_val,
                       (args.min_size, args.max_size), args.max_objects,
                       args.seed, tuple(args.object_size), args.classes)
    names = ', '.join(f'{c[1]} ({c[3]})'
                      for c in select_shape_categories(args.classes))
    print(f'wrote {counts["train2017"]} train images '
          f'({counts["train2017_annotations"]} objects) and '
          f'{counts["val2017"]} val images '
          f'({counts["val2017_annotations"]} objects) to {args.root}\n'
          f'categories: {names}')


if __name__ == '__main__':
    main()
