"""How many paired seeds a comparison needs, decided before it is run: from the spread of the paired
differences in an earlier study, the smallest n whose 95 % t-interval half-width

    t_{0.975, n-1} * sd / sqrt(n)

is at most the target (suite.report.stats computes the same interval once the runs exist). The sd
is the earlier study's sample sd of the per-seed differences (paired seeds: suite.workflows.study);
with few seeds it is itself uncertain, so `seeds_needed` is also asked for multiples of it.

    python -m suite.report.power --results results/study [--arm seesaw+cos --reference ce+cos --target 2]
"""

import argparse
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from suite.errors import UserError
from suite.report import paired, stats
from suite.report.records import gather

DEFAULT_COLUMNS = ("bbox_APr", "segm_APr")
SD_SCALES = (1.0, 1.5, 2.0)
MAX_SEEDS = 1000
NORMAL_975 = 1.959963  # the standard normal's 97.5th percentile, below every t_{0.975, df}


def half_width(sd: float, n: int) -> float:
    """The 95 % t-interval half-width of a mean difference over `n` >= 2 paired seeds."""
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 seeds, got {n}")
    return stats.t_quantile(0.5 + stats.CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)


def seeds_needed(sd: float, target: float) -> int:
    """The smallest n >= 2 with half_width(sd, n) <= target (the half-width falls with n).
    ValueError for a sd that is negative or not finite, a target <= 0, or more than MAX_SEEDS."""
    if not math.isfinite(sd) or sd < 0:
        raise ValueError(f"sd must be finite and >= 0, got {sd}")
    if not target > 0:
        raise ValueError(f"target half-width must be > 0, got {target}")
    # t_{0.975, n-1} > z_{0.975}, so no n below (z * sd / target)^2 can do: start there.
    first = max(2, int((NORMAL_975 * sd / target) ** 2))
    for n in range(first, MAX_SEEDS + 1):
        if half_width(sd, n) <= target:
            return n
    raise ValueError(f"sd {sd:g} needs more than {MAX_SEEDS} seeds for a half-width of {target:g}")


def paired_sds(results: Sequence[Path], arm: str, reference: str,
               columns: Sequence[str] = DEFAULT_COLUMNS) -> Dict[str, stats.PairedDifference]:
    """column -> the paired difference arm - reference (n, mean, sd, interval) in the one protocol
    of the records under `results` that holds both arms. UserError if none or several do."""
    candidates = [protocol for protocol in paired.protocols(gather(results))
                  if arm in protocol.runs and reference in protocol.runs]
    if len(candidates) != 1:
        raise UserError(f"{len(candidates)} protocols under {', '.join(map(str, results))} hold both {arm} and "
                        f"{reference}; need exactly one")
    unknown = [column for column in columns if column not in paired.COLUMNS]
    if unknown:
        raise UserError(f"unknown column(s) {', '.join(unknown)}; known: {', '.join(paired.COLUMNS)}")
    differences = paired.compare(candidates[0], arm, reference)
    return {column: differences[column] for column in columns}


def plan_lines(differences: Dict[str, stats.PairedDifference], arm: str, reference: str, target: float,
               sd_scales: Sequence[float] = SD_SCALES) -> List[str]:
    """The plan as text: per column the observed difference and sd, the seeds needed at that sd
    and at multiples of it, and the half-width those seeds give; then the decision (the largest n)."""
    lines = [f"{arm} - {reference}: seeds for a 95 % t-interval half-width <= {target:g} points"]
    decided: Optional[int] = None
    for column, difference in differences.items():
        if difference.n < 2 or not math.isfinite(difference.sd):
            raise UserError(f"{column}: {difference.n} paired seed(s), no sd to plan from")
        needs = [seeds_needed(difference.sd * scale, target) for scale in sd_scales]
        decided = max(decided or 0, needs[0])
        lines.append(f"  {column}: {difference.n} seeds, mean {difference.mean:+.2f}, sd {difference.sd:.3f}, "
                     f"half-width now {half_width(difference.sd, difference.n):.2f}; n = {needs[0]} "
                     f"(half-width {half_width(difference.sd, needs[0]):.2f}); "
                     + ", ".join(f"sd x{scale:g}: n = {need}" for scale, need in zip(sd_scales[1:], needs[1:])))
    lines.append(f"decided: {decided} paired seeds (the largest n over {', '.join(differences)})")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suite.report.power", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, nargs="+", type=Path, metavar="DIR",
                        help="folders with the earlier study's run records (e.g. results/study)")
    parser.add_argument("--arm", default="seesaw+cos")
    parser.add_argument("--reference", default="ce+cos")
    parser.add_argument("--columns", default=",".join(DEFAULT_COLUMNS), help="default %(default)s")
    parser.add_argument("--target", type=float, default=2.0, help="half-width in AP points (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        differences = paired_sds(args.results, args.arm, args.reference, args.columns.split(","))
        lines = plan_lines(differences, args.arm, args.reference, args.target)
    except (UserError, ValueError) as error:
        print(f"power: error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
