"""The report's paired comparisons: for every protocol with at least 2 seeds of CE, each arm's
difference to CE per seed, its mean with a 95 % t-interval over seeds and, where the runs kept
their detections (RUN_DIR/bootstrap.json), a bootstrap interval over validation images, with a
verdict per metric (suite.report.stats).

A protocol: runs that differ only in seed and in the loss's own settings (suite.report.protocols,
which also names it). An arm: the loss name (with the factors it keeps where one is
switched off: `seesaw[mitigation]`), "+cos" with the cosine classifier. References: `ce` and, for
arms with the cosine classifier, `ce+cos` (the control that separates Seesaw's loss from its
classifier).
"""

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from suite.environment import repo_relative
from suite.harness.run_record import cosine_classifier, record_setting
from suite.report import stats
from suite.report.records import Records
from suite.report.protocols import protocol_keys, protocol_names
from suite.schema import BOOTSTRAP_KIND, BOOTSTRAP_RECORD, GROUP_METRICS, STANDARD_PROTOCOL, TASKS, result_key

COLUMNS = [f"{task}_{metric}" for task in TASKS for metric in GROUP_METRICS]
HEADERS = [f"{task} {metric}" for task in TASKS for metric in GROUP_METRICS]
REFERENCES = ("ce", "ce+cos")
VERDICT_MARKS = {stats.BETTER: "better", stats.WORSE: "worse", stats.NO_DIFFERENCE: "n.d.", stats.UNDECIDED: ""}
# The evaluation protocols beside the standard one (suite.evaluation.protocols) as the report names them.
EVALUATION_NAMES = {"fixed": "AP_fixed (the 10,000 best detections of each class over the set, none per image)",
                    "challenge2021": "boundary AP_fixed (the LVIS Challenge 2021's: masks, boundary IoU)"}


# Loss parameters that switch a factor of the loss off at 0 (Seesaw's exponents p and q make its
# mitigation and compensation factors 1 for every pair): a run with one of them at 0 is named by
# the factors it keeps, as the rows of the paper's ablation table.
SWITCHABLE_FACTORS = {loss: (("p", "mitigation"), ("q", "compensation")) for loss in ("seesaw", "seesaw_official")}


def arm_name(record: Dict[str, Any]) -> str:
    """The loss name; "[<factors kept>]" where a SWITCHABLE_FACTORS parameter is 0 (e.g.
    "seesaw[mitigation]": q = 0); "+cos" with the cosine classifier."""
    name = record["loss"]["name"]
    factors = SWITCHABLE_FACTORS.get(name, ())
    kept = [factor for parameter, factor in factors if record["loss"].get("params", {}).get(parameter) != 0]
    if len(kept) < len(factors):
        name += "[" + ("+".join(kept) or "none") + "]"
    return name + ("+cos" if cosine_classifier(record_setting(record)) else "")


def _replicates(run_path: str) -> Optional[Dict[str, Any]]:
    """The run's bootstrap record, or None when it kept none."""
    path = Path(run_path).parent / BOOTSTRAP_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("kind") == BOOTSTRAP_KIND else None


@dataclass
class Run:
    path: str
    arm: str
    seed: Any
    metrics: Dict[str, Optional[float]]  # "<task>_<metric>" -> value (_columns)
    bootstrap: Optional[Dict[str, Any]]
    commit: Optional[str]
    dirty: Optional[bool]
    # the other evaluation protocols' (run.json's metric_protocols): name -> "<task>_<metric>" -> value
    protocol_metrics: Dict[str, Dict[str, Optional[float]]] = field(default_factory=dict)

    def values(self, evaluation: str = STANDARD_PROTOCOL) -> Dict[str, Optional[float]]:
        """"<task>_<metric>" -> value under the evaluation protocol `evaluation` (empty where not
        evaluated)."""
        return self.metrics if evaluation == STANDARD_PROTOCOL else self.protocol_metrics.get(evaluation, {})


