"""suite bench step on tiny shapes (64 px images, 1-2 images, 20 classes, 1-2 repeats): the records of
both scopes, the default shapes per device, the generated batch, the model the Mask R-CNN step trains,
the file the report reads, and the CLI's CUDA error. The real shapes are the CLI's."""

import json
import math

import pytest
import torch

from suite.bench import step
from suite.bench.kernel import build_loss_module
from suite.bench.report import write_bench_file
from suite.bench.step import (STEP_LOSSES, MaskRCNNStep, box_predictor_records, make_batch, mask_rcnn_records,
                              run_step_bench)
from suite.cli import main
from suite.report.records import RecordError, check_bench, gather

NUM_CLASSES = 20
IMAGE_SIZE = 64
# configs/small_cpu.yaml's ROI_HEADS.BATCH_SIZE_PER_IMAGE
SMALL_CPU_ROIS_PER_IMAGE = 128


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a machine whose 2 cores are busy with other work, two OpenMP threads
    wait on each other at every op (a 64 px step measured 6.3 s with 2 threads, 0.33 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mask_records():
    return mask_rcnn_records("cpu", images=2, image_size=IMAGE_SIZE, num_classes=NUM_CLASSES, warmup=0, repeats=2)


def _check_group(records, scope, num_rois, repeats):
    """One record per loss in STEP_LOSSES order, with the step fields and ratios of docs/records.md."""
    assert [record["name"] for record in records] == list(STEP_LOSSES)
    ce_ms = records[0]["median_ms"]
    assert records[0]["ratio_to_ce"] == 1.0
    for record in records:
        assert (record["scope"], record["device"], record["dtype"]) == (scope, "cpu", "float32")
        assert (record["num_rois"], record["num_classes"], record["repeats"]) == (num_rois, NUM_CLASSES, repeats)
        assert record["median_ms"] > 0 and record["iqr_ms"] >= 0
        assert record["iters_per_s"] == pytest.approx(1e3 / record["median_ms"])
        assert record["ratio_to_ce"] == pytest.approx(record["median_ms"] / ce_ms)
        assert record["ratio_to_floor"] is None and record["ratio_to_official"] is None
        # a ratio of two medians timed side by side: positive and finite, no tighter bound holds on a busy machine
        assert 0 < record["loss_share"] < math.inf


def test_box_predictor_records():
    records = box_predictor_records("cpu", 256, NUM_CLASSES, warmup=1, repeats=5)
    _check_group(records, "box_predictor", 256, 5)


def test_mask_rcnn_records(mask_records):
    _check_group(mask_records, "mask_rcnn", 2 * SMALL_CPU_ROIS_PER_IMAGE, 2)


def test_mask_rcnn_step_trains_the_model_on_num_rois():
    step._register_zipf_metadata(NUM_CLASSES)
    run = MaskRCNNStep("seesaw", NUM_CLASSES, "cpu", IMAGE_SIZE, 2)
    predictor = run.model.roi_heads.box_predictor
    before = predictor.cls_score.weight.detach().clone()
    run()
    assert not torch.equal(before, predictor.cls_score.weight)
    assert predictor.cls_loss.cum_samples.sum() == run.num_rois == 2 * SMALL_CPU_ROIS_PER_IMAGE


def test_mask_rcnn_eql_has_the_kernels_rare_classes():
    # Zipf frequencies 0.3 / rank put the rare boundary (lambda 1.1e-3) between ranks 272 and 273;
    # the step's EQL reads them from metadata counts, the loss_share kernel's EQL gets them exactly.
    num_classes = 300
    step._register_zipf_metadata(num_classes)
    eql = MaskRCNNStep("eql", num_classes, "cpu", IMAGE_SIZE, 1).model.roi_heads.box_predictor.cls_loss
    assert torch.equal(eql.rare, build_loss_module("eql", num_classes, "cpu").rare)
    assert eql.rare.sum() == num_classes - 272


def test_make_batch_is_deterministic_with_masks_filling_the_boxes():
    batch = make_batch(NUM_CLASSES, IMAGE_SIZE, 3, seed=4)
    assert len(batch) == 3
    for inputs, again in zip(batch, make_batch(NUM_CLASSES, IMAGE_SIZE, 3, seed=4)):
        image, instances = inputs["image"], inputs["instances"]
        assert image.dtype == torch.uint8 and image.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
        assert torch.equal(image, again["image"])
        boxes = instances.gt_boxes.tensor
        assert torch.equal(boxes, again["instances"].gt_boxes.tensor)
        assert (boxes >= 0).all() and (boxes <= IMAGE_SIZE).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert instances.gt_classes.dtype == torch.int64
        assert ((instances.gt_classes >= 0) & (instances.gt_classes < NUM_CLASSES)).all()
        # a filled rectangle: its area and its bounding box are the box's
        assert torch.equal(instances.gt_masks.get_bounding_boxes().tensor, boxes)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        assert torch.equal(instances.gt_masks.tensor.sum(dim=(1, 2)).float(), areas)
    assert not torch.equal(batch[0]["image"], make_batch(NUM_CLASSES, IMAGE_SIZE, 1, seed=5)[0]["image"])


@pytest.mark.parametrize("device, quick, box_rois, mask_shape, warmup_repeats", [
    ("cpu", True, [1024], (2, 128), (1, 3)),
    ("cpu", False, [1024, 8192], (8, 128), (2, 10)),
    ("cuda", False, [8192], (2, 1024), (2, 10)),
])
def test_default_shapes(monkeypatch, device, quick, box_rois, mask_shape, warmup_repeats):
    calls = []
    monkeypatch.setattr(step, "box_predictor_records", lambda device, num_rois, num_classes, **timing: calls.append(
        ("box_predictor", num_rois, num_classes, timing["warmup"], timing["repeats"])) or [])
    monkeypatch.setattr(step, "mask_rcnn_records", lambda device, images, size, num_classes, **timing: calls.append(
        ("mask_rcnn", (images, size), num_classes, timing["warmup"], timing["repeats"])) or [])
    run_step_bench(device, quick)
    assert calls == [("box_predictor", rois, 1203, *warmup_repeats) for rois in box_rois] + \
        [("mask_rcnn", mask_shape, 1203, *warmup_repeats)]


def test_mask_rcnn_config_per_device():
    cpu, cuda = step.mask_rcnn_cfg("focal", 1203, "cpu"), step.mask_rcnn_cfg("focal", 1203, "cuda")
    assert (cpu.MODEL.RESNETS.DEPTH, cuda.MODEL.RESNETS.DEPTH) == (18, 50)
    assert (cpu.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE, cuda.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE) == (128, 512)
    for cfg in (cpu, cuda):
        assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.ROI_HEADS.NAME == "LongTailROIHeads"
        assert cfg.MODEL.RESNETS.NORM == "BN"  # random weights: a FrozenBN R50 diverges
        assert (cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS) == (1203, "focal")


def test_run_step_bench_file_is_what_the_report_reads(tmp_path):
    lines = []
    records = run_step_bench("cpu", quick=True, progress=lines.append, num_classes=NUM_CLASSES, box_images=(1,),
                             mask_images=1, image_size=IMAGE_SIZE, repeats=1)
    assert [(r["scope"], r["num_rois"]) for r in records] == \
        [("box_predictor", 512)] * len(STEP_LOSSES) + [("mask_rcnn", SMALL_CPU_ROIS_PER_IMAGE)] * len(STEP_LOSSES)
    assert len(lines) == 2 and all(f"{name} " in line for line in lines for name in STEP_LOSSES)
    write_bench_file(tmp_path / "step.json", "bench_step", "cpu", records)
    gathered = gather([tmp_path])
    assert not gathered.left_out, gathered.left_out
    ((_, written),) = gathered.benches
    assert written["kind"] == "bench_step" and written["records"] == json.loads(json.dumps(records))
    del written["records"][-1]["loss_share"]
    with pytest.raises(RecordError, match=rf"records\[{len(records) - 1}\]\.loss_share"):
        check_bench(written)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error given where CUDA is missing")
def test_cli_without_cuda_is_one_line_and_exit_2(tmp_path, capsys):
    output = tmp_path / "step.json"
    assert main(["bench", "step", "--device", "cuda", "--quick", "--output", str(output)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "no CUDA device" in captured.err
    assert not output.exists()
