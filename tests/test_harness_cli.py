"""`suite train` / `suite eval` end to end on a tiny generated set (CPU, a few iterations), the
run record, resume, the LVIS v1 path on a generated layout, and the error cases."""

import json

import pytest
import torch

from suite.cli import main
from suite.schema import AP_METRICS
from suite.harness.run_record import read_run_record, record_setting

from data_helpers import RUN_SET, lay_out_like_lvis_v1, small_set

# A tiny model and schedule on top of configs/small_cpu.yaml: seconds per run. At test time too
# (proposals and detections per image): an untrained model's detections all pass LVIS's score
# threshold, and the mask head and mask pasting on every one of them were most of a run's time.
TINY = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100", "MODEL.RPN.POST_NMS_TOPK_TEST", "100", "TEST.DETECTIONS_PER_IMAGE",
        "20", "SOLVER.CHECKPOINT_PERIOD", "1000"]
RECORD_TERMS = {"seesaw": {"loss_cls_classes", "loss_cls_objectness"}, "ce": {"loss_cls"}, "eqlv2": {"loss_cls"},
                "fed": {"loss_cls"}}
RECORD_PARAMS = {"seesaw": {"p": 0.8, "q": 2.0, "eps": 0.01, "compiled": None}, "ce": {},
                 "eqlv2": {"gamma": 12.0, "mu": 0.8, "alpha": 4.0, "test_with_obj": True},
                 "fed": {"num_sampled_classes": 50, "freq_power": 0.5, "seed": 0}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    small_set(root, RUN_SET)
    return root


def train(dataset, output, *extra, loss="seesaw", max_iter=2):
    return main(["train", "--loss", loss, "--dataset", str(dataset), "--output", str(output),
                 "--max-iter", str(max_iter), *extra, *TINY])


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1
    line = err[-1]
    assert line.startswith("suite ") and "error:" in line and "Traceback" not in "\n".join(err)
    for fragment in fragments:
        assert fragment in line
    return line


@pytest.mark.parametrize("loss", ["seesaw", "ce", "eqlv2", "fed"])
def test_train_writes_a_complete_run_record(dataset, tmp_path, loss):
    run_dir = tmp_path / "run"
    cosine = ("MODEL.ROI_BOX_HEAD.COSINE_CLASSIFIER", "True", "MODEL.ROI_BOX_HEAD.COSINE_SCALE", "16.0")
    assert train(dataset, run_dir, *(cosine if loss == "seesaw" else ()), loss=loss) == 0
    record = read_run_record(run_dir)  # refuses a missing field
    assert record["loss"]["name"] == loss
    assert record["loss"]["params"] == RECORD_PARAMS[loss]
    assert record["dataset"] == {"name": "synthetic", "path": str(dataset.resolve()), "num_classes": 9,
                                 "num_train_images": 40}
    assert record["iterations"] == 2 and record["seed"] == 0
    assert record["config"]["MODEL"]["ROI_BOX_HEAD"]["CLS_LOSS"] == loss
    assert len(record["config_hash"]) == 64
    for task in ("bbox", "segm"):
        assert set(record["metrics"][task]) == set(AP_METRICS)
    assert [c["id"] for c in record["per_category"]] == list(range(1, 10))
    assert {c["frequency"] for c in record["per_category"]} == {"r", "c", "f"}
    assert all(set(c) >= {"name", "image_count", "instance_count", "bbox_AP", "segm_AP"} for c in record["per_category"])
    train_part = record["train"]
    assert train_part["start_iter"] == 0 and train_part["wall_s"] > 0 and train_part["iters_per_s"] > 0
    last = train_part["loss_curve"][-1]
    assert last["iter"] == 2 and RECORD_TERMS[loss] <= set(last) and "total_loss" in last
    assert record["environment"]["torch"] == torch.__version__
    assert record["environment"]["detectron2"] and "hostname" not in json.dumps(record["environment"])
    assert not list(run_dir.glob(".run.json.*"))  # no temporary file left by the atomic write
    assert record["grad_balance"] is None  # recorded only when asked
    # What was trained, written by the harness; a record without it derives the same from its config.
    assert record["setting"] == {"box_predictors": [{"cosine_scale": 16.0 if loss == "seesaw" else None,
                                                     "num_logits": 0}],
                                 "pretrained": False,
                                 "schedule": {"images_per_batch": 2, "base_lr": 0.02, "lr_steps": [240]},
                                 "evaluator": "fast"}
    assert record_setting({name: value for name, value in record.items() if name != "setting"}) == record["setting"]


def test_finished_run_is_not_overwritten(dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(dataset, run_dir, loss="ce", max_iter=1) == 0
    before = (run_dir / "run.json").read_bytes()
    assert train(dataset, run_dir, loss="ce", max_iter=1) == 2
    one_error_line(capsys, "already holds a finished run")
    assert (run_dir / "run.json").read_bytes() == before


def test_resume_leaves_a_finished_run_and_refuses_other_options(dataset, tmp_path, capsys):
    """--resume makes the run exist: it starts it in an empty folder, and a second time finds it
    finished and trains nothing (the tox matrix's train envs run it so); with other options,
    the iteration budget included, it refuses."""
    run_dir = tmp_path / "run"
    assert train(dataset, run_dir, "--resume", loss="ce", max_iter=1) == 0
    checkpoints = sorted(path.name for path in run_dir.glob("*.pth"))
    before = (run_dir / "run.json").read_bytes()
    capsys.readouterr()
    assert train(dataset, run_dir, "--resume", loss="ce", max_iter=1) == 0
    assert "nothing to train" in capsys.readouterr().out
    assert (run_dir / "run.json").read_bytes() == before
    assert sorted(path.name for path in run_dir.glob("*.pth")) == checkpoints
    for extra, max_iter, changed in ((("SOLVER.BASE_LR", "0.5"), 1, "SOLVER.BASE_LR"), ((), 2, "SOLVER.MAX_ITER")):
        assert train(dataset, run_dir, "--resume", *extra, loss="ce", max_iter=max_iter) == 2
        one_error_line(capsys, "finished run", changed)
    assert (run_dir / "run.json").read_bytes() == before


def test_interrupted_run_resumes_with_its_counts(dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(dataset, run_dir, "--record-grad-balance", max_iter=2) == 0
    first_balance = read_run_record(run_dir)["grad_balance"]
    assert first_balance["class_ids"] == list(range(9)) and sum(first_balance["neg_grad"]) > 0
    first = torch.load(run_dir / "model_final.pth", weights_only=False)["model"]
    counts_key = "roi_heads.box_predictor.cls_loss.cum_samples"
    assert first[counts_key].sum().item() == 2 * 2 * 32  # iterations x images x RoIs per image
    (run_dir / "run.json").unlink()  # as if stopped after the last checkpoint
    assert train(dataset, run_dir, max_iter=4) == 2
    one_error_line(capsys, "interrupted run", "--resume")
    assert train(dataset, run_dir, "--resume", "--record-grad-balance", max_iter=4) == 0
    record = read_run_record(run_dir)
    assert record["iterations"] == 4 and record["train"]["start_iter"] == 2
    final = torch.load(run_dir / "model_final.pth", weights_only=False)["model"]
    assert final[counts_key].sum().item() == 4 * 2 * 32  # the resumed run continued the counts
    assert (final[counts_key] >= first[counts_key]).all()
    # The gradient balance is in the checkpoint too: the resumed run adds to the first two iterations' sums.
    for name in ("pos_grad", "neg_grad"):
        assert all(after >= before for after, before in zip(record["grad_balance"][name], first_balance[name]))
    assert sum(record["grad_balance"]["neg_grad"]) > sum(first_balance["neg_grad"])


def test_train_bootstraps_its_final_evaluation_and_prunes_its_checkpoints(dataset, tmp_path, capsys):
    """--bootstrap-resamples: bootstrap.json from the final evaluation's own matching (under every
    --protocol), the record the kept detections give when bootstrapped on their own;
    --prune-checkpoints: only the checkpoint suite eval loads is left; fewer than 2 resamples, an
    unknown protocol or one the evaluator cannot compute is one line, before any work."""
    from suite.evaluation.bootstrap import write_run_bootstrap

    run_dir = tmp_path / "run"
    assert main(["train", "--loss", "ce", "--dataset", str(dataset), "--output", str(run_dir), "--max-iter", "2",
                 "--bootstrap-resamples", "6", "--prune-checkpoints", "--protocol", "fixed,challenge2021", *TINY,
                 "SOLVER.CHECKPOINT_PERIOD", "1"]) == 0
    assert sorted(path.name for path in run_dir.glob("*.pth")) == ["model_final.pth"]
    assert set(read_run_record(run_dir)["metric_protocols"]) == {"standard", "fixed", "challenge2021"}
    shared = (run_dir / "bootstrap.json").read_bytes()
    assert json.loads(shared)["resamples"] == 6
    assert set(json.loads(shared)["replicates"]) == {"bbox", "segm", "bbox-fixed", "segm-fixed", "segm-challenge2021"}
    write_run_bootstrap(run_dir, dataset / "annotations" / "lvis_v1_val.json", resamples=6,
                        metric_protocols=read_run_record(run_dir)["metric_protocols"])
    assert (run_dir / "bootstrap.json").read_bytes() == shared
    capsys.readouterr()
    assert train(dataset, tmp_path / "other", "--bootstrap-resamples", "1", loss="ce", max_iter=1) == 2
    one_error_line(capsys, "--bootstrap-resamples must be >= 2")
    assert train(dataset, tmp_path / "other", "--protocol", "lvis2020", loss="ce", max_iter=1) == 2
    one_error_line(capsys, "protocol must be one of", "lvis2020")
    assert train(dataset, tmp_path / "other", "--protocol", "fixed", "TEST.LVIS_EVALUATOR", "official", loss="ce",
                 max_iter=1) == 2
    one_error_line(capsys, "standard protocol only")
    assert not (tmp_path / "other").exists()


def test_eval_re_evaluates_the_final_checkpoint(dataset, tmp_path):
    """Where the run is now: a run folder moved after training writes its detections into itself,
    not into the folder its config was trained in."""
    trained_in, run_dir = tmp_path / "run", tmp_path / "moved" / "run"
    assert train(dataset, trained_in, loss="ce", max_iter=1) == 0
    trained = read_run_record(trained_in)
    run_dir.parent.mkdir()
    trained_in.rename(run_dir)
    assert main(["eval", "--run", str(run_dir)]) == 0
    evaluated = read_run_record(run_dir)
    assert evaluated["metrics"] == trained["metrics"]  # same checkpoint, same numbers
    assert "evaluated_at" in evaluated
    assert (run_dir / "inference" / "lvis_instances_results.json").is_file() and not trained_in.exists()
    # Another evaluator: the same numbers (the fast one equals the official API), and the record says which.
    assert main(["eval", "--run", str(run_dir), "--evaluator", "official"]) == 0
    official = read_run_record(run_dir)
    assert official["metrics"] == trained["metrics"]
    assert official["setting"] == {**trained["setting"], "evaluator": "official"}


def test_eval_with_other_protocols_records_each_protocol(dataset, tmp_path, capsys):
    """`suite eval --protocol fixed challenge2021`: the standard metrics stay where they are, each
    protocol says what produced its metrics (run.json's `protocols`); an unknown protocol is one line."""
    from suite.evaluation.bootstrap import write_run_bootstrap
    from suite.evaluation.detection_files import RUN_CLASS_TOPK_DETECTIONS
    from suite.evaluation.protocols import protocol_record

    run_dir = tmp_path / "run"
    assert train(dataset, run_dir, loss="ce", max_iter=1) == 0
    trained = read_run_record(run_dir)
    limit = trained["config"]["TEST"]["DETECTIONS_PER_IMAGE"]
    assert trained["metric_protocols"] == {"standard": protocol_record("standard", limit)}
    val_json = dataset / "annotations" / "lvis_v1_val.json"
    write_run_bootstrap(run_dir, val_json, resamples=6, seed=3)  # as a study's cell has
    first = json.loads((run_dir / "bootstrap.json").read_text())
    assert main(["eval", "--run", str(run_dir), "--protocol", "fixed", "challenge2021"]) == 0
    evaluated = read_run_record(run_dir)
    # the cell's bootstrap follows: the same draws, now also for the other protocols
    again = json.loads((run_dir / "bootstrap.json").read_text())
    assert (again["resamples"], again["seed"]) == (6, 3) and again["replicates"]["bbox"] == first["replicates"]["bbox"]
    assert set(again["replicates"]) == {"bbox", "segm", "bbox-fixed", "segm-fixed", "segm-challenge2021"}
    # from the metrics' own matching: what the kept detections give when bootstrapped on their own
    shared = (run_dir / "bootstrap.json").read_bytes()
    write_run_bootstrap(run_dir, val_json, resamples=6, seed=3,
                        metric_protocols=read_run_record(run_dir)["metric_protocols"])
    assert (run_dir / "bootstrap.json").read_bytes() == shared
    assert evaluated["metrics"] == trained["metrics"]
    assert evaluated["metric_protocols"]["standard"] == trained["metric_protocols"]["standard"]
    fixed, challenge = evaluated["metric_protocols"]["fixed"], evaluated["metric_protocols"]["challenge2021"]
    assert fixed["detections_per_image"] is None and fixed["detections_per_category"] == 10000
    assert challenge["iou_type"] == {"segm": "boundary"} and set(challenge["metrics"]) == {"segm"}
    # their detections: a pass of their own, with no limit per image (tests/test_evaluation_class_topk.py)
    assert (run_dir / RUN_CLASS_TOPK_DETECTIONS).is_file()
    assert set(fixed["metrics"]["segm"]) >= {"AP_pool", "APr_pool", "APc_pool", "APf_pool"}
    before = (run_dir / "run.json").read_bytes()
    capsys.readouterr()
    assert main(["eval", "--run", str(run_dir), "--protocol", "lvis2020"]) == 2
    one_error_line(capsys, "protocol must be one of", "lvis2020")
    assert main(["eval", "--run", str(run_dir), "--evaluator", "official", "--protocol", "fixed"]) == 2
    one_error_line(capsys, "standard protocol only")
    assert (run_dir / "run.json").read_bytes() == before


def test_lvis_v1_path_on_a_generated_layout(dataset, tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    lay_out_like_lvis_v1(small_set(tmp_path / "set", RUN_SET), root)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    run_dir = tmp_path / "run"
    assert main(["train", "--loss", "ce", "--dataset", "lvis_v1", "--config", "configs/small_cpu.yaml",
                 "--output", str(run_dir), "--max-iter", "1", *TINY]) == 0
    record = read_run_record(run_dir)
    assert record["dataset"]["name"] == "lvis_v1" and record["dataset"]["num_train_images"] == 40
    assert record["config"]["DATASETS"]["TRAIN"] == ["lvis_v1_train"]


def test_missing_lvis_names_the_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert main(["train", "--loss", "ce", "--dataset", "lvis_v1", "--output", str(tmp_path / "run")]) == 2
    one_error_line(capsys, str(tmp_path / "lvis"))
    assert not (tmp_path / "run").exists()


def test_corrupt_json_is_one_line(dataset, tmp_path, capsys):
    broken = tmp_path / "broken"
    small_set(broken, RUN_SET)
    (broken / "annotations" / "lvis_v1_train.json").write_text('{"images": [')
    assert main(["train", "--loss", "ce", "--dataset", str(broken), "--output", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "lvis_v1_train.json")


def test_unknown_loss_and_bad_override(dataset, tmp_path, capsys):
    assert main(["train", "--loss", "softmax", "--dataset", str(dataset), "--output", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "unknown loss 'softmax'", "seesaw")
    assert train(dataset, tmp_path / "run", "SOLVER.NO_SUCH_KEY", "1") == 2
    one_error_line(capsys, "SOLVER.NO_SUCH_KEY")
    assert not (tmp_path / "run").exists()
