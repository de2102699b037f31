"""suite bench: the timing helper, kernel and step records on tiny shapes (the real shapes are the
guard's and the CLI's), the files the report reads, and the CLI's errors."""

import json

import pytest
import torch

from suite.bench.kernel import run_kernel_bench
from suite.bench.report import write_bench_file
from suite.bench.step import STEP_LOSSES, run_step_bench
from suite.bench.timing import summarize, time_calls
from suite.cli import main
from suite.report.records import gather


def test_summarize_gives_median_and_interquartile_range():
    timing = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (timing.median_ms, timing.iqr_ms, timing.repeats) == (3.0, 2.0, 5)
    assert summarize([7.0]).iqr_ms == 0.0
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


def test_time_calls_calls_round_robin():
    order = []
    timings = time_calls({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                         device="cpu", warmup=1, repeats=3)
    assert order == ["a", "b"] + ["a", "b"] * 3  # warm-up per callable, then interleaved rounds
    assert set(timings) == {"a", "b"} and all(t.repeats == 3 and t.median_ms >= 0 for t in timings.values())
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
    assert names == {"ce", "focal", "eql", "seesaw", "seesaw_compiled", "torch_cross_entropy", "memory_floor",
                     "seesaw_official"}
    assert len(records) == 2 * len(names)
    for record in records:
        assert record["num_rois"] == 512 and record["num_classes"] == 12 and record["median_ms"] > 0
        same_shape = {r["name"]: r for r in records if r["dtype"] == record["dtype"]}
        assert record["ratio_to_ce"] == pytest.approx(record["median_ms"] / same_shape["torch_cross_entropy"]["median_ms"])
        assert record["ratio_to_official"] == pytest.approx(record["median_ms"] / same_shape["seesaw_official"]["median_ms"])
    assert all(r["ratio_to_floor"] == 1.0 for r in records if r["name"] == "memory_floor")
    assert _read_back(tmp_path, "bench_kernel", records)["records"] == json.loads(json.dumps(records))


def test_step_records_for_every_loss_and_scope(tmp_path):
    records = run_step_bench("cpu", quick=True, num_classes=10, box_images=(1,), mask_images=2, image_size=64, repeats=2)
    assert [(r["scope"], r["name"]) for r in records] == \
        [("box_predictor", name) for name in STEP_LOSSES] + [("mask_rcnn", name) for name in STEP_LOSSES]
    for record in records:
        assert record["median_ms"] > 0 and record["iters_per_s"] == pytest.approx(1e3 / record["median_ms"])
        assert 0 < record["loss_share"] < 1.5
        ce = next(r for r in records if r["scope"] == record["scope"] and r["name"] == "ce")
        assert record["ratio_to_ce"] == pytest.approx(record["median_ms"] / ce["median_ms"])
    assert {r["num_rois"] for r in records if r["scope"] == "box_predictor"} == {512}
    # mask_rcnn: RoIs sampled per image (configs/small_cpu.yaml: 128) x 2 images
    assert {r["num_rois"] for r in records if r["scope"] == "mask_rcnn"} == {256}
    _read_back(tmp_path, "bench_step", records)


def test_a_mask_rcnn_step_trains_the_model():
    from suite.bench import step

    step._register_zipf_metadata(10)
    run = step.MaskRCNNStep("seesaw", 10, "cpu", 64, 2)
    model = run.model
    before = model.roi_heads.box_predictor.cls_score.weight.detach().clone()
    run()
    assert not torch.equal(before, model.roi_heads.box_predictor.cls_score.weight)
    assert model.roi_heads.box_predictor.cls_loss.cum_samples.sum() == 2 * 128


@pytest.mark.parametrize("command", ["kernel", "step"])
def test_cli_errors_are_one_line(tmp_path, capsys, command):
    if not torch.cuda.is_available():
        assert main(["bench", command, "--device", "cuda", "--output", str(tmp_path / "b.json")]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert main(["bench", command, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0]
    assert not (tmp_path / "b.json").exists()
