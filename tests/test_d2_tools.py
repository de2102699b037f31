"""Detectron2's own tools on the suite's models, with real Detectron2 on the CPU: scripts/train_net.py
(yaml --eval-only on a finished `suite train` run; a LazyConfig Cascade trained in two segments,
its run record, checkpoint reloaded and evaluated), DefaultPredictor on a finished run, the
LazyConfig predictor's argument checks, and `suite train` refusing a LazyConfig file in one line."""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from d2_helpers import TINY
from test_harness_cli import TINY as TINY_OVERRIDES
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform

from suite.cli import main as suite_main
from suite.d2 import CosineConv2d, LongTailOutputLayers, add_longtail_config, loss_param_key, loss_params_from_cfg
from suite.d2.lazy import trained_loss
from suite.data.synth import generate
from suite.harness.lazy_run import lazy_run_recorder, lazy_run_setting
from suite.harness.run_record import read_run_record, record_setting
from suite.losses import params_with_defaults, trainable_losses
from suite.report import run_config
from suite.report.paired import arm_name
from suite.report.records import check_run

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = [*TINY_OVERRIDES, "MODEL.ROI_BOX_HEAD.SEESAW.COMPILED", "False"]  # eager kernels: no compile time
STAGES = 3


def _train_net():
    spec = importlib.util.spec_from_file_location("train_net", REPO / "scripts" / "train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_net = _train_net()


def run_train_net(*argv):
    return train_net.main(train_net.argument_parser().parse_args(list(argv)))


def detections(path: Path):
    """The boxes, scores and classes of an LVIS results file, in a fixed order."""
    return sorted((d["image_id"], d["category_id"], round(d["score"], 5), tuple(round(v, 3) for v in d["bbox"]))
                  for d in json.loads(Path(path).read_text()))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools") / "set"
    generate(TINY, root)
    return root


@pytest.fixture(scope="module")
def cascade_run(data, tmp_path_factory):
    """A finished `suite train` run: Cascade Mask R-CNN, Seesaw in every stage, 2 iterations."""
    run_dir = tmp_path_factory.mktemp("tools") / "run"
    assert suite_main(["train", "--loss", "seesaw", "--dataset", str(data), "--output", str(run_dir), "--max-iter", "2",
                       "--config", str(REPO / "configs" / "small_cpu_cascade.yaml"), "--record-grad-balance",
                       *TINY_RUN]) == 0
    return run_dir


def test_suite_train_writes_a_complete_cascade_record(cascade_run):
    record = read_run_record(cascade_run)
    check_run(record)  # what the report requires of a run record
    assert record["config"]["MODEL"]["ROI_HEADS"]["NAME"] == "LongTailCascadeROIHeads"
    assert {f"loss_cls_classes_stage{stage}" for stage in range(STAGES)} <= set(record["train"]["loss_curve"][-1])
    balance = record["grad_balance"]
    assert len(balance["stages"]) == STAGES
    for name in ("pos_grad", "neg_grad"):
        summed = [sum(values) for values in zip(*(stage[name] for stage in balance["stages"]))]
        assert balance[name] == pytest.approx(summed)
        assert all(sum(stage[name]) > 0 for stage in balance["stages"])


def test_eval_only_on_a_finished_run_gives_its_detections(data, cascade_run, tmp_path):
    """Detectron2's DefaultTrainer.test with its LVISEvaluator (lvis on NumPy 2) on the run's config
    and final weights: the same detections as the run's own evaluation."""
    results = run_train_net("--config-file", str(cascade_run / "config.yaml"), "--dataset", str(data), "--eval-only",
                            "MODEL.WEIGHTS", str(cascade_run / "model_final.pth"), "OUTPUT_DIR", str(tmp_path))
    assert {"bbox", "segm"} <= set(results) and {"AP", "APr", "APc", "APf"} <= set(results["bbox"])
    ours = detections(cascade_run / "inference" / "lvis_instances_results.json")
    assert ours and detections(tmp_path / "inference" / "lvis_instances_results.json") == ours


def test_default_predictor_on_a_finished_run(data, cascade_run):
    """DefaultPredictor needs the plugin's keys (add_longtail_config) to read the run's config; it
    then loads every stage's Seesaw counts and predicts the run's top detection of an image."""
    cfg = get_cfg()
    add_longtail_config(cfg)
    cfg.merge_from_file(str(cascade_run / "config.yaml"))
    cfg.MODEL.WEIGHTS = str(cascade_run / "model_final.pth")
    predictor = DefaultPredictor(cfg)
    checkpoint = torch.load(cascade_run / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    for stage in range(STAGES):
        counts = predictor.model.roi_heads.box_predictor[stage].cls_loss.cum_samples
        assert counts.sum() > 0 and torch.equal(counts, checkpoint[f"roi_heads.box_predictor.{stage}.cls_loss.cum_samples"])

    image = DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]
    instances = predictor(read_image(image["file_name"], format="BGR"))["instances"]
    best = int(instances.scores.argmax())
    x0, y0, x1, y1 = instances.pred_boxes.tensor[best].tolist()
    run_best = max((d for d in json.loads((cascade_run / "inference" / "lvis_instances_results.json").read_text())
                    if d["image_id"] == image["image_id"]), key=lambda d: d["score"])
    assert run_best["score"] == pytest.approx(float(instances.scores[best]), rel=1e-5)
    assert run_best["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=1e-3)
    assert run_best["category_id"] == int(instances.pred_classes[best]) + 1


LAZY_TINY = ["train.device=cpu", "train.max_iter=1", "train.init_checkpoint=", "train.checkpointer.period=1000",
             "train.log_period=1", "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
             "dataloader.test.num_workers=0", "dataloader.train.mapper.augmentations=[]",
             "dataloader.test.mapper.augmentations=[]", "optimizer.lr=0.001", "model.roi_heads.batch_size_per_image=32",
             "model.proposal_generator.post_nms_topk=[100,50]", "model.backbone.bottom_up.stages.depth=50",
             # From scratch (no ImageNet weights here): trained batch norm, as configs/small_cpu.yaml.
             "model.backbone.bottom_up.stages.norm=BN", "model.backbone.bottom_up.stem.norm=BN",
             "model.backbone.bottom_up.freeze_at=0"]


LAZY_CASCADE = ["--config-file", str(REPO / "configs" / "lazy" / "cascade_mask_rcnn_R_101_FPN_2x_seesaw.py")]
# Few detections to evaluate; Seesaw's eager kernels (torch.compile's first build is slow); every
# stage's gradient balance recorded.
LAZY_CASCADE_FAST = ["model.roi_heads.box_predictors.2.test_topk_per_image=20",
                     *(f"model.roi_heads.box_predictors.{stage}.{argument}"
                       for stage in range(STAGES) for argument in ("loss_params={compiled:false}",
                                                                   "record_grad_balance=true"))]


def checkpointed_clock(output: Path):
    """The SegmentClock state ({"segments", "wall_s"}) in the run's last checkpoint."""
    name = (output / "last_checkpoint").read_text().strip()
    return torch.load(output / name, map_location="cpu", weights_only=False)["trainer"]["hooks"]["SegmentClock"]


@pytest.fixture(scope="module")
def lazy_cascade_run(data, tmp_path_factory):
    """A LazyConfig Cascade run of scripts/train_net.py on the generated set, trained in two
    segments: 1 iteration, then --resume'd to 2 (train.max_iter raised). Returns its folder and
    (the run record the first segment wrote, the training clock its checkpoint holds)."""
    output = tmp_path_factory.mktemp("tools") / "lazy"
    common = [*LAZY_CASCADE, "--dataset", str(data), *LAZY_TINY, *LAZY_CASCADE_FAST, f"train.output_dir={output}",
              f"train.eval_period={10 ** 6}"]
    run_train_net(*common)
    first = read_run_record(output), checkpointed_clock(output)
    run_train_net("--resume", *common, "train.max_iter=2")
    return output, first


def test_lazy_cascade_writes_a_complete_record_of_seesaw_in_every_stage(lazy_cascade_run):
    output, _ = lazy_cascade_run
    record = read_run_record(output)  # refuses a missing field
    check_run(record)  # what the report requires of a run record
    assert record["loss"] == {"name": "seesaw", "params": {"p": 0.8, "q": 2.0, "eps": 0.01, "compiled": False}}
    assert record["dataset"]["num_classes"] == TINY.num_classes and record["iterations"] == 2 and record["seed"] == 0
    assert {"AP", "APr", "APc", "APf"} <= set(record["metrics"]["bbox"]) and set(record["metrics"]) == {"bbox", "segm"}
    assert [category["id"] for category in record["per_category"]] == list(range(1, TINY.num_classes + 1))
    assert any(category["bbox_AP"] is not None for category in record["per_category"])
    # Every stage trained Seesaw: its terms in the curve, its own gradient balance.
    assert {f"loss_cls_{term}_stage{stage}" for term in ("classes", "objectness") for stage in range(STAGES)} \
        <= set(record["train"]["loss_curve"][-1])
    stages = record["grad_balance"]["stages"]
    assert len(stages) == STAGES and all(sum(stage["pos_grad"]) > 0 for stage in stages)
    # The config: the LazyConfig as JSON, `_target_`s as dotted names; what the report reads of it.
    heads = record["config"]["model"]["roi_heads"]
    assert heads["_target_"] == "suite.d2.cascade.LongTailCascadeROIHeads"
    assert [node["loss_name"] for node in heads["box_predictors"]] == ["seesaw"] * STAGES
    assert record["config_hash"] == hashlib.sha256(json.dumps(record["config"], sort_keys=True).encode()).hexdigest()
    assert arm_name(record) == "seesaw+cos"
    # What was trained, as the record's `setting` says (the multi-step schedule's drops before its end).
    assert record["setting"] == {"box_predictors": [{"cosine_scale": 20.0, "num_logits": None}] * STAGES,
                                 "pretrained": False,
                                 "schedule": {"images_per_batch": 2, "base_lr": 0.001, "lr_steps": [100176, 137742]},
                                 "evaluator": "fast"}
    assert record_setting({name: value for name, value in record.items() if name != "setting"}) == record["setting"]
    assert run_config.experiment_config(record["config"])["train"].keys() == \
        record["config"]["train"].keys() - {"seed", "output_dir", "init_checkpoint"}


def test_suite_eval_refuses_a_lazy_run_in_one_line(lazy_cascade_run, capsys):
    output, _ = lazy_cascade_run
    assert suite_main(["eval", "--run", str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LazyConfig run" in err[0] and "scripts/train_net.py" in err[0], err


def test_lazy_cascade_resume_keeps_counting_segments_time_and_curve(lazy_cascade_run):
    output, (first, clock) = lazy_cascade_run
    record = read_run_record(output)
    assert (first["train"]["segments"], first["train"]["start_iter"]) == (1, 0)
    assert (record["train"]["segments"], record["train"]["start_iter"]) == (2, 1)
    # The resumed run counts on from the time its checkpoint held, which the first record's time
    # includes (the record's also counts the checkpoint's writing after it: not the resumed run's).
    assert clock["segments"] == 1 and 0 < clock["wall_s"] <= first["train"]["wall_s"]
    assert record["train"]["wall_s"] > clock["wall_s"]
    # The first segment's point (its last iteration) came back from the checkpoint.
    assert [point["iter"] for point in record["train"]["loss_curve"]] == [1, 2]
    assert record["train"]["loss_curve"][0] == first["train"]["loss_curve"][0]


def test_lazy_cascade_checkpoint_reloads_and_evaluates(data, lazy_cascade_run, tmp_path):
    output, _ = lazy_cascade_run
    state = torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    for stage in range(STAGES):
        counts = state[f"roi_heads.box_predictor.{stage}.cls_loss.cum_samples"]
        assert counts.shape == (TINY.num_classes + 1,) and counts.sum() > 0
    assert state["roi_heads.box_predictor.0.cls_score.weight"].shape[0] == TINY.num_classes + 2  # Seesaw: C + 2

    # Detectron2's LVISEvaluator (the config's) on the reloaded weights: the detections of the
    # run's own evaluation at its end (the suite's evaluator).
    results = run_train_net(*LAZY_CASCADE, "--dataset", str(data), "--eval-only", *LAZY_TINY, *LAZY_CASCADE_FAST,
                            f"train.output_dir={tmp_path / 'eval'}", f"train.init_checkpoint={output / 'model_final.pth'}",
                            f"dataloader.evaluator.output_dir={tmp_path / 'reloaded'}")
    assert {"AP", "APr"} <= set(results["bbox"])
    at_end = detections(output / "inference" / "lvis_instances_results.json")
    assert at_end and detections(tmp_path / "reloaded" / "lvis_instances_results.json") == at_end


def test_lazy_eql_reads_the_training_set_and_cosine_mask_is_an_argument(data, tmp_path):
    cfg, _ = lazy_setup("mask_rcnn_R_50_FPN_2x_eql.py", data, tmp_path, "model.roi_heads.mask_cosine_scale=20.0")
    model = instantiate(cfg.model)
    predictor = model.roi_heads.box_predictor
    assert isinstance(predictor, LongTailOutputLayers) and predictor.num_classes == TINY.num_classes
    # EQL's rare classes from the tiny set's frequencies (7, 1, 2, 7, 1, 6 of 24 images) and LVIS v1's
    # threshold 1.1e-3: none; the frequencies were read (a missing one is an error).
    assert predictor.cls_loss.name == "eql" and predictor.cls_loss.rare.shape == (TINY.num_classes,)
    assert isinstance(model.roi_heads.mask_head.predictor, CosineConv2d)
    assert model.roi_heads.mask_head.predictor.scale == 20.0


def lazy_setup(config: str, data, output, *overrides):
    args = train_net.argument_parser().parse_args(["--config-file", str(REPO / "configs" / "lazy" / config),
                                                   "--dataset", str(data), *LAZY_TINY, f"train.output_dir={output}",
                                                   *overrides])
    return train_net.setup_lazy(args)


def test_lazy_mask_rcnn_run_setting(data, tmp_path):
    """What the run record of a LazyConfig Mask R-CNN says was trained (its training is the
    cascade's above, with one predictor): the loss and its defaults, the config as JSON, the seed."""
    cfg, dataset = lazy_setup("mask_rcnn_R_50_FPN_2x_seesaw.py", data, tmp_path)
    setting = lazy_run_setting(cfg)
    assert (setting.loss_name, setting.loss_params) == ("seesaw", {"p": 0.8, "q": 2.0, "eps": 0.01, "compiled": None})
    assert (setting.iterations, setting.seed, setting.device) == (1, 0, "cpu")
    assert json.loads(setting.config_text) == setting.config  # JSON-ready: no object left
    predictor = setting.config["model"]["roi_heads"]["box_predictor"]
    assert predictor["_target_"] == "suite.d2.box_predictor.LongTailOutputLayers"
    assert predictor["num_classes"] == dataset.num_classes  # interpolations resolved
    assert predictor["input_shape"] == {"_target_": "detectron2.layers.shape_spec.ShapeSpec", "channels": 1024,
                                        "height": None, "width": None, "stride": None}
    assert arm_name({"loss": {"name": "seesaw"}, "config": setting.config}) == "seesaw+cos"
    assert lazy_run_recorder(cfg, None) is None  # no --dataset: no record (said in the log)


@pytest.mark.parametrize("loss", sorted(name for name, loss in trainable_losses().items() if loss.config_node))
def test_both_routes_record_a_loss_at_its_defaults_alike(loss):
    """A LazyConfig run's loss parameters (the constructor's defaults) are a yaml run's (the
    plugin's keys at add_longtail_config's defaults): the report tells the same settings apart
    from the same dict."""
    cfg = get_cfg()
    add_longtail_config(cfg)
    cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS = loss
    assert params_with_defaults(loss, {}) == loss_params_from_cfg(cfg)


def test_a_loss_parameter_is_set_through_its_declared_key():
    cfg = get_cfg()
    add_longtail_config(cfg)
    cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS = "seesaw"
    cfg.merge_from_list([loss_param_key("seesaw", "q"), "0.0"])
    assert loss_params_from_cfg(cfg) == {**params_with_defaults("seesaw", {}), "q": 0.0}
    with pytest.raises(ValueError, match="seesaw has no config key for 'r'"):
        loss_param_key("seesaw", "r")


def test_a_cascade_whose_stages_differ_has_no_run_record(data, tmp_path):
    cfg, dataset = lazy_setup("cascade_mask_rcnn_R_101_FPN_2x_seesaw.py", data, tmp_path,
                              "model.roi_heads.box_predictors.1.loss_name=ce")
    with pytest.raises(ValueError, match="stages train different losses.*stage 1: \\('ce'"):
        trained_loss(cfg.model.roi_heads)
    assert lazy_run_recorder(cfg, dataset) is None


def _predictor(**arguments):
    return LongTailOutputLayers(ShapeSpec(channels=8), num_classes=3, box2box_transform=Box2BoxTransform((10, 10, 5, 5)),
                                **arguments)


@pytest.mark.parametrize("switch", ["use_sigmoid_ce", "use_fed_loss"])
def test_detectron2_loss_switches_are_refused_as_arguments(switch):
    with pytest.raises(ValueError, match=f"LongTailOutputLayers\\({switch}=True\\).*loss_name="):
        _predictor(loss_name="seesaw", **{switch: True})
    # Off, they are dropped with the federated loss's other arguments (unknown to v0.6).
    predictor = _predictor(loss_name="seesaw", **{switch: False}, get_fed_loss_cls_weights=lambda: None,
                           fed_loss_num_classes=50)
    assert predictor.cls_score.out_features == 3 + 2


@pytest.mark.parametrize("arguments, message", [
    ({"loss_name": "eql"}, "loss_name = 'eql' needs class frequencies: pass class_freq"),
    ({"loss_name": "seesaw", "num_logits": 4}, "num_logits = 4, but loss 'seesaw' needs 5 logits"),
    ({"loss_name": "nope"}, "loss_name = 'nope'"),
])
def test_errors_outside_yaml_name_the_constructor_arguments(arguments, message):
    with pytest.raises(ValueError, match=message) as error:
        _predictor(**arguments)
    assert "MODEL." not in str(error.value) and "DATASETS" not in str(error.value)


def test_suite_train_refuses_a_lazy_config_in_one_line(data, tmp_path, capsys):
    config = REPO / "configs" / "lazy" / "mask_rcnn_R_50_FPN_2x_seesaw.py"
    assert suite_main(["train", "--loss", "seesaw", "--dataset", str(data), "--output", str(tmp_path / "run"),
                       "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LazyConfig" in err[0] and "scripts/train_net.py --config-file" in err[0], err


@pytest.mark.d2_source
def test_vitdet_lvis_recipe_with_seesaw_by_one_assignment():
    """Detectron2's ViTDet LVIS recipe (sigmoid CE + federated loss): swapping only `_target_` is
    refused naming use_sigmoid_ce; `longtail_box_predictor` drops those flags and builds Seesaw."""
    import os

    from suite.d2.lazy import DROPPED_ARGUMENTS, longtail_box_predictor

    recipe = Path(os.environ["SUITE_D2_SOURCE"]) / "projects" / "ViTDet" / "configs" / "LVIS" / "mask_rcnn_vitdet_b_100ep.py"
    cfg = LazyConfig.load(str(recipe))
    assert cfg.model.roi_heads.box_predictor.use_sigmoid_ce and cfg.model.roi_heads.box_predictor.use_fed_loss
    cfg.model.roi_heads.box_predictor._target_ = LongTailOutputLayers
    cfg.model.roi_heads.box_predictor.loss_name = "seesaw"
    with pytest.raises(ValueError, match=r"LongTailOutputLayers\(use_sigmoid_ce=True\)"):
        instantiate(cfg.model.roi_heads.box_predictor)

    cfg = LazyConfig.load(str(recipe))
    cfg.model.roi_heads.box_predictor = longtail_box_predictor(cfg.model.roi_heads.box_predictor, "seesaw",
                                                               cosine_scale=20.0)
    assert not set(DROPPED_ARGUMENTS) & set(cfg.model.roi_heads.box_predictor)
    predictor = instantiate(cfg.model.roi_heads.box_predictor)
    assert predictor.cls_loss.name == "seesaw" and predictor.cls_score.out_features == 1203 + 2
    assert predictor.test_topk_per_image == 300  # the recipe's other arguments kept


LAZY_LOSSES = ("ce", "focal", "eql", "eqlv2", "fed", "seesaw")


@pytest.mark.parametrize("path", [path for path in sorted((REPO / "configs" / "lazy").glob("*.py"))
                                  if path.stem.rsplit("_", 1)[-1] in LAZY_LOSSES], ids=lambda path: path.stem)
def test_lazy_configs_load_with_their_loss(path):
    """Every per-loss LazyConfig: its loss in every stage, Seesaw's cosine classifier, the official
    cascade settings, LVIS v1 data and 1203 classes (built and trained: the tests above). Twelve:
    Mask R-CNN and Cascade, each loss."""
    loss = path.stem.rsplit("_", 1)[-1]
    cfg = LazyConfig.load(str(path))
    heads = cfg.model.roi_heads
    cascade = path.stem.startswith("cascade")
    predictors = list(heads.box_predictors) if cascade else [heads.box_predictor]
    assert len(predictors) == (STAGES if cascade else 1)
    for predictor in predictors:
        assert predictor._target_ is LongTailOutputLayers and predictor.loss_name == loss
        assert predictor.get("cosine_scale") == (20.0 if loss == "seesaw" else None)
        assert (predictor.test_score_thresh, predictor.test_topk_per_image) == (1e-4, 300)
    if cascade:
        assert tuple(heads.stage_loss_weights) == (1.0, 0.5, 0.25)
        assert all(p.cls_agnostic_bbox_reg and p.smooth_l1_beta == 1.0 for p in predictors)
        assert cfg.model.backbone.bottom_up.stages.depth == 101
    assert heads.num_classes == 1203 and cfg.dataloader.train.dataset.names == "lvis_v1_train"
    assert (cfg.optimizer.lr, cfg.dataloader.train.total_batch_size, cfg.train.max_iter) == (0.02, 16, 150264)
