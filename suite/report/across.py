"""The report's "Across protocols" section: how a paired difference changes from one protocol to
another, e.g. from the generated set's default profile to its LVIS-shaped one (does what Seesaw's
factors add grow as the data set moves toward LVIS?).

For two protocols (suite.report.paired) that both compare an arm with a reference over at least 2
paired seeds: the change in the mean paired difference, (mean in B) - (mean in A), with Welch's
95 % interval (suite.report.stats.welch_change: the two protocols share no seeds). A is the
protocol whose data set puts less pressure on its rarest class (suite.data.stats, from the run
records as in "Proxy fidelity"), B the one closer to LVIS v1, so a positive change is a difference
that grows toward LVIS. Two of equal pressure (one set trained again elsewhere) are ordered by
protocol key, and their pair is marked as no change toward LVIS.
"""

import math
from itertools import combinations
from typing import Any, Dict, List

import pandas as pd

from suite.report import paired, stats
from suite.report.fidelity import record_statistics
from suite.report.records import Records

COLUMNS = ("bbox_AP", "bbox_APr", "segm_AP", "segm_APr")
HEADERS = ("bbox AP", "bbox APr", "segm AP", "segm APr")
VERDICT_MARKS = {stats.BETTER: "larger", stats.WORSE: "smaller", stats.NO_DIFFERENCE: "n.d.", stats.UNDECIDED: ""}


def rarest_pressure(protocol: paired.Protocol, by_path: Dict[str, Dict[str, Any]]) -> float:
    """The pressure on the rarest class of the protocol's training set (the record of its first
    run by path; `by_path`: run records by path)."""
    first = min(run.path for by_seed in protocol.runs.values() for run in by_seed.values())
    pressure = record_statistics(by_path[first])["rarest_pressure"]
    return math.nan if pressure is None else float(pressure)


def changes_frame(found: List[paired.Protocol], records: Records) -> pd.DataFrame:
    """One row per (pair of the protocols `found`, arm, reference, column) that both protocols
    compare over >= 2 seeds: the protocols' titles (`from`: the milder data set), whether the two
    put equal pressure on their rarest class (then the order is by protocol key), each side's seeds,
    and the change with its interval and verdict."""
    by_path = dict(records.runs)
    pressures = {protocol.key: rarest_pressure(protocol, by_path) for protocol in found}
    ordered = sorted(found, key=lambda protocol: (pressures[protocol.key], protocol.key))
    frames = {protocol.key: protocol.comparisons.set_index(["arm", "reference", "column"])
              for protocol in ordered}
    rows = []
    for first, second in combinations(ordered, 2):
        ours, theirs = frames[first.key], frames[second.key]
        equal_pressure = pressures[first.key] == pressures[second.key]
        for arm, reference, column in ours.index.intersection(theirs.index):
            if column not in COLUMNS:
                continue
            sides = [_paired_difference(frame.loc[(arm, reference, column)]) for frame in (ours, theirs)]
            if min(side.n for side in sides) < 2:
                continue
            change = stats.welch_change(*sides)
            rows.append({"from": first.title, "to": second.title, "equal_pressure": equal_pressure, "arm": arm,
                         "reference": reference,
                         "column": column, "n_from": sides[0].n, "n_to": sides[1].n, "change": change.change,
                         "low": change.low, "high": change.high, "df": change.df, "verdict": change.verdict})
    return pd.DataFrame(rows, columns=["from", "to", "equal_pressure", "arm", "reference", "column", "n_from", "n_to",
                                       "change", "low", "high", "df", "verdict"])


def _paired_difference(row: pd.Series) -> stats.PairedDifference:
    """A comparisons_frame row (suite.report.paired) as the stats object it was made from."""
    return stats.PairedDifference(int(row["n"]), float(row["mean"]), float(row["sd"]), float(row["low"]),
                                  float(row["high"]))


def change_tables(frame: pd.DataFrame) -> List[str]:
    """Markdown lines: per protocol pair, a table of difference rows and COLUMNS cells
    "change [interval] verdict"."""
    lines = []
    for (source, target, equal), pair in frame.groupby(["from", "to", "equal_pressure"], sort=False):
        lines += [f"From *{source}* to *{target}*" + (" (equal pressure on the rarest class: not a change toward "
                                                       "LVIS)" if equal else "") + ":", "",
                  "| difference | seeds (from, to) | " + " | ".join(HEADERS) + " |", "|" + "---|" * (len(HEADERS) + 2)]
        for (arm, reference), rows in pair.groupby(["arm", "reference"], sort=True):
            by_column = {row["column"]: row for _, row in rows.iterrows()}
            cells = []
            for column in COLUMNS:
                row = by_column.get(column)
                if row is None:
                    cells.append("–")
                    continue
                text = f"{row['change']:+.1f}"
                if not math.isnan(row["low"]):
                    text += f" [{row['low']:+.1f}, {row['high']:+.1f}] {VERDICT_MARKS[row['verdict']]}"
                cells.append(text)
            first = next(iter(by_column.values()))
            lines.append(f"| {arm} − {reference} | {first['n_from']}, {first['n_to']} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def across_section(found: List[paired.Protocol], records: Records) -> List[str]:
    """## Across protocols over the protocols `found` (suite.report.paired.protocols of `records`);
    nothing where fewer than two compare the same arms."""
    frame = changes_frame(found, records)
    if frame.empty:
        return []
    return ["## Across protocols", "",
            "How a paired difference (Paired comparisons) changes from one protocol to another: (mean difference "
            "on the second) − (mean difference on the first), in AP points, with Welch's 95 % interval (the two "
            "share no seeds: other data, other pretraining). The first is the protocol whose training set puts less "
            "pressure on its rarest class (Proxy fidelity), so a positive change is a difference that grows as the "
            "data set moves toward LVIS v1 (a pair of equal pressure says so, and is ordered by protocol key); "
            "larger / smaller when the interval excludes 0, n.d. otherwise.", "",
            *change_tables(frame)]
