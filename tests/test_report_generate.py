"""suite report on small hand-made records that follow docs/records.md."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from suite.cli import main
from suite.report import generate_report
from suite.report import tables
from suite.report.records import gather

ENV = {"python": "3.11.0", "torch": "2.14.1", "torchvision": "0.29.1", "detectron2": "0.6", "cuda": None,
       "device_name": "Test CPU", "cpu": "Test CPU", "num_threads": 2, "platform": "Linux", "git_commit": "abc123",
       "git_dirty": False}
CATEGORIES = [  # id, frequency, instance count
    (1, "f", 500), (2, "f", 300), (3, "c", 60), (4, "c", 20), (5, "r", 5), (6, "r", 2)]


def metrics(ap, apr, apc, apf):
    block = {"AP": ap, "AP50": ap + 10, "AP75": ap - 1, "APs": None, "APm": ap, "APl": ap, "APr": apr, "APc": apc,
             "APf": apf}
    return {"bbox": dict(block, AP=ap + 1.0), "segm": block}


def run_record(loss, seed, ap, apr, apc, apf, dataset="synth", iterations=100, params=None, balance=None):
    return {
        "schema_version": 1, "kind": "train_run",
        "loss": {"name": loss, "params": params or {}},
        "dataset": {"name": dataset, "path": f"data/{dataset}", "num_classes": 6, "num_train_images": 40},
        "config": {"SEED": seed, "OUTPUT_DIR": f"runs/{loss}_{seed}", "SOLVER": {"MAX_ITER": iterations}},
        "config_hash": f"hash-{loss}-{seed}",
        "iterations": iterations, "seed": seed,
        "metrics": metrics(ap, apr, apc, apf),
        "per_category": [{"id": cid, "name": f"class{cid}", "frequency": freq, "image_count": count // 2,
                          "instance_count": count, "bbox_AP": apf - cid, "segm_AP": apf - 2 * cid}
                         for cid, freq, count in CATEGORIES],
        "train": {"start_iter": 0, "wall_s": 50.0, "iters_per_s": 2.0, "loss_curve": [{"iter": 20, "total_loss": 1.0}]},
        "grad_balance": balance,
        "environment": ENV,
        "finished_at": "2026-01-01T00:00:00Z",
    }


def bench_file(kind):
    records = []
    for name, median in (("torch_cross_entropy", 2.0), ("memory_floor", 1.0), ("ce", 2.5), ("seesaw", 5.0),
                         ("seesaw_official", 10.0)):
        entry = {"name": name, "scope": "kernel" if kind == "bench_kernel" else "box_predictor", "device": "cpu",
                 "dtype": "float32", "num_rois": 512, "num_classes": 1203, "median_ms": median, "iqr_ms": 0.1,
                 "repeats": 20, "ratio_to_ce": median / 2.0, "ratio_to_floor": median / 1.0,
                 "ratio_to_official": median / 10.0}
        if kind == "bench_step":
            entry.update(iters_per_s=1000.0 / (median + 100.0), loss_share=median / (median + 100.0))
        records.append(entry)
    return {"schema_version": 1, "kind": kind, "environment": ENV, "records": records}


def write(path: Path, record) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def balance(pos, neg):
    return {"class_ids": list(range(6)), "pos_grad": pos, "neg_grad": neg}


def write_results(root: Path) -> Path:
    """Run records of two losses (CE with two seeds) on the generated set, one on lvis_v1, two
    files that are not records, and two benchmark files under `root`."""
    write(root / "ce_0" / "run.json", run_record("ce", 0, 20.0, 2.0, 15.0, 30.0,
                                                 balance=balance([50, 40, 10, 4, 1, .5], [10, 10, 20, 20, 30, 30])))
    write(root / "ce_1" / "run.json", run_record("ce", 1, 22.0, 4.0, 17.0, 32.0))
    write(root / "seesaw_0" / "run.json", run_record("seesaw", 0, 25.0, 10.0, 20.0, 31.0, params={"p": 0.8, "q": 2.0},
                                                     balance=balance([50, 40, 10, 4, 1, .5], [10, 10, 10, 5, 2, 1])))
    write(root / "lvis" / "run.json", run_record("seesaw", 0, 26.0, 18.0, 25.0, 30.0, dataset="lvis_v1"))
    (root / "lvis" / "metrics.json").write_text('{"iteration": 1}\n{"iteration": 2}\n')  # JSON lines: not a record
    write(root / "lvis" / "inference" / "lvis_instances_results.json", [{"image_id": 1}])  # not a record either
    write(root / "bench" / "kernel.json", bench_file("bench_kernel"))
    write(root / "bench" / "step.json", bench_file("bench_step"))
    return root


@pytest.fixture
def results(tmp_path):
    """The records of write_results, for a test that adds to them."""
    return write_results(tmp_path / "results")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(results folder, its report) for the tests that only read them: one generation, not one each."""
    root = tmp_path_factory.mktemp("report")
    results = write_results(root / "results")
    return results, generate_report([results], root / "out")


