"""suite bench: the timing helper, kernel records on tiny shapes (the real shapes are the guard's
and the CLI's) and the file the report reads, and the CLI's errors (steps: test_bench_step.py)."""

import json

import pytest
import torch

from suite.bench.kernel import run_kernel_bench
from suite.bench.report import write_bench_file
from suite.bench.timing import summarize, time_calls
from suite.cli import main
from suite.report.records import gather


def test_summarize_gives_median_and_interquartile_range():
    timing = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (timing.median_ms, timing.iqr_ms, timing.repeats) == (3.0, 2.0, 5)
    assert summarize([7.0]).iqr_ms == 0.0
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


def test_time_calls_calls_round_robin_in_rotated_order():
    order = []
    timings = time_calls({name: (lambda name=name: order.append(name)) for name in "abc"},
                         device="cpu", warmup=1, repeats=4)
    # warm-up per callable, then interleaved rounds, each starting one name further
    assert order == list("abc") + list("abc") + list("bca") + list("cab") + list("abc")
    assert set(timings) == set("abc") and all(t.repeats == 4 and t.median_ms >= 0 for t in timings.values())
    with pytest.raises(ValueError, match="repeats"):
        time_calls({"a": lambda: None}, device="cpu", warmup=0, repeats=0)


def _read_back(tmp_path, kind, records):
    write_bench_file(tmp_path / "bench.json", kind, "cpu", records)
    gathered = gather([tmp_path])  # the report's reader checks every field
    assert not gathered.left_out, gathered.left_out
    ((_, record),) = gathered.benches
    return record


def test_kernel_records_and_ratios(tmp_path):
    records = run_kernel_bench("cpu", quick=True, images=(1,), classes=(12,), dtypes=("float32", "bfloat16-autocast"))
    names = {record["name"] for record in records}
    assert names == {"ce", "focal", "eql", "eqlv2", "fed", "seesaw", "seesaw_eager", "seesaw_compiled",
                     "torch_cross_entropy",
                     "memory_floor", "seesaw_official", "eqlv2_official"}
    assert len(records) == 2 * len(names)
    for record in records:
        assert record["num_rois"] == 512 and record["num_classes"] == 12 and record["median_ms"] > 0
        same_shape = {r["name"]: r for r in records if r["dtype"] == record["dtype"]}
        assert record["ratio_to_ce"] == pytest.approx(record["median_ms"] / same_shape["torch_cross_entropy"]["median_ms"])
        official = {"seesaw": "seesaw_official", "seesaw_eager": "seesaw_official", "seesaw_compiled": "seesaw_official",
                    "eqlv2": "eqlv2_official"}
        if record["name"] in official:
            assert record["ratio_to_official"] == pytest.approx(
                record["median_ms"] / same_shape[official[record["name"]]]["median_ms"])
        else:
            assert record["ratio_to_official"] is None
    assert all(r["ratio_to_floor"] == 1.0 for r in records if r["name"] == "memory_floor")
    assert _read_back(tmp_path, "bench_kernel", records)["records"] == json.loads(json.dumps(records))


@pytest.mark.parametrize("command", ["kernel", "step"])
def test_cli_errors_are_one_line(tmp_path, capsys, command):
    if not torch.cuda.is_available():
        assert main(["bench", command, "--device", "cuda", "--output", str(tmp_path / "b.json")]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert main(["bench", command, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0]
    assert not (tmp_path / "b.json").exists()


def test_contended_kernel_records_say_so_and_the_competitor_stops(monkeypatch):
    import contextlib

    import suite.bench.kernel as kernel

    started, real = [], kernel.competing_process

    @contextlib.contextmanager
    def watched():
        with real() as process:
            started.append(process.poll() is None)  # the competitor runs while the kernels are timed
            yield process
        started.append(process.poll() is not None)  # and is stopped afterwards

    monkeypatch.setattr(kernel, "competing_process", watched)
    records = run_kernel_bench("cpu", quick=True, rows=("seesaw", "torch_cross_entropy"), images=(1,), classes=(12,),
                               dtypes=("float32",), contended=True)
    assert [record["contended"] for record in records] == [True, True]
    assert records[0]["ratio_to_ce"] == pytest.approx(records[0]["median_ms"] / records[1]["median_ms"])
    assert started == [True, True]
