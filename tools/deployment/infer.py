"""Run an exported model on one image and draw the result.

    python tools/deployment/infer.py MODEL.onnx|MODEL.pte IMAGE
        [--out vis.png] [--score-thr 0.3] [--threads N]

MODEL.json beside the model (written by tools/deployment/export.py) says
how to feed it and read it. Detectors: boxes with class and score
(those scoring >= --score-thr drawn); segmentors: the label map blended
over the image in the dataset's palette; classifiers: the top-5 classes.
The results are printed as well.

On the ONNX Runtime path this imports only numpy, onnxruntime and
OpenCV/Pillow: ``mmmobilemamba/deploy/host.py`` is loaded by its path, not
through the package (whose import pulls in torch and the toolboxes), so
this file and that one are a deployment reference to copy. A ``.pte``
needs the ``executorch`` package (whose Python runtime uses torch).
"""
import argparse
import importlib.util
import os.path as osp
import sys
from typing import Optional, Sequence

HOST = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                'mmmobilemamba', 'deploy', 'host.py')


def load_host():
    """``mmmobilemamba/deploy/host.py`` as a stand-alone module."""
    spec = importlib.util.spec_from_file_location('mmmobilemamba_host', HOST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', help='.onnx or .pte file (with MODEL.json)')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out', help='write the visualisation here (.png)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections drawn and printed from this score')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--native-library', default=None,
                        help='the native scan library that a file exported '
                        'with --native-scan needs (mmmobilemamba.deploy.'
                        'native_library(RUNTIME) gives its path)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    host = load_host()
    try:
        model = host.Model(args.model, threads=args.threads,
                           native_library=args.native_library)
        img = host.read_image(args.image)
        result = model(img)
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    classes = model.meta.get('classes') or []

    def name(i):
        return classes[i] if 0 <= i < len(classes) else str(i)

    vis = None
    if 'dets' in result:
        dets, labels = result['dets'], result['labels']
        shown = dets[:, 4] >= args.score_thr
        print(f'{len(dets)} detections, {int(shown.sum())} with score >= '
              f'{args.score_thr}:')
        for det, label in zip(dets[shown], labels[shown]):
            x1, y1, x2, y2, score = (float(v) for v in det)
            print(f'  {name(int(label))} {score:.3f} '
                  f'[{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]')
        if args.out:
            vis = host.draw_detections(img, dets, labels, classes,
                                       args.score_thr,
                                       masks=result.get('masks'))
    elif 'label_map' in result:
        import numpy as np
        label_map = result['label_map']
        ids, counts = np.unique(label_map, return_counts=True)
        top = np.argsort(-counts)[:5]
        print(f'label map {label_map.shape[0]}x{label_map.shape[1]}; '
              'largest classes: ' + ', '.join(
                  f'{name(int(ids[i]))} {100 * counts[i] / label_map.size:.1f}'
                  '%' for i in top))
        if args.out:
            colors = model.meta.get('palette')
            if colors is not None:
                colors = np.asarray(colors, np.uint8)
            vis = host.draw_label_map(img, label_map, colors)
    else:
        import numpy as np
        logits = result['logits']
        top = np.argsort(-logits)[:5]
        print('top-5: ' + ', '.join(f'{name(int(i))} {logits[i]:.3f}'
                                    for i in top))
        vis = img if args.out else None
    if args.out and vis is not None:
        host.save_image(args.out, vis)
        print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