def table_rows(text: str, heading: str):
    """The body rows (as cell lists) of the first table after `heading` in a Markdown text."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_aggregates_seeds(results):
    records = gather([results])
    envs = tables.environments(records)
    experiments = tables.aggregate(tables.runs_frame(records, envs))
    ce = experiments[(experiments["dataset"] == "synth") & (experiments["loss"] == "ce")].iloc[0]
    assert ce["count"] == 2 and ce["seeds"] == "0, 1"
    assert ce["segm_AP_mean"] == pytest.approx(21.0)
    assert ce["segm_AP_std"] == pytest.approx(math.sqrt(2.0))  # sample std of 20 and 22
    assert ce["bbox_APr_mean"] == pytest.approx(3.0)
    seesaw = experiments[(experiments["dataset"] == "synth") & (experiments["loss"] == "seesaw")].iloc[0]
    assert seesaw["count"] == 1 and math.isnan(seesaw["segm_AP_std"])
    assert len(experiments) == 3  # synth ce, synth seesaw, lvis_v1 seesaw


def test_other_iterations_or_params_are_other_experiments(tmp_path):
    write(tmp_path / "a" / "run.json", run_record("ce", 0, 20.0, 2.0, 15.0, 30.0))
    write(tmp_path / "b" / "run.json", run_record("ce", 1, 22.0, 4.0, 17.0, 32.0, iterations=200))
    write(tmp_path / "c" / "run.json", run_record("ce", 2, 24.0, 4.0, 17.0, 32.0, params={"x": 1}))
    records = gather([tmp_path])
    experiments = tables.aggregate(tables.runs_frame(records, tables.environments(records)))
    assert sorted(experiments["count"]) == [1, 1, 1]
    assert experiments["label"].nunique() == 3


def test_experiments_are_the_paired_protocols_and_compare_with_their_own_ce(tmp_path):
    """Two protocols at the same iterations (another ROI batch size): each loss is compared with
    the CE of its own protocol. A run recorded before a config key existed (the later runs all
    hold it at one value), or with another value in another loss's parameter node, is a seed of
    the same experiment, as in the paired comparisons, and so is one that differs only in Seesaw's
    `compiled` (how, not what); another cosine scale is another experiment."""
    def run(loss, seed, ap, batch=512, extra_key=True, seesaw_compiled=None):
        params = {"p": 0.8, "q": 2.0, "compiled": seed == 1 or None} if loss == "seesaw" else {}
        record = run_record(loss, seed, ap, ap / 2, ap, ap, params=params)
        record["config"]["MODEL"] = {"ROI_HEADS": {"BATCH_SIZE_PER_IMAGE": batch},
                                     "ROI_BOX_HEAD": {"COSINE_SCALE": 20.0, "SEESAW": {"COMPILED": seesaw_compiled}}}
        if extra_key:
            record["config"]["MODEL"]["ROI_HEADS"]["ADDED_LATER"] = True
        return record

    def experiments_of(runs):
        for name, record in runs.items():
            write(tmp_path / name / "run.json", record)
        records = gather([tmp_path])
        return tables.aggregate(tables.runs_frame(records, tables.environments(records)))

    experiments = experiments_of({
        "ce_0": run("ce", 0, 20.0, extra_key=False), "ce_1": run("ce", 1, 22.0),
        "ce_2": run("ce", 2, 18.0, seesaw_compiled=False), "seesaw_0": run("seesaw", 0, 30.0),
        "seesaw_1": run("seesaw", 1, 32.0),
        "ce_small": run("ce", 0, 10.0, batch=64), "seesaw_small": run("seesaw", 0, 12.0, batch=64)})
    assert sorted(experiments["count"]) == [1, 1, 2, 3]  # ce_0, ce_1 and ce_2; seesaw_0 and seesaw_1
    assert experiments["protocol"].nunique() == 2
    large = experiments[experiments["count"] == 3]["protocol"].iloc[0]
    for _, row in experiments.iterrows():  # two protocols in the data set: each label says what it is
        batch = 512 if row["protocol"] == large else 64
        assert row["label"] == (f"{row['loss']} (6 classes, 40 images, 100 it, from scratch, "
                                f"MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE={batch})")
    deltas = {row[0]: row[1] for row in table_rows("\n" + tables.delta_table(experiments), "\n")}
    label = {(row["loss"], row["protocol"] == large): row["label"] for _, row in experiments.iterrows()}
    # bbox AP = ap + 1: seesaw's mean 32 against the CE mean 21; seesaw 13 against CE 11.
    assert deltas[label[("seesaw", True)]] == "+11.0" and deltas[label[("seesaw", False)]] == "+2.0"
    from suite.losses import params_with_defaults  # torch: only here, not for the whole file

    assert all(name in params_with_defaults(loss, {}) for loss, names in tables.IMPLEMENTATION_PARAMS.items()
               for name in names)

    cosine = {}
    for seed, scale in ((0, 20.0), (1, 10.0)):
        cosine[f"cosine_{scale}"] = run("seesaw", seed, 40.0)
        cosine[f"cosine_{scale}"]["config"]["MODEL"]["ROI_BOX_HEAD"].update(COSINE_CLASSIFIER=True, COSINE_SCALE=scale)
    experiments = experiments_of(cosine)
    arm = experiments[experiments["loss"] == "seesaw+cos"]
    assert sorted(arm["label"]) == [f"seesaw+cos (6 classes, 40 images, 100 it, from scratch, "
                                    f"MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE=512) " + json.dumps(
        [{"cosine_scale": scale, "num_logits": None}]) for scale in (10.0, 20.0)]


def test_readme_tables_hold_the_numbers(report):
    text = report[1].readme.read_text()
    rows = {row[0]: row for row in table_rows(text, "### synth")}
    assert rows["ce"][1:4] == ["2", "0, 1", "100"]
    # bbox AP = segm AP + 1 in the records; columns: bbox AP, APr, APc, APf, segm AP, APr, APc, APf
    assert rows["ce"][4:12] == ["22.0 ± 1.4", "3.0 ± 1.4", "16.0 ± 1.4", "31.0 ± 1.4",
                                "21.0 ± 1.4", "3.0 ± 1.4", "16.0 ± 1.4", "31.0 ± 1.4"]
    assert rows["seesaw"][4:12] == ["26.0", "10.0", "20.0", "31.0", "25.0", "10.0", "20.0", "31.0"]
    synth = text.split("### synth", 1)[1].split("\n## ", 1)[0]
    deltas = {row[0]: row for row in table_rows(synth, "Change against CE")}
    assert deltas["ce"][1:] == ["+0.0"] * 8
    assert deltas["seesaw"][1:] == ["+4.0", "+7.0", "+4.0", "+0.0", "+4.0", "+7.0", "+4.0", "+0.0"]
    lvis = text.split("### lvis_v1", 1)[1].split("###", 1)[0]
    assert "–" in table_rows(lvis, "Change against CE")[0][1]  # no CE run on lvis_v1
    published = table_rows(lvis, "Published numbers")
    assert ["Seesaw", "Mask R-CNN R-50", "2x", "RFS", "normed", "27.6", "26.8"] == published[3][:7]
    assert any(row[0] == "EQLv2" and row[6:10] == ["23.7", "14.9", "22.8", "28.6"] for row in published)
    assert all(row[-1] for row in published)
    assert "Published numbers" not in synth
    kernel = {row[5]: row for row in table_rows(text, "### Kernel")}
    assert kernel["seesaw"][6:] == ["5.000", "0.100", "2.50", "5.00", "0.50"]
    step = {row[5]: row for row in table_rows(text, "### Training step")}
    assert step["seesaw"][6:9] == ["5.00", "9.52", "0.048"]
    envs = table_rows(text, "## Environments")
    assert envs == [["E1", "2.14.1", "0.29.1", "0.6", "–", "Test CPU", "2", "3.11.0", "abc123", "False"]]
    assert "Left out\n\nNothing." in text


def test_figures_are_written(report):
    _, report = report
    out = report.readme.parent
    expected = {"ap_groups_synth.png", "ap_groups_lvis_v1.png", "grad_balance_synth.png", "kernel_time.png",
                "step_throughput.png"}
    paired_figures = {name for name in report.figures if name.startswith("paired_synth_")}
    assert len(paired_figures) == 1  # ce has 2 seeds on synth: a paired comparison
    per_category = {name for name in report.figures if name.startswith("per_category_")}
    assert {name.rsplit("_", 1)[0] for name in per_category} == {"per_category_synth", "per_category_lvis_v1"}
    expected |= paired_figures | per_category
    assert set(report.figures) == expected
    text = report.readme.read_text()
    for name in expected:
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
        assert f"]({name})" in text


def test_grad_balance_ratio_by_frequency(results):
    records = gather([results])
    envs = tables.environments(records)
    runs = tables.runs_frame(records, envs)
    frame = tables.grad_balance_frame(records, runs, tables.aggregate(runs))
    ce = frame[frame["label"] == "ce"].sort_values("rank")
    assert list(ce["class_id"]) == [0, 1, 2, 3, 4, 5]  # instance counts fall with the id here
    assert list(ce["ratio"]) == pytest.approx([5.0, 4.0, 0.5, 0.2, 1 / 30, 0.5 / 30])


def test_regeneration_is_byte_identical(report, tmp_path):
    results, first = report
    second = generate_report([results], tmp_path / "two")
    assert first.readme.read_bytes() == second.readme.read_bytes()
    for name in first.figures:
        assert (first.readme.parent / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_malformed_records_are_named_and_left_out(results, tmp_path, capsys):
    missing = run_record("ce", 2, 90.0, 90.0, 90.0, 90.0)
    del missing["metrics"]["segm"]["APr"]
    write(results / "broken" / "run.json", missing)
    write(results / "future" / "run.json", dict(run_record("ce", 3, 90.0, 90.0, 90.0, 90.0), schema_version=2))
    (results / "cut").mkdir()
    (results / "cut" / "run.json").write_text('{"schema_version": 1, "kind": "tr')
    bad_bench = bench_file("bench_step")
    del bad_bench["records"][1]["loss_share"]
    write(results / "bench" / "bad_step.json", bad_bench)
    report = generate_report([results], tmp_path / "out")
    reasons = dict(report.left_out)
    assert reasons[str(results / "broken" / "run.json")] == "missing field(s) metrics.segm.APr"
    assert reasons[str(results / "future" / "run.json")] == "schema_version 2, this report reads 1"
    assert reasons[str(results / "cut" / "run.json")].startswith("not a readable JSON record")
    assert reasons[str(results / "bench" / "bad_step.json")] == "missing field(s) records[1].loss_share"
    stderr = capsys.readouterr().err
    assert f"left out {results / 'future' / 'run.json'}: schema_version 2" in stderr
    text = report.readme.read_text()
    left = table_rows(text, "## Left out")
    assert len(left) == 4 and [f"`{results / 'broken' / 'run.json'}`", "missing field(s) metrics.segm.APr"] in left
    rows = {row[0]: row for row in table_rows(text, "### synth")}
    assert rows["ce"][1] == "2" and "90.0" not in text.split("## Left out")[0]  # not mixed in


def test_benchmarks_alone_or_runs_alone(results, tmp_path):
    only_bench = generate_report([results / "bench"], tmp_path / "bench_out")
    assert only_bench.figures == ["kernel_time.png", "step_throughput.png"]
    assert "## Accuracy\n\nNo run records." in only_bench.readme.read_text()
    only_run = generate_report([results / "ce_1"], tmp_path / "run_out")
    assert only_run.figures[0] == "ap_groups_synth.png" and len(only_run.figures) == 2  # no grad_balance recorded
    assert only_run.figures[1].startswith("per_category_synth_")
    assert "### Kernel (loss forward + backward)\n\nNo records." in only_run.readme.read_text()


def test_cli_writes_report(results, tmp_path, capsys):
    # a folder inside another one given too: its records count once
    assert main(["report", "--results", str(results), str(results / "ce_0"), "--out", str(tmp_path / "out")]) == 0
    assert "8 figure(s), 0 record(s) left out" in capsys.readouterr().out
    assert "Built from 4 run record(s) and 2 benchmark file(s); 0 record(s) left out." in \
        (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("make", ["empty", "missing", "other_json"])
def test_cli_folder_without_records(tmp_path, make):
    folder = tmp_path / "results"
    if make != "missing":
        folder.mkdir()
    if make == "other_json":
        write(folder / "run1" / "metrics.json", {"iteration": 3})
    result = subprocess.run([sys.executable, "-m", "suite", "report", "--results", str(folder), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder) in lines[0] and lines[0].startswith("suite report: error:")
    assert not (tmp_path / "out").exists()


def test_committed_report_is_what_the_committed_results_give(tmp_path):
    """reports/README.md in the repository regenerates from results/ (figures: same records, but
    their bytes depend on the matplotlib version, so only the README is compared)."""
    root = Path(__file__).resolve().parents[1]
    generate_report([root / "results"], tmp_path)
    assert (tmp_path / "README.md").read_text() == (root / "reports" / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(p.name for p in (root / "reports").glob("*.png"))


def test_contended_kernel_measurements_stand_beside_the_quiet_ones(results, tmp_path):
    contended = bench_file("bench_kernel")
    contended["environment"] = dict(ENV, git_dirty=True)  # the quiet file, just written, dirtied the tree
    for entry in contended["records"]:
        entry["contended"] = True
        entry["median_ms"] *= 3.0 if entry["name"] == "seesaw" else 2.0
        entry["ratio_to_ce"] = entry["median_ms"] / 4.0
    write(results / "bench" / "kernel_contended.json", contended)
    text = generate_report([results], tmp_path / "out").readme.read_text()
    quiet = {row[5]: row for row in table_rows(text, "### Kernel (loss forward + backward)")}
    assert quiet["seesaw"][6] == "5.000" and len(quiet) == 5  # the quiet table keeps only the quiet ones
    side_by_side = {row[4]: row for row in table_rows(text, "### Kernel beside a competing process")}
    # quiet ms, contended ms, quiet x CE, contended x CE, contended / quiet x CE
    assert side_by_side["seesaw"][5:10] == ["5.000", "15.000", "2.50", "3.75", "1.50"]
    assert side_by_side["ce"][5:10] == ["2.500", "5.000", "1.25", "1.25", "1.00"]
    contended["records"][0]["contended"] = "yes"
    write(results / "bench" / "kernel_contended.json", contended)
    assert any("contended is 'yes'" in reason for _, reason in gather([results]).left_out)


def test_a_note_stands_under_the_first_paragraph(report, tmp_path):
    # The demo's report carries the pointer to the loss study this way (suite.workflows.demo).
    from suite.workflows.demo import STUDY_POINTER

    results, plain_report = report
    lines = generate_report([results], tmp_path / "out", note=STUDY_POINTER).readme.read_text().splitlines()
    assert lines[0] == "# seesaw-suite report" and lines[2].startswith("Built from")
    assert lines[4] == STUDY_POINTER and lines[6] == "## Accuracy"
    plain = plain_report.readme.read_text().splitlines()
    assert plain[4] == "## Accuracy"