@dataclass
class Protocol:
    """The runs of one protocol, by arm and seed, and what the report flags about them."""

    key: str
    name: str  # suite.report.protocols.protocol_names
    dataset: str
    iterations: int
    runs: Dict[str, Dict[Any, Run]]  # arm -> seed -> run (the first by path where a seed repeats)
    duplicates: List[str]  # paths left out because their arm and seed repeat
    num_classes: Optional[int] = None  # its data set's (every run of a protocol has the same data set)

    @functools.cached_property
    def comparisons(self) -> pd.DataFrame:
        """comparisons_frame of this protocol, computed once for the report's sections (read it, do
        not change it)."""
        return comparisons_frame(self)

    @property
    def title(self) -> str:
        """The data set and what the protocol is, e.g. "synthetic: 31 classes, 2,483 images, 320 it,
        pretrained"; its key is its footnote (`footnote`)."""
        return f"{self.dataset}: {self.name}"

    @property
    def footnote(self) -> str:
        return f"protocol {self.key[:8]}"

    @property
    def flags(self) -> List[str]:
        every = [run for by_seed in self.runs.values() for run in by_seed.values()]
        notes = []
        dirty = sorted(repo_relative(run.path) for run in every if run.dirty)
        if dirty:
            shown = ", ".join(f"`{path}`" for path in dirty[:3]) + (", ..." if len(dirty) > 3 else "")
            notes.append(f"{len(dirty)} run(s) from a dirty working tree (uncommitted code): {shown}")
        commits = sorted({str(run.commit) for run in every})
        if len(commits) > 1:
            notes.append(f"runs from {len(commits)} different code commits: " + ", ".join(c[:10] for c in commits))
        if self.duplicates:
            notes.append("repeated arm and seed, left out: " + ", ".join(f"`{repo_relative(path)}`" for path in self.duplicates))
        return notes


def protocols(records: Records) -> List[Protocol]:
    """Protocols with at least 2 seeds of a reference arm, sorted by data set and iterations."""
    return [protocol for protocol in all_protocols(records)
            if any(len(protocol.runs.get(reference, {})) >= 2 for reference in REFERENCES)]


def all_protocols(records: Records) -> List[Protocol]:
    """Every protocol of the records' runs, sorted by data set and iterations."""
    grouped: Dict[str, Protocol] = {}
    keys, names = protocol_keys(records), protocol_names(records)
    for path, record in records.runs:
        key = keys[path]
        protocol = grouped.setdefault(key, Protocol(key, names[key], str(record["dataset"]["name"]),
                                                    int(record["iterations"]), {}, [],
                                                    record["dataset"].get("num_classes")))
        run = Run(path=path, arm=arm_name(record), seed=record["seed"], metrics=_columns(record["metrics"]),
                  bootstrap=_replicates(path), commit=record["environment"].get("git_commit"),
                  dirty=record["environment"].get("git_dirty"),
                  protocol_metrics={name: _columns(entry["metrics"])
                                    for name, entry in (record.get("metric_protocols") or {}).items()
                                    if name != STANDARD_PROTOCOL and "metrics" in entry})
        by_seed = protocol.runs.setdefault(run.arm, {})
        if run.seed in by_seed:
            protocol.duplicates.append(path)
        else:
            by_seed[run.seed] = run
    return sorted(grouped.values(), key=lambda protocol: (protocol.dataset, protocol.iterations, protocol.key))


def _columns(metrics: Dict[str, Dict[str, Optional[float]]]) -> Dict[str, Optional[float]]:
    """"<task>_<metric>" -> value of every metric in a run record's {task: {metric: AP}} (e.g.
    "bbox_APr_pool" from the fixed protocol's), and None for each of COLUMNS it lacks (a task not
    evaluated)."""
    values: Dict[str, Optional[float]] = dict.fromkeys(COLUMNS)
    values.update({f"{task}_{metric}": value
                   for task, by_metric in metrics.items() for metric, value in by_metric.items()})
    return values


def evaluations(protocol: Protocol) -> List[str]:
    """The evaluation protocols other than the standard one that every run of `protocol` has."""
    every = [run for by_seed in protocol.runs.values() for run in by_seed.values()]
    return sorted(set.intersection(*(set(run.protocol_metrics) for run in every))) if every else []


def _boot_values(run: Run, column: str, pairing: Optional[Tuple],
                 evaluation: str = STANDARD_PROTOCOL) -> Optional[List[float]]:
    task, metric = column.split("_", 1)
    if run.bootstrap is None or pairing is None:
        return None
    if (run.bootstrap.get("image_ids_sha256"), run.bootstrap.get("seed"), run.bootstrap.get("resamples")) != pairing:
        return None  # other resamples: not paired
    values = run.bootstrap.get("replicates", {}).get(result_key(task, evaluation), {}).get(metric)
    return [math.nan if value is None else value for value in values] if values else None


def common_seeds(protocol: Protocol, arm: str, reference: str) -> List[Any]:
    """The seeds at which `protocol` has both `arm` and `reference`, in the order the report pairs them."""
    return sorted(set(protocol.runs[arm]) & set(protocol.runs[reference]), key=str)


