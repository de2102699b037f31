"""The report's tables as pandas frames (runs aggregated over seeds, benchmarks, environments)
and their Markdown rendering. Every frame is sorted, so the same records give the same text."""

import json
import math
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import pandas as pd

from suite.harness.run_record import record_setting
from suite.report.paired import COLUMNS, HEADERS, arm_name
from suite.report.protocols import protocol_keys, protocol_names
from suite.report.records import Records
from suite.schema import (BENCH_EVAL_KIND, BENCH_KERNEL_KIND, BENCH_STEP_KIND, ENVIRONMENT_FIELDS, GROUP_METRICS,
                          IMPLEMENTATION_PARAMS, TASKS)

# An experiment: runs with equal values here differ only in seed (and output folder). `protocol`:
# the protocol's key (suite.report.protocols: data set, iterations and config apart from the
# loss's own settings, leaving out keys added after some runs were recorded); `loss`: the arm;
# `params`: the loss's parameters; `settings`: its classifier's (run.json `setting`'s box
# predictors: cosine scale and number of logits).
GROUP_KEYS = ["dataset", "protocol", "loss", "params", "settings", "iterations"]
REFERENCE_LOSS = "ce"


def _env_key(environment: Dict[str, Any]) -> str:
    return json.dumps({name: environment.get(name) for name in ENVIRONMENT_FIELDS}, sort_keys=True)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def environments(records: Records) -> pd.DataFrame:
    """One row per distinct environment, ids E1, E2, ... in sorted order of their contents."""
    envs = {_env_key(record["environment"]): record["environment"] for _, record in records.runs + records.benches}
    rows = [{"env": f"E{index}", "key": key, **{name: envs[key].get(name) for name in ENVIRONMENT_FIELDS}}
            for index, key in enumerate(sorted(envs), start=1)]
    return pd.DataFrame(rows, columns=["env", "key", *ENVIRONMENT_FIELDS])


def _env_ids(envs: pd.DataFrame) -> Dict[str, str]:
    return dict(zip(envs["key"], envs["env"]))


def method_params(loss: Dict[str, Any]) -> Dict[str, Any]:
    """A run record's `loss` parameters without its IMPLEMENTATION_PARAMS (suite.schema): runs that
    differ only in them are seeds of one experiment, as they are of one arm in the paired comparisons."""
    implementation = IMPLEMENTATION_PARAMS.get(loss["name"], ())
    return {name: value for name, value in loss["params"].items() if name not in implementation}


