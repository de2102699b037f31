"""A competing process for benchmarks on a busy machine: another torch process multiplying
matrices on several threads (as a training run or data-loading workers beside the measurement).

`competing_process()` starts it, waits until it computes, and always stops it on leaving the
`with` block, also on an exception or Ctrl-C; the competitor also exits by itself when its parent
is gone (it checks its parent process id between multiplications), so a killed benchmark leaves
nothing running.

Run as a module (`python -m suite.bench.contention --threads 2`) it is the competitor itself.
"""

import argparse
import contextlib
import os
import subprocess
import sys
from typing import Iterator

#: Threads of the competing process: as many as the 2-core CI machine has.
COMPETITOR_THREADS = 2
#: Side of the square matrices it multiplies (tens of milliseconds per product on 2 cores).
COMPETITOR_SIZE = 1024
READY_LINE = "competing"
STOP_TIMEOUT_S = 10.0


@contextlib.contextmanager
def competing_process(threads: int = COMPETITOR_THREADS) -> Iterator[subprocess.Popen]:
    """Run the competitor for the duration of the block; yields its Popen."""
    if threads < 1:
        raise ValueError(f"competing_process: threads must be >= 1, got {threads}")
    process = subprocess.Popen([sys.executable, "-m", "suite.bench.contention", "--threads", str(threads)],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline().strip()
        if line != READY_LINE:
            raise RuntimeError(f"the competing process did not start (exit code {process.poll()}, said {line!r})")
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def compete(threads: int, size: int = COMPETITOR_SIZE) -> None:
    """Multiply two random size x size matrices on `threads` threads until the parent is gone."""
    import torch

    torch.set_num_threads(threads)
    parent = os.getppid()
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    print(READY_LINE, flush=True)
    while os.getppid() == parent:
        torch.mm(a, b)


def main() -> None:
    parser = argparse.ArgumentParser(description="Keep the CPU busy with multi-threaded matrix products.")
    parser.add_argument("--threads", type=int, default=COMPETITOR_THREADS)
    compete(parser.parse_args().threads)


if __name__ == "__main__":
    main()
