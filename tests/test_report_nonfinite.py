"""suite report refuses non-finite numbers as malformed, and exits 2 when every record is left out."""

import json

import pytest

from suite.cli import main
from suite.report import generate_report

from test_report_generate import bench_file, run_record, table_rows, write


def write_with_non_finite(path, record):
    """Python's json writes (and reads) NaN and Infinity, which are not JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, allow_nan=True))


@pytest.mark.parametrize("where, spoil", [
    ("metrics.bbox.AP", lambda record: record["metrics"]["bbox"].update(AP=float("inf"))),
    ("metrics.segm.APr", lambda record: record["metrics"]["segm"].update(APr=float("nan"))),
    ("per_category[0].bbox_AP", lambda record: record["per_category"][0].update(bbox_AP=float("-inf"))),
    ("train.loss_curve[0].total_loss", lambda record: record["train"]["loss_curve"][0].update(total_loss=float("nan"))),
    ("train.wall_s", lambda record: record["train"].update(wall_s=float("inf"))),
])
def test_non_finite_run_record_is_left_out(tmp_path, where, spoil):
    write(tmp_path / "results" / "good" / "run.json", run_record("ce", 0, 20.0, 2.0, 15.0, 30.0))
    bad = run_record("ce", 1, 20.0, 2.0, 15.0, 30.0)
    spoil(bad)
    write_with_non_finite(tmp_path / "results" / "bad" / "run.json", bad)
    report = generate_report([tmp_path / "results"], tmp_path / "out")
    reasons = dict(report.left_out)
    reason = reasons[str(tmp_path / "results" / "bad" / "run.json")]
    assert reason.startswith(f"{where} is ") and "not a finite number or null" in reason
    rows = {row[0]: row for row in table_rows(report.readme.read_text(), "### synth")}
    assert rows["ce"][1] == "1"  # the good record alone: the bad one is not mixed in


def test_non_finite_benchmark_is_left_out(tmp_path):
    bench = bench_file("bench_kernel")
    bench["records"][2]["median_ms"] = float("inf")
    write_with_non_finite(tmp_path / "results" / "kernel.json", bench)
    write(tmp_path / "results" / "run" / "run.json", run_record("ce", 0, 20.0, 2.0, 15.0, 30.0))
    report = generate_report([tmp_path / "results"], tmp_path / "out")
    assert dict(report.left_out)[str(tmp_path / "results" / "kernel.json")] == \
        "records[2].median_ms is inf, not a finite number or null"


def test_every_record_left_out_is_exit_2(tmp_path, capsys):
    bad = run_record("ce", 0, 20.0, 2.0, 15.0, 30.0)
    bad["metrics"]["bbox"]["AP"] = float("inf")
    write_with_non_finite(tmp_path / "results" / "bad" / "run.json", bad)
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("suite report: error: every record was left out") and "metrics.bbox.AP is inf" in line
    assert not (tmp_path / "out").exists()
