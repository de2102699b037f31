"""The report's figures: seaborn on matplotlib's Agg backend, written as PNG without a software
or date tag, so the same frames give the same bytes."""

import io
import os
import re
import tempfile
import textwrap
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from suite.schema import BENCH_KERNEL_KIND, BENCH_STEP_KIND, FREQUENCY_METRICS, GROUP_METRICS, TASKS  # noqa: E402

FREQUENCY_ORDER = ["r", "c", "f"]
FREQUENCY_NAMES = {"r": "rare", "c": "common", "f": "frequent"}
#: Characters per line of a per-category panel's title (a panel is 3.3 inches wide).
PANEL_TITLE_CHARACTERS = 34


def slug(text: str) -> str:
    """A file-name-safe form of a data set name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unnamed"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _save(figure, path: Path) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
    return path.name


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def ap_groups(experiments: pd.DataFrame, dataset: str, out: Path) -> Optional[str]:
    """Grouped bars: mean APr / APc / APf (boxes and masks) per loss on one data set."""
    rows = [{"loss": row["label"], "task": task, "group": name, "AP": row[f"{task}_{name}_mean"]}
            for _, row in experiments[experiments["dataset"] == dataset].iterrows()
            for task in TASKS for name in FREQUENCY_METRICS]
    data = pd.DataFrame(rows).dropna(subset=["AP"])
    if data.empty:
        return None
    _theme()
    # Horizontal bars, one row per experiment in the table's order: their labels run long.
    order = list(dict.fromkeys(data["loss"]))
    figure, panels = plt.subplots(1, 2, sharex=True, sharey=True, figsize=(14, 1.5 + 0.45 * len(order)))
    for axes, task in zip(panels, TASKS):
        sns.barplot(data=data[data["task"] == task], y="loss", x="AP", hue="group", order=order,
                    hue_order=list(FREQUENCY_METRICS), errorbar=None, ax=axes, legend=task == "segm")
        axes.set(title=task, xlabel="AP (%)", ylabel="")
    sns.move_legend(panels[1], "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    figure.suptitle(f"{dataset}: AP by frequency group (mean over seeds)")
    figure.tight_layout()
    return _save(figure, out / f"ap_groups_{slug(dataset)}.png")


def per_category(categories: pd.DataFrame, dataset: str, protocol: str, name: str, out: Path) -> Optional[str]:
    """Per-category mask AP against training instance count (log x) of one protocol (key
    `protocol`, name `name`: suite.report.protocols), one panel per loss, coloured by frequency
    group."""
    data = categories[(categories["dataset"] == dataset) & (categories["protocol"] == protocol)].dropna(
        subset=["segm_AP"])
    data = data[data["instance_count"] > 0].assign(group=lambda frame: frame["frequency"].map(FREQUENCY_NAMES),
                                                   arm=lambda frame: frame["label"].str.replace(f" ({name})", "",
                                                                                                regex=False))
    if data.empty:
        return None
    _theme()
    grid = sns.relplot(data=data, x="instance_count", y="segm_AP", hue="group",
                       hue_order=[FREQUENCY_NAMES[key] for key in FREQUENCY_ORDER], col="arm",
                       col_order=sorted(data["arm"].unique()), col_wrap=min(4, data["arm"].nunique()),
                       height=3, aspect=1.1)
    grid.set(xscale="log")
    grid.set_axis_labels("training instances", "mask AP (%)")
    for axes, label in zip(grid.axes.flat, grid.col_names):  # labels run long: wrapped to the panel's width
        axes.set_title(textwrap.fill(label, PANEL_TITLE_CHARACTERS), fontsize="medium")
    grid.tight_layout()  # again: room for the titles' second lines
    grid.figure.suptitle(f"{dataset}: {name}: per-category mask AP", y=1.04)
    return _save(grid.figure, out / f"per_category_{slug(dataset)}_{protocol[:8]}.png")


def grad_balance(balance: pd.DataFrame, dataset: str, out: Path) -> Optional[str]:
    """Accumulated positive / negative gradient per class, classes by training frequency."""
    data = balance[(balance["dataset"] == dataset)]
    data = data[(data["neg_grad"] > 0) & (data["pos_grad"] > 0)]
    if data.empty:
        return None
    _theme()
    figure, axes = plt.subplots(figsize=(7, 3.5))
    data = data.rename(columns={"label": "loss"})
    sns.lineplot(data=data, x="rank", y="ratio", hue="loss", hue_order=sorted(data["loss"].unique()),
                 marker="o", ax=axes)
    axes.set_yscale("log")
    axes.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes.set_xlabel("class, by training instances (most frequent first)")
    axes.set_ylabel("positive / negative gradient")
    axes.set_title(f"{dataset}: accumulated classifier gradient balance")
    sns.move_legend(axes, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)  # beside the lines, not over them
    return _save(figure, out / f"grad_balance_{slug(dataset)}.png")


def kernel_time(bench: pd.DataFrame, out: Path) -> Optional[str]:
    """Median kernel time (forward + backward) per loss, one bar colour per shape."""
    data = bench[bench["kind"] == BENCH_KERNEL_KIND].dropna(subset=["median_ms"])
    if data.empty:
        return None
    load = data["contended"].astype(bool).map({True: " contended", False: ""})
    data = data.assign(setting=data["env"] + " " + data["device"] + " " + data["dtype"] + load)
    return _bars_per_loss(data, "median_ms", "median ms", out / "kernel_time.png")


def step_throughput(bench: pd.DataFrame, out: Path) -> Optional[str]:
    """Training steps per second per loss, one panel per scope and setting."""
    data = bench[bench["kind"] == BENCH_STEP_KIND].dropna(subset=["iters_per_s"])
    if data.empty:
        return None
    data = data.assign(setting=data["env"] + " " + data["device"] + " " + data["dtype"] + " " + data["scope"])
    return _bars_per_loss(data, "iters_per_s", "it/s", out / "step_throughput.png")


def _bars_per_loss(data: pd.DataFrame, value: str, label: str, path: Path) -> str:
    """Bars of `value` per benchmark row name, coloured by shape, one panel per `setting`."""
    _theme()
    grid = sns.catplot(data=data, kind="bar", x="name", y=value, hue="shape", col="setting",
                       order=sorted(data["name"].unique()), hue_order=sorted(data["shape"].unique()),
                       col_order=sorted(data["setting"].unique()), errorbar=None, height=3.5, aspect=1.4)
    grid.set_axis_labels("", label)
    grid.set_xticklabels(rotation=30, ha="right")
    return _save(grid.figure, path)


def paired_differences(frame: pd.DataFrame, title: str, path: Path) -> Optional[str]:
    """Mean paired difference to each reference with its 95 % t-interval, per frequency group
    (AP, APr, APc, APf; boxes and masks): one panel per task and reference, one colour per arm."""
    data = frame.dropna(subset=["mean"])
    if data.empty:
        return None
    _theme()
    references = sorted(data["reference"].unique())
    groups = list(GROUP_METRICS)
    arms = sorted(data["arm"].unique())
    figure, axes = plt.subplots(len(references), 2, figsize=(10, 3.2 * len(references)), squeeze=False)
    palette = dict(zip(arms, sns.color_palette(n_colors=len(arms))))
    for row, reference in enumerate(references):
        for col, task in enumerate(TASKS):
            ax = axes[row][col]
            chosen = data[(data["reference"] == reference) & data["column"].str.startswith(task + "_")]
            present = [arm for arm in arms if arm in set(chosen["arm"])]
            for index, arm in enumerate(present):
                points = chosen[chosen["arm"] == arm].set_index("column")
                offset = (index - (len(present) - 1) / 2) * 0.8 / max(len(present), 1)
                xs, means, lows, highs = [], [], [], []
                for position, group in enumerate(groups):
                    column = f"{task}_{group}"
                    if column in points.index:
                        xs.append(position + offset)
                        means.append(points.loc[column, "mean"])
                        lows.append(points.loc[column, "low"])
                        highs.append(points.loc[column, "high"])
                lower = [mean - low if low == low else 0 for mean, low in zip(means, lows)]
                upper = [high - mean if high == high else 0 for mean, high in zip(means, highs)]
                ax.errorbar(xs, means, yerr=[lower, upper], fmt="o", capsize=3, color=palette[arm], label=arm)
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels(groups)
            ax.set_ylabel(f"{task}: Δ AP vs {reference} (points)")
            if present:
                ax.legend(fontsize=8)
    figure.suptitle(f"{title}: paired difference to CE per seed, mean and 95 % t-interval", y=1.02)
    figure.tight_layout()
    return _save(figure, path)


def eval_scaling(frame: pd.DataFrame, fits: pd.DataFrame, out: Path) -> Optional[str]:
    """`suite bench eval`: total time (evaluation + 200-resample bootstrap) and peak memory against
    the number of images, per task and evaluator, measured points and the fitted lines drawn
    out to LVIS v1 val's 19,809 images, beside the goals (10 minutes, 6 GB)."""
    if frame.empty:
        return None
    _theme()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    series = sorted({(row["env"], row["task"], row["evaluator"]) for _, row in frame.iterrows()})
    palette = dict(zip(series, sns.color_palette(n_colors=len(series))))
    for key in series:
        env, task, evaluator = key
        points = frame[(frame["env"] == env) & (frame["task"] == task) & (frame["evaluator"] == evaluator)]
        fit = fits[(fits["env"] == env) & (fits["task"] == task) & (fits["evaluator"] == evaluator)] \
            if not fits.empty else fits
        for ax, value in zip(axes, ("total_s", "peak_rss_gib")):
            ax.plot(points["num_images"], points[value], "o", color=palette[key], label=f"{env} {task} {evaluator}")
            if len(fit):
                line = fit.iloc[0]
                xs = [min(line["fit_sizes"]) + step * (19809 - min(line["fit_sizes"])) / 20 for step in range(21)]
                ax.plot(xs, [line[f"{value}_intercept"] + line[f"{value}_slope"] * x for x in xs], "--",
                        color=palette[key], linewidth=1)
    for ax, goal, label in zip(axes, (600, 6e9 / 2 ** 30), ("total s (evaluation + 200-resample bootstrap)",
                                                             "peak resident memory, GiB")):
        ax.axvline(19809, color="grey", linewidth=0.8, linestyle=":")
        ax.axhline(goal, color="red", linewidth=0.8, linestyle=":")
        ax.set_xlabel("validation images (LVIS v1 val: 19,809)")
        ax.set_ylabel(label)
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    figure.suptitle("LVIS evaluation at scale: measured (points), least-squares fit (dashed), goal (red)", y=1.02)
    figure.tight_layout()
    return _save(figure, out / "eval_scaling.png")
