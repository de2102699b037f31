"""`suite bench kernel` and `suite bench step`."""

import argparse
import sys
from pathlib import Path

import torch

from suite.errors import UserError


def register(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmark the loss kernels and the training step",
        description="Time the losses (forward + backward) and the training step beside references "
        "measured in the same run; write one JSON record per measurement (docs/records.md).")
    commands = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)

    kernel = commands.add_parser(
        "kernel", help="loss forward + backward vs cross-entropy, the memory floor and the official Seesaw",
        description="Every loss at 512 RoIs per image x {2, 16} images, 1203 and 80 classes, float32 and "
        "bfloat16 autocast, side by side with F.cross_entropy, a memory floor (one read and one write of "
        "the logits) and the official Seesaw code.",
        epilog="example: suite bench kernel --quick --output bench/kernel_cpu.json")
    _common_arguments(kernel)
    kernel.set_defaults(func=run_kernel)

    step = commands.add_parser(
        "step", help="box-predictor and Mask R-CNN training steps per loss",
        description="Per loss: the box predictor step (RoI features -> linear classifier -> loss -> backward) "
        "and a whole Mask R-CNN training step (the small CPU model, or R50-FPN at 1024 px on CUDA), with "
        "iterations per second and the loss's share of the step.",
        epilog="example: suite bench step --quick --output bench/step_cpu.json")
    _common_arguments(step)
    step.set_defaults(func=run_step)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (kernel: under 2 minutes on 2 CPU cores)")
    parser.add_argument("--output", required=True, type=Path, metavar="FILE.json", help="where to write the records")


def _check(args: argparse.Namespace) -> None:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available to torch here")
    if args.output.is_dir():
        raise UserError(f"--output {args.output}: is a folder, give a file name")


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_kernel(args: argparse.Namespace) -> int:
    from suite.bench.kernel import run_kernel_bench

    return _run(args, "bench_kernel", run_kernel_bench)


def run_step(args: argparse.Namespace) -> int:
    from suite.bench.step import run_step_bench

    return _run(args, "bench_step", run_step_bench)


def _run(args: argparse.Namespace, kind: str, bench) -> int:
    """Check the arguments, run `bench(device, quick, progress=...)` and write its records."""
    from suite.bench.report import write_bench_file

    _check(args)
    records = bench(args.device, args.quick, progress=_progress)
    write_bench_file(args.output, kind, args.device, records)
    print(f"wrote {len(records)} records to {args.output}")
    return 0
