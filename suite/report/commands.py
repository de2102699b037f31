"""`suite report`."""

import argparse
from pathlib import Path


def register(subparsers) -> None:
    report = subparsers.add_parser(
        "report",
        help="regenerate the report (README.md and figures) from run records and benchmarks",
        description="Gather every run.json and benchmark JSON under the results folders (recursively), "
        "aggregate runs that differ only in seed, and write OUT/README.md with its figures. Records that are "
        "incomplete or of another schema version are named on stderr and in the README's 'Left out' section.",
        epilog="example: suite report --results output/demo/runs bench/ --out reports/",
    )
    report.add_argument("--results", required=True, nargs="+", type=Path, metavar="DIR",
                        help="folders holding run directories and benchmark files")
    report.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR", help="default: reports/")
    report.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from suite.report import generate_report

    report = generate_report(args.results, args.out)
    print(f"report: {report.readme} ({len(report.figures)} figure(s), {len(report.left_out)} record(s) left out)")
    return 0
