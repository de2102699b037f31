"""The report folder: README.md (tables, figure links, environments, what was left out) and
its figures, from the gathered records. No generation time is written: the same records give
the same README byte for byte."""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Tuple

import pandas as pd

from suite.report import figures, paired, tables
from suite.report.across import across_section
from suite.report.family import family_section
from suite.report.fidelity import fidelity_section
from suite.report.protocol_family import protocol_family_section
from suite.package_data import BASELINES_DIR
from suite.report.records import gather
from suite.schema import BENCH_KERNEL_KIND, BENCH_STEP_KIND

PUBLISHED_LVIS_V1 = BASELINES_DIR / "published_lvis_v1.csv"


@dataclass
class Report:
    readme: Path
    figures: List[str]
    left_out: List[Tuple[str, str]]


def _eval_section(records, envs, out: Path, written: List[str]) -> List[str]:
    """`suite bench eval`: LVIS evaluation + bootstrap at LVIS v1 val scale, fast vs official."""
    frame = tables.eval_bench_frame(records, envs)
    lines = ["### LVIS evaluation at scale", ""]
    if frame.empty:
        return lines + ["No records.", ""]
    fits = tables.eval_fits(frame)
    lines += ["`suite bench eval` (docs/evaluation.md): LVIS-v1-val-shaped ground truth, 300 simulated "
              "detections per image; evaluate, one accumulation, and the 200-resample bootstrap (from that "
              "evaluation's matching, as a run bootstraps; records of commits before 2a61ccf, such as "
              "fc47586's, include a matching of its own; the official one extrapolated from the accumulations "
              "timed), peak resident memory of the measuring process, 1-minute load average before it.", "",
              tables.eval_table(frame), "", "Least-squares lines through the measurements below 19,809 images:", "",
              tables.eval_fit_table(fits) if not fits.empty else "Too few sizes for a fit.", ""]
    protocols = tables.eval_protocols_frame(records, envs)
    if not protocols.empty:
        lines += ["The other evaluation protocols (docs/evaluation.md), each with its matching (fixed and "
                  "challenge2021 sharing their candidates, as `suite eval` does) and 200-resample bootstrap, timed "
                  "by the fast evaluator in the same process on the same data as the standard one; `× standard`: "
                  "all protocols' time over the standard's alone.", "",
                  tables.eval_protocols_table(protocols), ""]
    name = figures.eval_scaling(frame, fits, out)
    if name:
        written.append(name)
    return lines + _figure_link(name, "LVIS evaluation at scale")


