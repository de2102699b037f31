"""`suite bench kernel`, `suite bench step` and `suite bench eval`."""

import argparse
import sys
from pathlib import Path

from suite.errors import UserError
from suite.schema import BENCH_EVAL_KIND, BENCH_KERNEL_KIND, BENCH_STEP_KIND, TASKS


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
        "guard", help="the CI speed guard: every loss timed beside the same loss at the reference commit",
        description="Time every loss of the working tree beside the same loss at the reference commit of "
        "baselines/speed_guard.json (one process holding both, CPU time, the two sides of a loss called one "
        "after the other), quiet and "
        "beside a competing process, as it is and made twice as slow; exit status 1 when a loss is slower than "
        "the limit times the reference, when one made twice as slow passes, or when the reference is so much "
        "slower that a 2x regression would pass (stale: re-pin). The test tests/test_bench_guard.py runs the "
        "same check.",
        epilog="examples: suite bench guard; suite bench guard --demo-slower seesaw; "
        "suite bench guard --pin HEAD --why '...'; suite bench guard --derive-limit --runs 10")
    guard.add_argument("--threads", type=int, default=None, help="intra-op threads of both sides (default: 1)")
    guard.add_argument("--demo-slower", action="append", default=[], metavar="LOSS",
                       help="failure demonstration: LOSS of the working tree computes its forward twice (repeatable)")
    guard.add_argument("--json", type=Path, metavar="FILE.json", help="also write the measurement there")
    action = guard.add_mutually_exclusive_group()
    action.add_argument("--pin", metavar="COMMIT", help="make COMMIT (e.g. HEAD) the reference, with --why; after a "
                        "change that makes a kernel faster, in the same commit")
    action.add_argument("--derive-limit", action="store_true",
                        help="measure the reference against itself --runs times per condition and re-derive the "
                        "limit from that and the evidence already recorded for other machines and thread counts")
    guard.add_argument("--why", default="", help="--pin: why this commit is the reference")
    guard.add_argument("--runs", type=int, default=10, help="--derive-limit: A/A runs per condition (default 10)")
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
        "(suite.bench.lvis_val_shape), time the evaluation, one accumulation and the bootstrap, with the "
        "peak memory of each measurement's own process: the fast evaluator at --sizes, the official lvis "
        "API at --official-sizes (its bootstrap extrapolated from --official-timed-resamples).",
        epilog="example: suite bench eval --output results/bench/eval_cpu.json")
    evaluation.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000, 19809],
                            metavar="IMAGES", help="image counts for the fast evaluator (default: 1000 2000 4000 "
                            "8000 19809, LVIS v1 val's)")
    evaluation.add_argument("--official-sizes", type=int, nargs="*", default=[1000, 2000], metavar="IMAGES",
                            help="image counts for the official lvis API (default: 1000 2000)")
    evaluation.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    evaluation.add_argument("--resamples", type=int, default=200, help="bootstrap resamples (default: 200)")
    evaluation.add_argument("--official-timed-resamples", type=int, default=5, metavar="B",
                            help="official accumulations timed to extrapolate its bootstrap (default: 5)")
    evaluation.add_argument("--protocols", nargs="+", default=["standard", "fixed", "challenge2021"],
                            metavar="PROTOCOL", help="LVIS protocols the fast evaluator measures in the same "
                            "process (docs/evaluation.md; default: standard fixed challenge2021, the last for "
                            "masks only); the official evaluator measures the standard one")
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

    return _run(args, BENCH_KERNEL_KIND, bench)


def run_guard(args: argparse.Namespace) -> int:
    from suite.bench import guard
    from suite.environment import require_checkout

    require_checkout("the speed guard", f"{guard.GUARD_FILE.name} and the history of its reference commit")
    threads = guard.GUARD_THREADS if args.threads is None else args.threads
    if threads < 1:
        raise UserError(f"--threads {threads}: must be at least 1")
    try:
        if args.pin:
            reference = guard.pin(args.pin, args.why)
            print(f"the speed guard's reference is now {reference['commit']} ({guard.GUARD_FILE})")
            return 0
        if args.derive_limit:
            with guard.reference_tree(guard.load_guard_file(sections=["reference"])["reference"]["commit"]) as reference:
                evidence = guard.derive_evidence(reference, args.runs, threads, progress=_progress)
            limit = guard.write_evidence(evidence)
            print(f"limit {limit['limit']:.3f} from A/A ratios {limit['measured_min']:.3f}-{limit['measured_max']:.3f} "
                  f"over {len(limit['evidence'])} evidence rows (margin {limit['margin']:.3f}) in {guard.GUARD_FILE}")
            return 0
        unknown = sorted(set(args.demo_slower) - set(guard.GUARD_LOSSES))
        if unknown:
            raise UserError(f"--demo-slower {' '.join(unknown)}: not a loss; known: {', '.join(guard.GUARD_LOSSES)}")
        result = guard.run_guard(threads, args.demo_slower, progress=_progress)
    except (guard.ReferenceUnavailable, ValueError) as error:
        raise UserError(str(error)) from None
    for condition, measured in result["conditions"].items():
        for kind, ratios in measured.items():
            print(f"{condition}, {kind.replace('_', ' ')}:")
            print(guard.guard_table(ratios))
    if args.json:
        from suite.records import write_json_atomic

        write_json_atomic(args.json, result)
    lines = guard.failures(result)
    print("FAIL: " + "; ".join(lines) if lines else f"PASS (limit {result['limit']:.2f}x the reference "
                                                    f"{result['reference'][:10]})")
    return 1 if lines else 0


def run_step(args: argparse.Namespace) -> int:
    from suite.bench.step import run_step_bench

    return _run(args, BENCH_STEP_KIND, run_step_bench)


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
    from suite.evaluation.protocols import PROTOCOLS

    bad = [protocol for protocol in args.protocols if protocol not in PROTOCOLS]
    if bad:
        raise UserError(f"--protocols: one of {', '.join(PROTOCOLS)}, got {bad[0]!r}")
    _check_output(args.output)
    records = run_eval_bench(args.sizes, args.official_sizes, args.tasks, args.resamples,
                             args.official_timed_resamples, args.seed, progress=_progress, protocols=args.protocols)
    write_bench_file(args.output, BENCH_EVAL_KIND, "cpu", records)
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
