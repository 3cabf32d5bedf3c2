"""``python -m mmmobilemamba.deploy.native build [--runtime NAME ...]``:
build the runtime kernel libraries (``tools/install.sh`` runs it).

Exits 0 when every asked-for library is built; prints why for each one
that could not be (no compiler, headers not available), and exits 1 then
unless ``--optional`` (the install continues without native targets).
"""
import argparse
import sys

from . import RUNTIMES, runtime_module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='python -m mmmobilemamba.deploy.'
                                     'native', description=__doc__)
    parser.add_argument('command', choices=['build'])
    parser.add_argument('--runtime', nargs='+', choices=sorted(RUNTIMES),
                        default=sorted(RUNTIMES))
    parser.add_argument('--optional', action='store_true',
                        help='exit 0 even when a library cannot be built')
    args = parser.parse_args(argv)
    failed = []
    for runtime in args.runtime:
        try:
            path = runtime_module(runtime).build()
        except Exception as e:  # noqa: BLE001 (reported, then exit code)
            failed.append(runtime)
            print(f'native {runtime} kernels not built: {e}', file=sys.stderr)
        else:
            print(f'native {runtime} kernels: {path}')
    return 1 if failed and not args.optional else 0


if __name__ == '__main__':
    sys.exit(main())
