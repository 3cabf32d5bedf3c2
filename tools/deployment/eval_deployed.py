"""Top-1 accuracy of an exported classifier (.pte or .onnx) on an
ImageNet-layout folder, run in its deployment runtime.

    python tools/deployment/eval_deployed.py CONFIG MODEL DATA_DIR
        [--runtime executorch|onnxruntime] [--threads N] [--num N]

DATA_DIR holds one sub-folder per class (``DATA_DIR/<class>/<image>``);
the label of an image is the index of its folder among the sorted class
folders, as mmpretrain's ImageNet dataset numbers them. Every image goes
through CONFIG's test pipeline and the data preprocessor's normalisation
(:mod:`mmmobilemamba.deploy.calibration`), the host-side work a deployed
model needs, and then through MODEL at its exported batch size. The runtime
follows from MODEL's file ending unless ``--runtime`` names it.
"""
import argparse
import sys
from typing import Optional, Sequence

import numpy as np


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the config the model was exported '
                        'from (test pipeline, normalisation)')
    parser.add_argument('model', help='.pte or .onnx file')
    parser.add_argument('data_dir', help='ImageNet-layout folder of classes')
    parser.add_argument('--runtime', default=None,
                        help='executorch or onnxruntime (default: from the '
                        'file ending)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--num', type=int, default=None,
                        help='evaluate this many images, evenly spread')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config

    from mmmobilemamba.deploy import calibration, runtimes
    try:
        runtime = (runtimes.check_runtime(args.runtime) if args.runtime
                   else runtimes.runtime_of(args.model))
        cfg = Config.fromfile(args.config)
        paths = calibration.spread(calibration.list_images(args.data_dir),
                                   args.num)
        labels = np.array(calibration.folder_labels(paths, args.data_dir))
        runner = runtimes.make_runner(runtime, args.model, args.threads)
        images = calibration.load_images(cfg, args.data_dir, paths=paths)
    except (FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    batch = runtimes.input_batch(runtime, runner, images)
    logits = runtimes.run_batched(runner, images, batch)[0]
    top1 = float((logits.argmax(1) == labels).mean())
    print(f'{args.model} ({runtime}): top-1 {100 * top1:.2f} % on '
          f'{len(labels)} images of {args.data_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