def compare(protocol: Protocol, arm: str, reference: str, evaluation: str = STANDARD_PROTOCOL,
            columns: Sequence[str] = COLUMNS) -> Dict[str, stats.PairedDifference]:
    """column -> the paired difference arm - reference over their common seeds, under the
    evaluation protocol `evaluation`, for each of `columns` ("<task>_<metric>")."""
    pairs = [(protocol.runs[arm][seed], protocol.runs[reference][seed]) for seed in common_seeds(protocol, arm, reference)]
    first = pairs[0][1].bootstrap if pairs and pairs[0][1].bootstrap else None
    pairing = (first["image_ids_sha256"], first["seed"], first["resamples"]) if first else None
    result = {}
    for column in columns:
        mine = [run.values(evaluation).get(column) for run, _ in pairs]
        theirs = [ref.values(evaluation).get(column) for _, ref in pairs]
        mine_boot = [_boot_values(run, column, pairing, evaluation) for run, _ in pairs]
        their_boot = [_boot_values(ref, column, pairing, evaluation) for _, ref in pairs]
        with_boot = all(values is not None for values in mine_boot + their_boot) and pairs
        result[column] = stats.paired_difference(mine, theirs, mine_boot if with_boot else None,
                                                 their_boot if with_boot else None)
    return result


def comparisons_frame(protocol: Protocol, evaluation: str = STANDARD_PROTOCOL) -> pd.DataFrame:
    """One row per (arm, reference, column): n, mean, sd, t-interval, bootstrap interval, verdict,
    under the evaluation protocol `evaluation`."""
    rows = []
    for reference in REFERENCES:
        if len(protocol.runs.get(reference, {})) < 2:
            continue
        for arm in sorted(protocol.runs):
            if arm == reference or (reference == "ce+cos" and not arm.endswith("+cos")):
                continue
            for column, difference in compare(protocol, arm, reference, evaluation).items():
                rows.append({"arm": arm, "reference": reference, "column": column, "n": difference.n,
                             "mean": difference.mean, "sd": difference.sd, "low": difference.low,
                             "high": difference.high, "boot_low": difference.boot_low,
                             "boot_high": difference.boot_high, "verdict": difference.verdict})
    return pd.DataFrame(rows, columns=["arm", "reference", "column", "n", "mean", "sd", "low", "high", "boot_low",
                                       "boot_high", "verdict"])


def _signed(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.1f}"


def _plain(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def markdown_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def summary_table(protocol: Protocol, evaluation: str = STANDARD_PROTOCOL) -> str:
    """Per arm: seeds, and mean ± sd over seeds of each metric under the evaluation protocol
    `evaluation`; AP_r with the mean bootstrap standard error over validation images of its runs
    in brackets."""
    rows = []
    for arm in sorted(protocol.runs):
        runs = [protocol.runs[arm][seed] for seed in sorted(protocol.runs[arm], key=str)]
        cells = []
        for column in COLUMNS:
            summary = stats.mean_sd([run.values(evaluation).get(column) for run in runs])
            text = _plain(summary.mean) + ("" if math.isnan(summary.sd) else f" ± {summary.sd:.1f}")
            if column.endswith("_APr"):
                errors = [stats.bootstrap_se(_boot_values(run, column, _own_pairing(run), evaluation)) for run in runs]
                errors = [error for error in errors if not math.isnan(error)]
                if errors:
                    text += f" (SE {sum(errors) / len(errors):.1f})"
            cells.append(text)
        rows.append([arm, len(runs), ", ".join(str(run.seed) for run in runs), *cells])
    return markdown_table(["arm", "runs", "seeds", *HEADERS], rows)


def _own_pairing(run: Run) -> Optional[Tuple]:
    if run.bootstrap is None:
        return None
    return run.bootstrap.get("image_ids_sha256"), run.bootstrap.get("seed"), run.bootstrap.get("resamples")


def difference_table(frame: pd.DataFrame, reference: str, bootstrap: bool) -> str:
    """arm rows, metric columns: mean difference [interval] verdict (t over seeds) or
    [bootstrap interval] (over validation images)."""
    chosen = frame[frame["reference"] == reference]
    rows = []
    for arm in sorted(chosen["arm"].unique()):
        by_column = {row["column"]: row for _, row in chosen[chosen["arm"] == arm].iterrows()}
        cells = []
        for column in COLUMNS:
            row = by_column[column]
            low, high = (row["boot_low"], row["boot_high"]) if bootstrap else (row["low"], row["high"])
            text = _signed(row["mean"])
            if not math.isnan(low):
                text += f" [{_signed(low)}, {_signed(high)}]"
                text += "" if bootstrap else f" {VERDICT_MARKS[row['verdict']]}"
            cells.append(text)
        rows.append([f"{arm} − {reference}", max(int(row["n"]) for row in by_column.values()), *cells])
    return markdown_table(["difference", "paired seeds", *HEADERS], rows)
