"""The speed guard's measuring process: the losses of two source trees timed side by side, call by
call, in one process.

Run as a script by suite.bench.guard, never imported by the suite itself: `python guard_worker.py
--work TREE --reference TREE ...` imports the `suite` package of each tree in turn (a checkout's
working tree, or a reference commit's `suite/` extracted by `git archive`), each time with that tree
first on sys.path and no other `suite` module loaded, keeps each tree's modules apart, and builds
every loss's kernel with that tree's own `suite.bench.kernel.build_kernel` (forward + backward on
fixed inputs). It relies only on what every guarded commit has: `suite.losses.LOSSES` and
`build_kernel(name, num_rois, num_classes, dtype, device)`. Before each call it puts the calling
tree's modules into sys.modules, so that nothing of one tree runs with the other's.

Both trees run in one process because a process is part of what is measured: two processes of
the same code measured 0.75-0.89x, or 1.14-1.25x, each other on every loss in some runs of an A/A
comparison (pinned to one CPU, quiet), as if one process's memory were slower, whereas calls
that take turns in one process share its heap, which hands each call the memory its
predecessor freed.

Protocol, one JSON object a line. It calls every kernel --warmup times (building the compiled
ones), then prints {"ready": ..., "suites": {side: the package's path}, "cpu_capability", "torch",
"threads"} (or {"error": one line} and exits 1). Then, for each request {"rounds": r, "warmup": w,
"slower": [loss, ...]} read from standard input, it makes the work tree's losses of "slower" compute
their forward twice (the rest as they are), calls every kernel w times untimed, then r rounds in
which each (side, loss) kernel is called once and timed in this process's CPU time
(`time.process_time`): round i takes the losses in an order rotated by i, each loss's two sides
one after the other, the work tree first in even rounds; it prints {"samples_ms": {side: {loss:
[r times]}}}. It exits at the end of its input. Anything else it or torch prints goes to standard
error, so that standard output carries the protocol alone.

Two settings hold for the process's whole life: torch's intra-op threads (--threads; with more
than one, the guard starts it with OMP_WAIT_POLICY=PASSIVE so that a waiting thread sleeps rather
than spins, which CPU time would count), and glibc's malloc keeping freed memory in the process
(no mmap, no trimming), so that no timed call pays for faulting in fresh pages, a cost that swung
by up to 3x from run to run.
"""

import argparse
import ctypes
import importlib
import json
import os
import sys
import time

SIDES = ("work", "reference")
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
    """Switches losses between their own forward and forward_twice."""

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


def _is_suite(name: str) -> bool:
    return name == "suite" or name.startswith("suite.")


class TreeModules:
    """The `suite` modules of one source tree, imported with the tree first on sys.path and no
    other `suite` module loaded (a start-up hook, suite.evaluation.lvis_numpy2's .pth file, may have imported
    the installed one), and put back into sys.modules by activate()."""

    def __init__(self, tree: str):
        self.tree = os.path.abspath(tree)
        self._clear()
        sys.path.insert(0, self.tree)
        try:
            self.package = importlib.import_module("suite")
            self.build_kernel = importlib.import_module("suite.bench.kernel").build_kernel
            self.losses = importlib.import_module("suite.losses").LOSSES
        finally:
            sys.path.remove(self.tree)
        self.modules = {name: module for name, module in sys.modules.items() if _is_suite(name)}

    @staticmethod
    def _clear() -> None:
        for name in [name for name in sys.modules if _is_suite(name)]:
            del sys.modules[name]

    def activate(self) -> None:
        if sys.modules.get("suite") is not self.package:
            self._clear()
            sys.modules.update(self.modules)


def cpu_samples_ms(kernels, trees, rounds: int, warmup: int):
    """{side: {loss: [CPU milliseconds of each call]}} over `rounds` rounds (see the module's
    docstring), after `warmup` untimed calls of each kernel."""
    losses = list(kernels[SIDES[0]])
    for side in SIDES:
        trees[side].activate()
        for loss in losses:
            for _ in range(warmup):
                kernels[side][loss]()
    samples = {side: {loss: [] for loss in losses} for side in SIDES}
    for round_index in range(rounds):
        first = round_index % len(losses)
        sides = SIDES if round_index % 2 == 0 else SIDES[::-1]
        for loss in losses[first:] + losses[:first]:
            for side in sides:
                trees[side].activate()
                start = time.process_time()
                kernels[side][loss]()
                samples[side][loss].append((time.process_time() - start) * 1e3)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description="the speed guard's measuring process (suite.bench.guard)")
    parser.add_argument("--work", required=True, help="the working tree whose suite package is timed")
    parser.add_argument("--reference", required=True, help="the reference tree it is timed against")
    parser.add_argument("--losses", required=True, help="comma-separated names of LOSSES")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--num-rois", type=int, required=True)
    parser.add_argument("--num-classes", type=int, required=True)
    parser.add_argument("--dtype", required=True)
    parser.add_argument("--warmup", type=int, required=True)
    args = parser.parse_args()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints go to standard error
    del sys.path[0]  # this script's own folder, which holds modules of the working tree's suite.bench

    def say(message) -> None:
        protocol.write(json.dumps(message) + "\n")

    import torch

    torch.set_num_threads(args.threads)
    heap_kept = keep_freed_memory()
    names = args.losses.split(",")
    trees, kernels = {}, {}
    for side, tree in (("reference", args.reference), ("work", args.work)):
        trees[side] = TreeModules(tree)
        missing = [name for name in names if name not in trees[side].losses]
        if missing:
            say({"error": f"no loss {', '.join(missing)} in the {side} tree {tree} (its losses: "
                          f"{', '.join(trees[side].losses)})"})
            return 1
        kernels[side] = {name: trees[side].build_kernel(name, args.num_rois, args.num_classes, args.dtype, "cpu")
                         for name in names}
    slowed = SlowedLosses({name: trees["work"].losses[name] for name in names})
    cpu_samples_ms(kernels, trees, rounds=0, warmup=args.warmup)
    say({"ready": True, "heap_kept": heap_kept,
         "suites": {side: os.path.dirname(os.path.abspath(tree.package.__file__)) for side, tree in trees.items()},
         "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
         "threads": torch.get_num_threads()})
    for line in sys.stdin:
        request = json.loads(line)
        slowed.set(request["slower"])
        say({"samples_ms": cpu_samples_ms(kernels, trees, request["rounds"], request["warmup"])})
    return 0


if __name__ == "__main__":
    sys.exit(main())