def runs_frame(records: Records, envs: pd.DataFrame) -> pd.DataFrame:
    """One row per run record: its experiment keys, seed, environment id and table metrics."""
    ids = _env_ids(envs)
    protocols, names = protocol_keys(records), protocol_names(records)
    rows = []
    for path, record in records.runs:
        row = {
            "path": path,
            "dataset": str(record["dataset"]["name"]),
            "protocol": protocols[path],
            "protocol_name": names[protocols[path]],
            "loss": arm_name(record),  # the loss name, "+cos" with the cosine classifier
            "params": json.dumps(method_params(record["loss"]), sort_keys=True),
            "settings": json.dumps(record_setting(record)["box_predictors"], sort_keys=True),
            "iterations": int(record["iterations"]),
            "seed": record["seed"],
            "env": ids[_env_key(record["environment"])],
            "iters_per_s": _float(record["train"]["iters_per_s"]),
        }
        for task in TASKS:
            for name in GROUP_METRICS:
                row[f"{task}_{name}"] = _float(record["metrics"][task][name])
        rows.append(row)
    columns = ["path", *GROUP_KEYS, "protocol_name", "seed", "env", "iters_per_s", *COLUMNS]
    return pd.DataFrame(rows, columns=columns).sort_values(["dataset", "loss", "params", "iterations", "path"],
                                                           kind="stable", ignore_index=True)


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per experiment (GROUP_KEYS): mean and sample std (NaN for one run) of every table metric
    and it/s, `count` runs, their `seeds` and `envs`, and a `label` that tells the experiments of
    one data set apart: the loss name (the arm), its parameters where the arm has several, its
    protocol's name (suite.report.protocols) where the data set has several protocols, and its
    other settings where these still leave two alike."""
    rows = []
    for keys, group in runs.groupby(GROUP_KEYS, sort=True):
        row = dict(zip(GROUP_KEYS, keys))
        row["count"] = len(group)
        row["protocol_name"] = group["protocol_name"].iloc[0]
        row["seeds"] = ", ".join(str(seed) for seed in sorted(group["seed"], key=str))
        row["envs"] = ", ".join(sorted(set(group["env"])))
        for column in [*COLUMNS, "iters_per_s"]:
            row[f"{column}_mean"] = group[column].mean()
            row[f"{column}_std"] = group[column].std(ddof=1) if len(group) > 1 else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=[*GROUP_KEYS, "count", "label"])
    labels = []
    for _, row in frame.iterrows():
        same_dataset = frame[frame["dataset"] == row["dataset"]]
        label = row["loss"]
        if same_dataset[same_dataset["loss"] == row["loss"]]["params"].nunique() > 1:
            label += f" {row['params']}"
        if same_dataset["protocol"].nunique() > 1:
            label += f" ({row['protocol_name']})"
        labels.append(label)
    frame["label"] = labels
    clash = frame.duplicated(["dataset", "label"], keep=False)  # the loss's other settings differ
    frame.loc[clash, "label"] += " " + frame.loc[clash, "settings"]
    return frame.sort_values(["dataset", "loss", "params", "iterations", "protocol", "settings"], kind="stable",
                             ignore_index=True)


def reference_row(experiments: pd.DataFrame, row: pd.Series):
    """The CE experiment that `row` is compared with: same protocol (data set, iterations and
    config apart from the loss's settings; the first in the table's order if several), or None."""
    candidates = experiments[(experiments["dataset"] == row["dataset"]) & (experiments["loss"] == REFERENCE_LOSS)
                             & (experiments["protocol"] == row["protocol"])]
    return None if candidates.empty else candidates.iloc[0]


def fmt(value: Any, digits: int = 1, signed: bool = False) -> str:
    """A number with `digits` decimals; "–" for a missing value (null / NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _mean_std(row: pd.Series, column: str) -> str:
    text = fmt(row[f"{column}_mean"])
    if row["count"] > 1 and not math.isnan(row[f"{column}_std"]):
        text += f" ± {fmt(row[f'{column}_std'])}"
    return text


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_table(experiments: pd.DataFrame) -> str:
    """Mean ± std over seeds of AP, APr, APc, APf for boxes and masks, one row per experiment."""
    rows = [[row["label"], row["count"], row["seeds"], row["iterations"],
             *[_mean_std(row, column) for column in COLUMNS], row["envs"]]
            for _, row in experiments.iterrows()]
    return markdown(["loss", "runs", "seeds", "iterations", *HEADERS, "env"], rows)


def delta_table(experiments: pd.DataFrame) -> str:
    """Difference of the means against CE of the same protocol (reference_row), in AP points."""
    rows = []
    for _, row in experiments.iterrows():
        reference = reference_row(experiments, row)
        if reference is None:
            cells = ["–"] * len(COLUMNS)
        else:
            cells = [fmt(row[f"{column}_mean"] - reference[f"{column}_mean"], signed=True) for column in COLUMNS]
        rows.append([row["label"], *cells])
    return markdown(["loss", *[f"Δ {header}" for header in HEADERS]], rows)


BENCH_VALUES = ("median_ms", "iqr_ms", "ratio_to_ce", "ratio_to_floor", "ratio_to_official", "iters_per_s",
                "loss_share")
BENCH_COLUMNS = ["path", "kind", "env", "name", "scope", "device", "dtype", "num_rois", "num_classes", "repeats",
                 "contended", *BENCH_VALUES]
BENCH_SORT = ["kind", "env", "device", "dtype", "scope", "num_classes", "num_rois", "contended", "name", "path"]
# Rows of a quiet and a contended kernel measurement that pair up in the side-by-side table:
# `machine_code` is the environment without git_dirty (writing the quiet file dirties the tree
# before the contended run records its environment).
PAIR_KEYS = ["machine_code", "device", "dtype", "scope", "shape", "name"]


def bench_frame(records: Records, envs: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmark measurement, with its file's kind, environment id and `shape`;
    `contended` False where a record predates the field."""
    ids = _env_ids(envs)
    rows = [{"path": path, "kind": record["kind"], "env": ids[_env_key(record["environment"])],
             "machine_code": _env_key(dict(record["environment"], git_dirty=None)),
             **{name: entry.get(name) for name in BENCH_COLUMNS[3:]}, "contended": entry.get("contended", False)}
            for path, record in records.benches if record["kind"] != BENCH_EVAL_KIND for entry in record["records"]]
    frame = pd.DataFrame(rows, columns=BENCH_COLUMNS + ["machine_code"])
    for column in BENCH_VALUES:
        frame[column] = frame[column].map(_float).astype(float)
    frame["shape"] = [f"{rois} x {classes}" for rois, classes in zip(frame["num_rois"], frame["num_classes"])]
    return frame.sort_values(BENCH_SORT, kind="stable", ignore_index=True)


def kernel_table(bench: pd.DataFrame) -> str:
    """The quiet kernel measurements (contended ones: contention_table)."""
    quiet = bench[(bench["kind"] == BENCH_KERNEL_KIND) & ~bench["contended"].astype(bool)]
    rows = [[row["env"], row["device"], row["dtype"], row["scope"], row["shape"], row["name"], fmt(row["median_ms"], 3),
             fmt(row["iqr_ms"], 3), fmt(row["ratio_to_ce"], 2), fmt(row["ratio_to_floor"], 2),
             fmt(row["ratio_to_official"], 2)]
            for _, row in quiet.iterrows()]
    return markdown(["env", "device", "dtype", "scope", "RoIs x classes", "name", "median ms", "IQR ms", "× CE",
                     "× floor", "× official"], rows)


def contention_table(bench: pd.DataFrame) -> str:
    """Each contended kernel measurement beside the quiet one of the same environment (git_dirty
    aside), setting, shape and row ("–" where there is none): medians, × CE, and contended × CE
    over quiet × CE. `env` is the contended measurement's."""
    kernel = bench[bench["kind"] == BENCH_KERNEL_KIND]
    flags = kernel["contended"].astype(bool)
    paired = kernel[flags].merge(kernel[~flags], on=PAIR_KEYS, how="left", suffixes=("", "_quiet"))
    rows = [[row["env"], row["device"], row["dtype"], row["shape"], row["name"], fmt(row["median_ms_quiet"], 3),
             fmt(row["median_ms"], 3), fmt(row["ratio_to_ce_quiet"], 2), fmt(row["ratio_to_ce"], 2),
             fmt(row["ratio_to_ce"] / row["ratio_to_ce_quiet"], 2), fmt(row["ratio_to_official_quiet"], 2),
             fmt(row["ratio_to_official"], 2)]
            for _, row in paired.iterrows()]
    return markdown(["env", "device", "dtype", "RoIs x classes", "name", "quiet ms", "contended ms", "quiet × CE",
                     "contended × CE", "contended / quiet × CE", "quiet × official", "contended × official"], rows)


def step_table(bench: pd.DataFrame) -> str:
    rows = [[row["env"], row["device"], row["dtype"], row["scope"], row["shape"], row["name"], fmt(row["median_ms"], 2),
             fmt(row["iters_per_s"], 2), fmt(row["loss_share"], 3), fmt(row["ratio_to_ce"], 2),
             fmt(row["ratio_to_official"], 2)]
            for _, row in bench[bench["kind"] == BENCH_STEP_KIND].iterrows()]
    return markdown(["env", "device", "dtype", "scope", "RoIs x classes", "name", "median ms", "it/s", "loss share",
                     "× CE", "× official"], rows)


LVIS_V1_VAL_IMAGES = 19809
EVAL_COLUMNS = ["env", "task", "evaluator", "num_images", "num_evaluated_detections", "evaluate_s", "accumulate_s",
                "bootstrap_s", "bootstrap_resamples", "bootstrap_timed_resamples", "total_s", "data_rss_gib",
                "peak_rss_gib", "load", "AP", "APr"]


def _eval_entries(records: Records, envs: pd.DataFrame) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(environment id, measurement) of every `suite bench eval` file's records."""
    ids = _env_ids(envs)
    for _, record in records.benches:
        if record["kind"] == BENCH_EVAL_KIND:
            for entry in record["records"]:
                yield ids[_env_key(record["environment"])], entry


def eval_bench_frame(records: Records, envs: pd.DataFrame) -> pd.DataFrame:
    """One row per `suite bench eval` measurement; `load` is the 1-minute load average before it."""
    rows = [{"env": env, **{name: entry.get(name) for name in EVAL_COLUMNS[1:]}, "load": entry["loadavg_before"][0]}
            for env, entry in _eval_entries(records, envs)]
    frame = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    return frame.sort_values(["env", "task", "evaluator", "num_images"], kind="stable", ignore_index=True)


def eval_protocols_frame(records: Records, envs: pd.DataFrame) -> pd.DataFrame:
    """One row per fast `suite bench eval` measurement that timed other protocols beside the
    standard one (`metric_protocols`): the standard total, each other protocol's total (null where
    it does not define the task), all of them and their ratio to the standard alone, and the peak
    memory over all of them."""
    rows = [{"env": env, "task": entry["task"], "num_images": entry["num_images"], "standard_s": entry["total_s"],
             "fixed_s": entry["metric_protocols"].get("fixed", {}).get("total_s"),
             "challenge2021_s": entry["metric_protocols"].get("challenge2021", {}).get("total_s"),
             "all_s": entry["all_protocols_total_s"], "ratio": entry["all_protocols_total_s"] / entry["total_s"],
             "peak_rss_gib": entry["all_protocols_peak_rss_gib"]}
            for env, entry in _eval_entries(records, envs) if entry.get("metric_protocols")]
    frame = pd.DataFrame(rows, columns=["env", "task", "num_images", "standard_s", "fixed_s", "challenge2021_s",
                                        "all_s", "ratio", "peak_rss_gib"])
    return frame.sort_values(["env", "task", "num_images"], kind="stable", ignore_index=True)


def eval_protocols_table(frame: pd.DataFrame) -> str:
    rows = [[row["env"], row["task"], int(row["num_images"]), fmt(row["standard_s"], 1), fmt(row["fixed_s"], 1),
             fmt(row["challenge2021_s"], 1), fmt(row["all_s"], 1), f"{row['ratio']:.2f}×", fmt(row["peak_rss_gib"], 2)]
            for _, row in frame.iterrows()]
    return markdown(["env", "task", "images", "standard s", "fixed s", "challenge2021 s", "all protocols s",
                     "× standard", "peak GiB"], rows)


def eval_fits(frame: pd.DataFrame) -> pd.DataFrame:
    """Per environment, task and evaluator: least-squares lines total_s = a + b * images and
    peak_rss_gib = c + d * images over its measurements (two sizes at least), and their values
    at LVIS v1 val's 19,809 images beside the measurement there, if any."""
    rows = []
    for (env, task, evaluator), group in frame.groupby(["env", "task", "evaluator"], sort=True):
        sizes = group["num_images"].astype(float)
        fitted = group[sizes < LVIS_V1_VAL_IMAGES] if (sizes < LVIS_V1_VAL_IMAGES).sum() >= 2 else group
        if fitted["num_images"].nunique() < 2:
            continue
        row = {"env": env, "task": task, "evaluator": evaluator, "fit_sizes": sorted(fitted["num_images"].tolist())}
        for value in ("total_s", "peak_rss_gib"):
            slope, intercept = np.polyfit(fitted["num_images"].astype(float), fitted[value].astype(float), 1)
            row[f"{value}_slope"], row[f"{value}_intercept"] = slope, intercept
            row[f"{value}_at_val"] = intercept + slope * LVIS_V1_VAL_IMAGES
            measured = group[group["num_images"] == LVIS_V1_VAL_IMAGES][value]
            row[f"{value}_measured_at_val"] = float(measured.iloc[0]) if len(measured) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def eval_table(frame: pd.DataFrame) -> str:
    rows = [[row["env"], row["task"], row["evaluator"], int(row["num_images"]), fmt(row["evaluate_s"], 1),
             fmt(row["accumulate_s"], 2),
             fmt(row["bootstrap_s"], 1) + ("" if row["bootstrap_timed_resamples"] == row["bootstrap_resamples"]
                                           else f" (from {int(row['bootstrap_timed_resamples'])})"),
             fmt(row["total_s"], 1), fmt(row["peak_rss_gib"], 2), fmt(row["load"], 1), fmt(row["AP"], 3),
             fmt(row["APr"], 3)]
            for _, row in frame.iterrows()]
    return markdown(["env", "task", "evaluator", "images", "evaluate s", "accumulate s", "bootstrap s (200)",
                     "total s", "peak GiB", "load", "AP", "APr"], rows)


def eval_fit_table(fits: pd.DataFrame) -> str:
    rows = [[row["env"], row["task"], row["evaluator"], ", ".join(str(size) for size in row["fit_sizes"]),
             f"{row['total_s_intercept']:.1f} + {row['total_s_slope'] * 1000:.2f} per 1000 images",
             fmt(row["total_s_at_val"], 0), fmt(row["total_s_measured_at_val"], 0),
             f"{row['peak_rss_gib_intercept']:.2f} + {row['peak_rss_gib_slope'] * 1000:.3f} per 1000 images",
             fmt(row["peak_rss_gib_at_val"], 2), fmt(row["peak_rss_gib_measured_at_val"], 2)]
            for _, row in fits.iterrows()]
    return markdown(["env", "task", "evaluator", "fitted on images", "total s (fit)", "fit at 19,809",
                     "measured at 19,809", "peak GiB (fit)", "fit at 19,809", "measured at 19,809"], rows)


def environment_table(envs: pd.DataFrame) -> str:
    shown = ["torch", "torchvision", "detectron2", "cuda", "device_name", "num_threads", "python", "git_commit",
             "git_dirty"]
    rows = [[row["env"], *[("–" if row[name] is None else str(row[name])) for name in shown]]
            for _, row in envs.iterrows()]
    return markdown(["env", *shown], rows)


def published_table(published: pd.DataFrame) -> str:
    """The published LVIS v1 numbers as written in the CSV ("–" for an empty cell)."""
    rows = [[("–" if value == "" else value) for value in row] for row in published.itertuples(index=False)]
    return markdown(list(published.columns), rows)


def left_out_table(left_out: List[Tuple[str, str]]) -> str:
    return markdown(["file", "reason"], [[f"`{path}`", reason.replace("|", "\\|")] for path, reason in left_out])


def _labels_by_path(runs: pd.DataFrame, experiments: pd.DataFrame) -> Dict[str, str]:
    merged = runs.merge(experiments[GROUP_KEYS + ["label"]], on=GROUP_KEYS, how="left")
    return dict(zip(merged["path"], merged["label"]))


def per_category_frame(records: Records, runs: pd.DataFrame, experiments: pd.DataFrame) -> pd.DataFrame:
    """Per data set, protocol, experiment and category: the mean over seeds of bbox/segm AP, with
    the category's frequency group and training instance count."""
    labels = _labels_by_path(runs, experiments)
    protocols = dict(zip(runs["path"], runs["protocol"]))
    columns = ["dataset", "protocol", "label", "id", "name", "frequency", "instance_count", "bbox_AP", "segm_AP"]
    rows = [{"dataset": str(record["dataset"]["name"]), "protocol": protocols[path], "label": labels[path],
             "id": category["id"], "name": category["name"], "frequency": category["frequency"],
             "instance_count": category["instance_count"], "bbox_AP": _float(category["bbox_AP"]),
             "segm_AP": _float(category["segm_AP"])}
            for path, record in records.runs for category in record["per_category"]]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    return frame.groupby(columns[:7], sort=True, as_index=False)[["bbox_AP", "segm_AP"]].mean()


def grad_balance_frame(records: Records, runs: pd.DataFrame, experiments: pd.DataFrame) -> pd.DataFrame:
    """Per data set, experiment and foreground class (label j = the j-th category by id, the
    Detectron2 convention): positive and negative gradient summed over the seeds that recorded
    it, their `ratio`, and the class's `rank` by training instances (0 = most frequent)."""
    labels = _labels_by_path(runs, experiments)
    columns = ["dataset", "label", "class_id", "frequency", "instance_count"]
    rows = []
    for path, record in records.runs:
        balance = record["grad_balance"]
        if balance is None:
            continue
        categories = sorted(record["per_category"], key=lambda category: category["id"])
        for class_id, pos, neg in zip(balance["class_ids"], balance["pos_grad"], balance["neg_grad"]):
            if 0 <= class_id < len(categories):
                category = categories[class_id]
                rows.append({"dataset": str(record["dataset"]["name"]), "label": labels[path], "class_id": class_id,
                             "frequency": category["frequency"], "instance_count": category["instance_count"],
                             "pos_grad": _float(pos), "neg_grad": _float(neg)})
    frame = pd.DataFrame(rows, columns=columns + ["pos_grad", "neg_grad"])
    if frame.empty:
        return frame
    frame = frame.groupby(columns, sort=True, as_index=False)[["pos_grad", "neg_grad"]].sum()
    frame["ratio"] = frame["pos_grad"] / frame["neg_grad"]
    ranks = [pd.Series(range(len(group)), index=group.sort_values(
                 ["instance_count", "class_id"], ascending=[False, True], kind="stable").index)
             for _, group in frame.groupby(["dataset", "label"], sort=True)]
    frame["rank"] = pd.concat(ranks)
    return frame
