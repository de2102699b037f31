"""Count the OpenMP parallel regions one call of each kernel row opens (CPU, GNU OpenMP).

Every parallel region ends in a barrier, and on a machine that another process keeps busy a
barrier waits for whichever thread was descheduled; the number of regions per call is what makes
a kernel slow down under contention (the suite's losses were tuned to open few). The count is
taken by interposing `GOMP_parallel`, the entry point of every `#pragma omp parallel` in torch's
libgomp build: a small C library compiled here with the system's C compiler and preloaded into a
child Python process (LD_PRELOAD), which runs each row once to warm up and once counted.

    python -m suite.bench.regions [--rois 8192] [--classes 1203] [ROW ...]

prints `row regions` lines; `count_regions()` returns them as a dict.
"""

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable

COUNTER_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
static long regions = 0;
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags) {
  static void (*real)(void (*)(void *), void *, unsigned, unsigned) = 0;
  if (!real) real = dlsym(RTLD_NEXT, "GOMP_parallel");
  __atomic_add_fetch(&regions, 1, __ATOMIC_RELAXED);
  real(fn, data, num_threads, flags);
}
long suite_parallel_regions(void) { return regions; }
"""
DEFAULT_ROWS = ("torch_cross_entropy", "ce", "focal", "eql", "seesaw", "seesaw_eager", "seesaw_official")


def count_regions(rows: Iterable[str] = DEFAULT_ROWS, num_rois: int = 8192,
                  num_classes: int = 1203) -> Dict[str, int]:
    """{row: parallel regions in one forward + backward} at (num_rois, num_classes) float32, on two
    intra-op threads (OMP_NUM_THREADS=2 in the counting process). Raises RuntimeError when no C
    compiler is found or the count fails."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("count_regions: no C compiler (cc or gcc) on PATH")
    with tempfile.TemporaryDirectory() as folder:
        source, library = Path(folder) / "count.c", Path(folder) / "libcount.so"
        source.write_text(COUNTER_SOURCE)
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"], check=True)
        # Two threads as torch's default gives them (set_num_threads would change MKL's threading too).
        env = dict(os.environ, LD_PRELOAD=str(library), OMP_NUM_THREADS="2")
        child = subprocess.run([sys.executable, "-m", "suite.bench.regions", "--child", "--rois", str(num_rois),
                                "--classes", str(num_classes), *rows], env=env, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"count_regions: the counting process failed:\n{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def _count_in_this_process(rows: Iterable[str], num_rois: int, num_classes: int) -> Dict[str, int]:
    from suite.bench.kernel import build_kernel

    counter = ctypes.CDLL(None).suite_parallel_regions  # the preloaded library's symbol
    counter.restype = ctypes.c_long
    counts = {}
    for name in rows:
        kernel = build_kernel(name, num_rois, num_classes, "float32", "cpu")
        kernel()
        before = counter()
        kernel()
        counts[name] = counter() - before
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenMP parallel regions per forward + backward of each row.")
    parser.add_argument("rows", nargs="*", default=list(DEFAULT_ROWS))
    parser.add_argument("--rois", type=int, default=8192)
    parser.add_argument("--classes", type=int, default=1203)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_count_in_this_process(args.rows, args.rois, args.classes)))
        return
    for name, regions in count_regions(args.rows, args.rois, args.classes).items():
        print(f"{name:20s} {regions}")


if __name__ == "__main__":
    main()
