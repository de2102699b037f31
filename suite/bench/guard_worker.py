"""One side of the speed guard's comparison: a process that times the losses of one source tree.

Run as a script by suite.bench.guard, never imported by the suite: `python guard_worker.py --tree
ROOT ...` puts ROOT (a checkout's working tree, or a reference commit's `suite/` extracted by
`git archive`) first on sys.path, so that `suite` is that tree's package, and builds each loss's
kernel with that tree's own `suite.bench.kernel.build_kernel` (forward + backward on fixed inputs).
It therefore imports nothing of the working tree's suite itself and relies only on what every
guarded commit has: `suite.losses.LOSSES` and `build_kernel(name, num_rois, num_classes, dtype,
device)`.

Protocol, one JSON object a line. It calls every kernel --warmup times (building the compiled
ones), then prints {"ready": ..., "suite": the package's path, "cpu_capability", "torch",
"threads"} (or {"error": one line} and exits 1). Then, for each request {"offset": k, "rounds": r,
"warmup": w, "slower": [loss, ...]} read from standard input, it makes the losses of "slower"
compute their forward twice (the rest as they are), calls every kernel w times untimed, then r
rounds in which each kernel is called once and timed in this process's CPU time
(`time.process_time`), round i starting at kernel (k + i) mod n, and prints {"samples_ms": {loss:
[r times]}}. It exits at the end of its input. Anything else it or torch prints goes to
standard error, so that standard output carries the protocol alone.

Three settings hold for the worker's whole life: torch's intra-op threads (--threads); glibc's
malloc keeping freed memory in the process (no mmap, no trimming), so that no timed call pays for
faulting in fresh pages, a cost that swung by up to 3x from run to run; and, once warmed up, the
CPUs it runs on (--cpus), which the guard sets to the same ones for both sides.
"""

import argparse
import ctypes
import json
import os
import sys
import time

# glibc mallopt parameters.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every allocation from the heap and return nothing to the system;
    whether that took effect (False without glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1
    except (OSError, AttributeError):
        return False


def forward_twice(original):
    """A loss forward that computes `original` twice and returns the mean of each term: the same
    values and gradients for twice the work, as a regression inside the loss would cost."""
    def forward(self, logits, labels):
        runs = [original(self, logits, labels) for _ in range(2)]
        return {term: (runs[0][term] + runs[1][term]) / 2 for term in runs[0]}
    return forward


class SlowedLosses:
    """Switches losses of LOSSES between their own forward and forward_twice."""

    def __init__(self, loss_classes):
        self.classes = dict(loss_classes)
        self.own_forward = {}  # slowed name -> the forward its class defined itself, or None

    def set(self, names) -> None:
        """Slow exactly the losses `names` down."""
        for name in set(names) - set(self.own_forward):
            cls = self.classes[name]
            self.own_forward[name] = cls.__dict__.get("forward")
            cls.forward = forward_twice(cls.forward)
        for name in set(self.own_forward) - set(names):
            cls, own = self.classes[name], self.own_forward.pop(name)
            if own is None:
                del cls.forward  # the inherited forward shows through again
            else:
                cls.forward = own


def cpu_samples_ms(kernels, offset: int, rounds: int, warmup: int):
    """{name: [CPU milliseconds of each call]} over `rounds` round-robin rounds, round i starting at
    kernel (offset + i) mod n, after `warmup` untimed calls of each."""
    names = list(kernels)
    for name in names:
        for _ in range(warmup):
            kernels[name]()
    samples = {name: [] for name in names}
    for round_index in range(rounds):
        first = (offset + round_index) % len(names)
        for name in names[first:] + names[:first]:
            start = time.process_time()
            kernels[name]()
            samples[name].append((time.process_time() - start) * 1e3)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description="one side of the speed guard (suite.bench.guard)")
    parser.add_argument("--tree", required=True, help="the source tree whose suite package is timed")
    parser.add_argument("--losses", required=True, help="comma-separated names of LOSSES")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--num-rois", type=int, required=True)
    parser.add_argument("--num-classes", type=int, required=True)
    parser.add_argument("--dtype", required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--cpus", default="", help="comma-separated CPUs to run on once warmed up (default: any)")
    args = parser.parse_args()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints go to standard error
    sys.path[0] = os.path.abspath(args.tree)  # in place of this script's own folder
    # A start-up hook (suite.lvis_numpy2's .pth file) may already have imported the installed suite:
    # forget it, so that `suite` is imported from the tree.
    for name in [name for name in sys.modules if name == "suite" or name.startswith("suite.")]:
        del sys.modules[name]

    def say(message) -> None:
        protocol.write(json.dumps(message) + "\n")

    import torch

    torch.set_num_threads(args.threads)
    heap_kept = keep_freed_memory()
    import suite
    from suite.bench.kernel import build_kernel
    from suite.losses import LOSSES

    names = args.losses.split(",")
    missing = [name for name in names if name not in LOSSES]
    if missing:
        say({"error": f"no loss {', '.join(missing)} in this tree (its losses: {', '.join(LOSSES)})"})
        return 1
    kernels = {name: build_kernel(name, args.num_rois, args.num_classes, args.dtype, "cpu") for name in names}
    slowed = SlowedLosses({name: LOSSES[name] for name in names})
    cpu_samples_ms(kernels, offset=0, rounds=0, warmup=args.warmup)
    if args.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    say({"ready": True, "suite": os.path.dirname(os.path.abspath(suite.__file__)), "heap_kept": heap_kept,
         "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
         "threads": torch.get_num_threads()})
    for line in sys.stdin:
        request = json.loads(line)
        slowed.set(request["slower"])
        say({"samples_ms": cpu_samples_ms(kernels, request["offset"], request["rounds"], request["warmup"])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
