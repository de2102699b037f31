"""`suite bench eval`: LVIS evaluation and its 200-resample bootstrap at LVIS v1 val's scale.

Each measurement (task, number of images, evaluator) runs in a fresh Python process, so that its
peak memory (ru_maxrss) is its own: it generates LVIS-val-shaped ground truth and 300 simulated
detections per image (`suite.bench.lvis_val_shape`, seeded), writes the ground truth to a JSON
file and loads it with `lvis.LVIS` as a user would, then times

- `evaluate_s`: the matching (fast: `lvis_fast.match`; official: `LVISResults` + `LVISEval.evaluate`),
- `accumulate_s`: one accumulation and summary over all images (the nine metrics),
- `bootstrap_s`: the bootstrap of `resamples` resamples from that matching, as a run's
  evaluation computes its metrics and its bootstrap.json together (`suite train
  --bootstrap-resamples`, a study's cell, `suite eval --run` of one:
  `suite.evaluation.bootstrap.BootstrapReplicates`). The official one is extrapolated:
  `resamples` times the mean of `timed_resamples` official accumulations
  (`bootstrap_timed_resamples` says how many were timed).

`total_s` = evaluate_s + accumulate_s + bootstrap_s: one run's evaluation and its bootstrap.
These fields are the standard protocol's. A fast record then measures, in the same process on the
same data, each other protocol of `protocols` that defines the task (`suite.evaluation.protocols`:
"fixed" and, for masks, "challenge2021"), under `metric_protocols`: {name: {evaluate_s (its matching, all
area ranges; protocols with the same limits share their candidates, as `suite eval` does: the
first's evaluate_s includes them, a later one names it in shares_candidates_with), accumulate_s
(its metrics), bootstrap_s (its `resamples` replicates from that matching), total_s,
num_evaluated_detections, and its metrics AP, APr, APc, APf (and AP_pool, APr_pool, APc_pool,
APf_pool)}}; `all_protocols_total_s` is the standard total plus theirs, and
`all_protocols_peak_rss_gib` the peak over all of them (`peak_rss_gib` stays the standard's).
A record also holds the data's size, AP, APr, APc and APf (so that the two evaluators can be
compared on the same data), the process's resident memory once the data is loaded
(`data_rss_gib`: Python, the lvis API, the ground truth, the detections - for "segm" their
300 masks per image dominate; neither torch nor Detectron2 is imported: the category table is
read from Detectron2's metadata file), its peak while evaluating (`peak_rss_gib`: the
data held plus the evaluation's own memory; Linux's VmHWM, reset once the data is loaded), the
peak of the whole process including the data's generation (`process_peak_rss_gib`), and the
load average before and after.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from suite.schema import GROUP_METRICS

EVALUATORS = ("fast", "official")


def _rss_gib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30


def _reset_peak_rss() -> None:
    """Start a new peak (VmHWM) for this process (Linux: /proc/self/clear_refs, value 5)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _peak_rss_gib() -> float:
    """VmHWM: the peak resident memory since the last `_reset_peak_rss`."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 2 ** 20


def measure(task: str, num_images: int, evaluator: str, resamples: int, timed_resamples: int, seed: int,
            protocols: Sequence[str] = ("standard",)) -> Dict:
    """One measurement in this process (call it in a fresh one: see `run_eval_bench`)."""
    from lvis import LVIS

    from suite.bench.lvis_val_shape import as_results, lvis_val_shaped
    from suite.evaluation import bootstrap, lvis_fast
    from suite.evaluation import protocols as eval_protocols

    load_before = os.getloadavg()
    dataset, detections = lvis_val_shaped(num_images, seed=seed, masks=task == "segm")
    num_annotations = len(dataset["annotations"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "val.json"
        path.write_text(json.dumps(dataset))
        del dataset
        lvis_gt = LVIS(str(path))
    results = as_results(detections, task) if evaluator == "official" else None
    data_rss = _rss_gib()
    _reset_peak_rss()

    if evaluator == "fast":
        start = time.perf_counter()
        matches = lvis_fast.match(lvis_gt, detections, task)
        evaluate_s = time.perf_counter() - start
        start = time.perf_counter()
        summary = lvis_fast.summarize_precision(matches.precision(), matches.freq_groups, matches.params)
        accumulate_s = time.perf_counter() - start
        num_evaluated = matches.num_evaluated_detections
        start = time.perf_counter()
        bootstrap.BootstrapReplicates(resamples).add("standard", task, matches)
        bootstrap_s, timed = time.perf_counter() - start, resamples
        del matches
    else:
        from lvis import LVISEval, LVISResults

        from suite.evaluation import lvis_numpy2

        lvis_numpy2.install()
        start = time.perf_counter()
        lvis_eval = LVISEval(lvis_gt, LVISResults(lvis_gt, results), task)
        lvis_eval.evaluate()
        evaluate_s = time.perf_counter() - start
        start = time.perf_counter()
        lvis_eval.accumulate()
        lvis_eval.summarize()
        accumulate_s = time.perf_counter() - start
        summary = dict(lvis_eval.get_results())
        num_evaluated = sum(len(found) for found in lvis_eval._dts.values())
        timed = min(timed_resamples, resamples)
        draws = bootstrap.resample_indices(num_images, resamples, bootstrap.DEFAULT_SEED)[:timed]
        start = time.perf_counter()
        bootstrap.official_replicates(lvis_eval, draws)
        bootstrap_s = (time.perf_counter() - start) / timed * resamples
    standard_peak_rss = _peak_rss_gib()
    others = {} if evaluator != "fast" else _measure_protocols(
        lvis_gt, detections, task, [eval_protocols.get_protocol(name) for name in protocols
                                    if name != "standard" and task in eval_protocols.get_protocol(name).tasks],
        resamples)
    extra = {} if not others else {
        "metric_protocols": others,
        "all_protocols_total_s": evaluate_s + accumulate_s + bootstrap_s + sum(o["total_s"] for o in others.values()),
        "all_protocols_peak_rss_gib": max(standard_peak_rss, _peak_rss_gib()),
    }
    return {
        "name": f"{evaluator}_{task}", "evaluator": evaluator, "task": task, "num_images": num_images,
        "num_annotations": num_annotations, "num_detections": len(detections),
        "num_evaluated_detections": num_evaluated, "seed": seed,
        "evaluate_s": evaluate_s, "accumulate_s": accumulate_s, "bootstrap_s": bootstrap_s,
        "bootstrap_resamples": resamples, "bootstrap_timed_resamples": timed,
        "total_s": evaluate_s + accumulate_s + bootstrap_s,
        "data_rss_gib": data_rss, "peak_rss_gib": standard_peak_rss,
        "process_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
        "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
        **{metric: (None if summary[metric] == -1 else float(summary[metric]) * 100)
           for metric in GROUP_METRICS},
        **extra,
    }


def _measure_protocols(lvis_gt, detections, task: str, chosen, resamples: int) -> Dict[str, Dict]:
    """Each protocol's matching, metrics and bootstrap (from the same matching) on the loaded data,
    as `suite eval` runs them (`protocols.shared_matches`): the protocols with the same limits share
    their candidates, timed with the first of them; a later one's record names it
    (`shares_candidates_with`) and its `evaluate_s` is its own matching on them."""
    from suite.evaluation import bootstrap
    from suite.evaluation import protocols as eval_protocols

    records: Dict[str, Dict] = {}
    start = time.perf_counter()
    for protocol, _, matches in eval_protocols.shared_matches(lvis_gt, [(protocol, task) for protocol in chosen],
                                                              lambda *_: detections):
        evaluate_s = time.perf_counter() - start
        first = next(other.name for other in chosen if eval_protocols.limits(other) == eval_protocols.limits(protocol))
        start = time.perf_counter()
        summary = eval_protocols.summarize(matches, protocol, metrics=bootstrap.bootstrap_metrics(protocol.name))
        accumulate_s = time.perf_counter() - start
        start = time.perf_counter()
        bootstrap.BootstrapReplicates(resamples).add(protocol.name, task, matches)
        bootstrap_s = time.perf_counter() - start
        records[protocol.name] = {
            "evaluate_s": evaluate_s, "accumulate_s": accumulate_s, "bootstrap_s": bootstrap_s,
            "total_s": evaluate_s + accumulate_s + bootstrap_s,
            "num_evaluated_detections": matches.num_evaluated_detections,
            **({"shares_candidates_with": first} if first != protocol.name else {}),
            **{metric: None if value == -1 else float(value) * 100 for metric, value in summary.items()}}
        del matches
        start = time.perf_counter()
    return records


def run_eval_bench(sizes: Sequence[int], official_sizes: Sequence[int], tasks: Sequence[str], resamples: int,
                   timed_resamples: int, seed: int, progress: Callable[[str], None],
                   protocols: Sequence[str] = ("standard",)) -> List[Dict]:
    """Every measurement, each in a fresh process: the fast evaluator at `sizes` (with the other
    `protocols`), the official one at `official_sizes`, for each task."""
    plan = [(task, size, "fast") for task in tasks for size in sizes] + \
        [(task, size, "official") for task in tasks for size in official_sizes]
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    records = []
    for task, size, evaluator in plan:
        progress(f"eval bench: {evaluator} {task} at {size} images ...")
        arguments = json.dumps([task, size, evaluator, resamples, timed_resamples, seed, list(protocols)])
        finished = subprocess.run([sys.executable, "-m", "suite.bench.eval_scale", arguments], env=env,
                                  capture_output=True, text=True)
        if finished.returncode != 0:
            raise RuntimeError(f"eval bench {evaluator} {task} {size}: the measuring process failed:\n"
                               f"{finished.stderr[-3000:]}")
        record = json.loads(finished.stdout.strip().splitlines()[-1])
        progress(f"  evaluate {record['evaluate_s']:.1f} s, accumulate {record['accumulate_s']:.2f} s, "
                 f"bootstrap {record['bootstrap_s']:.1f} s, total {record['total_s']:.1f} s, "
                 f"peak {record['peak_rss_gib']:.2f} GiB, load {record['loadavg_before'][0]:.1f}")
        for name, other in record.get("metric_protocols", {}).items():
            progress(f"  {name}: evaluate {other['evaluate_s']:.1f} s, bootstrap {other['bootstrap_s']:.1f} s, "
                     f"total {other['total_s']:.1f} s")
        if "all_protocols_total_s" in record:
            progress(f"  all protocols: total {record['all_protocols_total_s']:.1f} s, "
                     f"peak {record['all_protocols_peak_rss_gib']:.2f} GiB")
        records.append(record)
    return records


if __name__ == "__main__":
    print(json.dumps(measure(*json.loads(sys.argv[1]))))
