"""Compile a runtime kernel library: one shared object from C++ sources,
with the system compiler (or a cross compiler for aarch64).

The runtime libraries link nothing from torch: they include
``ops/csrc/scan_native.h`` (the scan's kernels) and the runtime's headers.
"""
import os
import shlex
import subprocess
from pathlib import Path
from typing import Optional, Sequence

#: The C++ sources of the kernels (scan_native.h, scan_isa.h, ...).
CSRC = Path(__file__).resolve().parents[2] / 'ops' / 'csrc'
#: Where the libraries built at install time are put (beside this file).
LIBRARY_DIR = Path(__file__).resolve().parent / 'lib'
#: Flags of every build: no -march (scan_isa.h picks the instruction set
#: at run time), hidden symbols except the runtime's entry points;
#: -fopenmp-simd honours the kernels' ``#pragma omp simd`` (no OpenMP
#: runtime); -fno-trapping-math lets GCC vectorise the recurrence, whose
#: exp clamps are otherwise kept as branches (the kernels read no
#: floating-point exception flags).
CXXFLAGS = ('-O3', '-std=c++20', '-fopenmp-simd', '-fno-trapping-math',
            '-shared', '-fPIC', '-fvisibility=hidden', '-Wno-psabi')


class BuildError(RuntimeError):
    """A compiler is missing or a compile failed (the message holds the
    command and the compiler's output)."""


def compile_shared(sources: Sequence[Path],
                   out: Path,
                   include_dirs: Sequence[Path] = (),
                   library_dirs: Sequence[Path] = (),
                   libraries: Sequence[str] = (),
                   defines: Sequence[str] = (),
                   cxx: Optional[str] = None,
                   extra_flags: Sequence[str] = ()) -> Path:
    """Compile ``sources`` into the shared library ``out``.

    Args:
        sources (Sequence[Path]): C++ files.
        out (Path): The library to write (its folder is created).
        include_dirs (Sequence[Path]): ``-I`` folders; ``ops/csrc`` is
            always first. Defaults to ().
        library_dirs (Sequence[Path]): ``-L`` folders (also the run path).
            Defaults to ().
        libraries (Sequence[str]): ``-l`` names. Defaults to ().
        defines (Sequence[str]): ``-D`` macros. Defaults to ().
        cxx (str, optional): The compiler; defaults to ``$CXX`` or ``g++``.
        extra_flags (Sequence[str]): More flags. Defaults to ().

    Returns:
        Path: ``out``.
    """
    cxx = cxx or os.environ.get('CXX') or 'g++'
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cxx, *CXXFLAGS, *extra_flags, f'-I{CSRC}']
    cmd += [f'-I{d}' for d in include_dirs]
    cmd += [f'-D{d}' for d in defines]
    cmd += [str(s) for s in sources]
    cmd += ['-o', str(out)]
    for d in library_dirs:
        cmd += [f'-L{d}', f'-Wl,-rpath,{d}']
    cmd += [f'-l{lib}' for lib in libraries]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise BuildError(f'no C++ compiler {cxx!r} ({e}); install g++ (or '
                         'set CXX) to build the native kernels') from e
    if res.returncode != 0:
        raise BuildError(f'compiling {out.name} failed:\n  '
                         f'{shlex.join(cmd)}\n{res.stderr[-4000:]}')
    return out
