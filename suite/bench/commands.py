"""`suite bench kernel`, `suite bench step` and `suite bench eval`."""

import argparse
import sys
from pathlib import Path

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
    kernel.add_argument("--contended", action="store_true",
                        help="measure while a competing multi-threaded torch process runs (started and stopped "
                        "by the benchmark); the records say contended: true")
    kernel.set_defaults(func=run_kernel)

    guard = commands.add_parser(
        "guard", help="the CI speed guard: every loss's speed ratio against baselines/bench_limits.json",
        description="Time every loss beside its reference at LVIS shape (CPU time on one thread, each row's "
        "smallest median over interleaved blocks) and check the ratios against baselines/bench_limits.json: "
        "a ratio above its limit fails, and so does one so far below it that a 2x regression would pass "
        "(stale limits); exit status 1 then. --derive measures the limits instead and writes the file "
        "(the test tests/test_bench_guard.py runs the same check).",
        epilog="examples: suite bench guard --contended; suite bench guard --derive --runs 10")
    guard.add_argument("--contended", action="store_true",
                       help="measure while a competing multi-threaded torch process runs")
    guard.add_argument("--demo-slower", action="append", default=[], metavar="LOSS",
                       help="failure demonstration: LOSS computes its terms twice per call (repeatable)")
    guard.add_argument("--derive", action="store_true",
                       help="measure every loss and reference --runs times, quiet and contended, and write the "
                       "limits with their provenance (after any change to a kernel's speed, in the same commit)")
    guard.add_argument("--runs", type=int, default=10, help="--derive: runs per condition (default 10)")
    guard.add_argument("--limits", type=Path, metavar="FILE.json", help="the limits file (default: "
                       "baselines/bench_limits.json)")
    guard.set_defaults(func=run_guard)

    step = commands.add_parser(
        "step", help="box-predictor and Mask R-CNN training steps per loss",
        description="Per loss: the box predictor step (RoI features -> linear classifier -> loss -> backward) "
        "and a whole Mask R-CNN training step (the small CPU model, or R50-FPN at 1024 px on CUDA), with "
        "iterations per second and the loss's share of the step.",
        epilog="example: suite bench step --quick --output bench/step_cpu.json")
    _common_arguments(step)
    step.set_defaults(func=run_step)

    evaluation = commands.add_parser(
        "eval", help="LVIS evaluation + 200-resample bootstrap at LVIS v1 val scale, fast vs official",
        description="On LVIS-v1-val-shaped ground truth with 300 simulated detections per image "
        "(suite.data.lvis_val_shape), time the evaluation, one accumulation and the bootstrap, with the "
        "peak memory of each measurement's own process: the fast evaluator at --sizes, the official lvis "
        "API at --official-sizes (its bootstrap extrapolated from --official-timed-resamples).",
        epilog="example: suite bench eval --output results/bench/eval_cpu.json")
    evaluation.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 19809],
                            metavar="IMAGES", help="image counts for the fast evaluator (default: 1000 2000 4000 "
                            "8000 19809, LVIS v1 val's)")
    evaluation.add_argument("--official-sizes", type=int, nargs="*", default=[1000, 2000], metavar="IMAGES",
                            help="image counts for the official lvis API (default: 1000 2000)")
    evaluation.add_argument("--tasks", nargs="+", choices=("bbox", "segm"), default=["bbox", "segm"])
    evaluation.add_argument("--resamples", type=int, default=200, help="bootstrap resamples (default: 200)")
    evaluation.add_argument("--official-timed-resamples", type=int, default=5, metavar="B",
                            help="official accumulations timed to extrapolate its bootstrap (default: 5)")
    evaluation.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    evaluation.add_argument("--output", required=True, type=Path, metavar="FILE.json",
                            help="where to write the records")
    evaluation.set_defaults(func=run_eval)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default: cpu")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (kernel: under 2 minutes on 2 CPU cores)")
    parser.add_argument("--output", required=True, type=Path, metavar="FILE.json", help="where to write the records")


def _check(args: argparse.Namespace) -> None:
    import torch  # here, not at the top: `suite bench eval` needs torch only for its environment record

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available to torch here")
    _check_output(args.output)


def _check_output(output: Path) -> None:
    if output.is_dir():
        raise UserError(f"--output {output}: is a folder, give a file name")


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_kernel(args: argparse.Namespace) -> int:
    from suite.bench.kernel import run_kernel_bench

    def bench(device, quick, progress):
        return run_kernel_bench(device, quick, contended=args.contended, progress=progress)

    return _run(args, "bench_kernel", bench)


def run_guard(args: argparse.Namespace) -> int:
    from suite.bench import guard

    path = args.limits or guard.LIMITS_FILE
    if args.derive:
        if args.demo_slower or args.contended:
            raise UserError("--derive measures both conditions of the code as it is: drop --demo-slower and --contended")
        try:
            limits = guard.derive_limits(args.runs, progress=_progress)
        except ValueError as error:
            raise UserError(str(error)) from None
        guard.write_limits(limits, path)
        print(f"wrote limits on {limits['field']} for {len(guard.GUARD_LOSSES)} losses on this machine "
              f"({guard.describe(guard.machine())}) to {path}")
        return 0
    unknown = sorted(set(args.demo_slower) - set(guard.GUARD_LOSSES))
    if unknown:
        raise UserError(f"--demo-slower {' '.join(unknown)}: not a loss; known: {', '.join(guard.GUARD_LOSSES)}")
    try:
        limits = guard.load_limits(path)
    except (OSError, ValueError) as error:
        raise UserError(f"limits file {path}: {error}") from None
    condition = "contended" if args.contended else "quiet"
    with guard.losses_doing_more_work(args.demo_slower):
        records = guard.measure_guard(guard.guard_rows(limits), contended=args.contended, shape=limits["shape"])
    violations = guard.limit_violations(records, limits, condition)
    print(guard.guard_table(records))
    print("FAIL: " + "; ".join(violations) if violations else "PASS")
    return 1 if violations else 0


def run_step(args: argparse.Namespace) -> int:
    from suite.bench.step import run_step_bench

    return _run(args, "bench_step", run_step_bench)


def run_eval(args: argparse.Namespace) -> int:
    from suite.bench.eval_scale import run_eval_bench
    from suite.bench.report import write_bench_file

    for name in ("sizes", "official_sizes"):
        bad = [size for size in getattr(args, name) if size < 1]
        if bad:
            raise UserError(f"--{name.replace('_', '-')}: image counts must be >= 1, got {bad[0]}")
    if args.resamples < 2:
        raise UserError(f"--resamples must be >= 2, got {args.resamples}")
    if args.official_timed_resamples < 1:
        raise UserError(f"--official-timed-resamples must be >= 1, got {args.official_timed_resamples}")
    _check_output(args.output)
    records = run_eval_bench(args.sizes, args.official_sizes, args.tasks, args.resamples,
                             args.official_timed_resamples, args.seed, progress=_progress)
    write_bench_file(args.output, "bench_eval", "cpu", records)
    print(f"wrote {len(records)} records to {args.output}")
    return 0


def _run(args: argparse.Namespace, kind: str, bench) -> int:
    """Check the arguments, run `bench(device, quick, progress=...)` and write its records."""
    from suite.bench.report import write_bench_file

    _check(args)
    records = bench(args.device, args.quick, progress=_progress)
    write_bench_file(args.output, kind, args.device, records)
    print(f"wrote {len(records)} records to {args.output}")
    return 0