def load_published(path: Path = PUBLISHED_LVIS_V1) -> pd.DataFrame:
    """The published LVIS v1 numbers, every cell kept as the string written in the CSV."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _figure_link(name, caption: str) -> List[str]:
    return [f"![{caption}]({name})", ""] if name else []


def _dataset_section(dataset: str, experiments: pd.DataFrame, categories: pd.DataFrame, balance: pd.DataFrame,
                     out: Path, written: List[str]) -> List[str]:
    chosen = experiments[experiments["dataset"] == dataset]
    lines = [f"### {dataset}", "",
             "Mean ± sample standard deviation over the runs that differ only in seed (`runs`, `seeds`); "
             "AP in percent from `TEST.LVIS_EVALUATOR` (fast: equal to the official `lvis` API; official: that API); `env`: see Environments.", "",
             tables.metrics_table(chosen), "",
             "Change against CE of the same protocol (data set, iterations and config apart from the loss; "
             "`–`: no CE run in it), in AP points:", "",
             tables.delta_table(chosen), ""]
    if dataset.startswith("lvis_v1"):
        lines += ["Published numbers on LVIS v1 val (`baselines/published_lvis_v1.csv`; each row names its "
                  "source; a reproduced row above is comparable only with the same model, schedule and sampler):", "",
                  tables.published_table(load_published()), ""]
    protocols = chosen[["protocol", "protocol_name"]].drop_duplicates().sort_values("protocol_name", kind="stable")
    if len(protocols) > 1:
        lines += ["Protocols (`suite.report.protocols`): " + "; ".join(
            f"{name}: `{key[:8]}`" for key, name in zip(protocols["protocol"], protocols["protocol_name"])) + ".", ""]
    charts = [(figures.ap_groups(chosen, dataset, out), f"{dataset}: AP by frequency group")]
    charts += [(figures.per_category(categories, dataset, key, name, out),
                f"{dataset}: {name}: per-category AP against training instances")
               for key, name in zip(protocols["protocol"], protocols["protocol_name"])]
    charts += [(figures.grad_balance(balance, dataset, out), f"{dataset}: gradient balance per class")]
    for name, caption in charts:
        if name:
            written.append(name)
        lines += _figure_link(name, caption)
    return lines


def _difference_tables(frame: pd.DataFrame, under: str) -> List[str]:
    """The paired differences to each reference of `frame` (a comparisons_frame): over seeds, and
    over validation images where the runs kept bootstrap replicates; `under` names the protocol."""
    lines = []
    for reference in sorted(frame["reference"].unique()):
        lines += [f"Paired difference to {reference}{under} (t-interval over seeds):", "",
                  paired.difference_table(frame, reference, bootstrap=False), ""]
        if frame[frame["reference"] == reference]["boot_low"].notna().any():
            lines += [f"Paired difference to {reference}{under} (bootstrap interval over validation images):", "",
                      paired.difference_table(frame, reference, bootstrap=True), ""]
    return lines


def paired_section(found: List[paired.Protocol], out: Path, written: List[str]) -> List[str]:
    """## Paired comparisons: per protocol `found` (suite.report.paired.protocols: >= 2 seeds of CE),
    mean ± sd per arm and the paired differences to CE with their intervals and verdicts; the same
    under each other evaluation protocol that all of its runs were evaluated with (`suite eval
    --protocol`)."""
    if not found:
        return []
    lines = ["## Paired comparisons", "",
             "Runs of one protocol (same data, iterations and config apart from seed, initial weights and "
             "the loss's own keys) paired by seed. `+cos`: cosine classifier (temperature 20). Difference: "
             "arm minus reference at the same seed, in AP points; mean [95 % t-interval over paired seeds] "
             "and verdict: better / worse when the interval excludes 0, n.d. (no detectable difference at 95 %) "
             "otherwise. Bootstrap: 2.5-97.5 percentiles of the mean difference over resampled validation images "
             "(the same resamples for every run); it shows the validation set's share of the noise only. "
             "SE: bootstrap standard error of a run's APr over validation images (mean over seeds).", ""]
    for index, protocol in enumerate(found, start=1):
        frame = protocol.comparisons
        title = protocol.title
        lines += [f"### {title}", "", f"Runs of {protocol.footnote} (`suite.report.protocols`).", ""]
        lines += [f"**Flag:** {note}" for note in protocol.flags]
        if protocol.flags:
            lines += [""]
        lines += ["Mean ± sd over seeds:", "", paired.summary_table(protocol), ""]
        lines += _difference_tables(frame, "")
        for evaluation in paired.evaluations(protocol):
            name = paired.EVALUATION_NAMES.get(evaluation, evaluation)
            lines += [f"Under the `{evaluation}` protocol, {name}: mean ± sd over seeds:", "",
                      paired.summary_table(protocol, evaluation), ""]
            lines += _difference_tables(paired.comparisons_frame(protocol, evaluation), f" under `{evaluation}`")
        name = figures.paired_differences(frame, title, out / f"paired_{figures.slug(protocol.dataset)}_{protocol.key[:8]}.png")
        if name:
            written.append(name)
        lines += _figure_link(name, f"{title}: paired differences")
    return lines


def build_report(results: Iterable[Path], out: Path, note: str = "") -> Report:
    """Gather the records under `results`, write `out/README.md` (with `note`, a paragraph, under its
    first line) and its figures, and name every record left out on stderr."""
    out = Path(out)
    records = gather(results)
    for path, reason in records.left_out:
        print(f"suite report: left out {path}: {reason}", file=sys.stderr)
    envs = tables.environments(records)
    runs = tables.runs_frame(records, envs)
    experiments = tables.aggregate(runs)
    categories = tables.per_category_frame(records, runs, experiments)
    balance = tables.grad_balance_frame(records, runs, experiments)
    bench = tables.bench_frame(records, envs)
    out.mkdir(parents=True, exist_ok=True)
    written: List[str] = []

    lines = ["# seesaw-suite report", "",
             f"Built from {len(records.runs)} run record(s) and {len(records.benches)} benchmark file(s); "
             f"{len(records.left_out)} record(s) left out. Regenerate with "
             "`suite report --results DIR... --out DIR`.", ""] + ([note, ""] if note else []) + ["## Accuracy", ""]
    if experiments.empty:
        lines += ["No run records.", ""]
    for dataset in sorted(experiments["dataset"].unique()) if not experiments.empty else []:
        lines += _dataset_section(dataset, experiments, categories, balance, out, written)

    found = paired.protocols(records)  # reads every run's bootstrap record: once, for both sections
    lines += paired_section(found, out, written)
    lines += across_section(found, records)
    lines += family_section(records)
    lines += protocol_family_section(records)
    lines += fidelity_section(records)

    lines += ["## Benchmarks", "", "Median over repeats; ratios are over the same-shape median of "
              "`torch_cross_entropy` (× CE), `memory_floor` (× floor) and the loss's own official code "
              "(× official: `seesaw_official` for Seesaw, `eqlv2_official` for EQLv2).", ""]
    for kind, title, table, figure in (
            (BENCH_KERNEL_KIND, "Kernel (loss forward + backward)", tables.kernel_table, figures.kernel_time),
            (BENCH_STEP_KIND, "Training step", tables.step_table, figures.step_throughput)):
        lines += [f"### {title}", ""]
        if (bench["kind"] == kind).any():
            lines += [table(bench), ""]
            name = figure(bench, out)
            if name:
                written.append(name)
            lines += _figure_link(name, title)
        else:
            lines += ["No records.", ""]
        if kind == BENCH_KERNEL_KIND and bench["contended"].astype(bool).any():
            lines += ["### Kernel beside a competing process", "",
                      "`suite bench kernel --contended`: the same measurements while another torch process "
                      "multiplies matrices on two threads (suite.bench.contention), "
                      "beside the quiet ones.", "", tables.contention_table(bench), ""]

    lines += _eval_section(records, envs, out, written)
    lines += ["## Environments", "", "Where each number above came from (`env` columns).", ""]
    lines += [tables.environment_table(envs) if not envs.empty else "None.", ""]
    lines += ["## Left out", ""]
    if records.left_out:
        lines += ["Records not used (incomplete or of another schema version):", "",
                  tables.left_out_table(records.left_out), ""]
    else:
        lines += ["Nothing.", ""]
    readme = out / "README.md"
    figures.write_bytes_atomic(readme, ("\n".join(lines).rstrip("\n") + "\n").encode())
    return Report(readme=readme, figures=sorted(written), left_out=records.left_out)
