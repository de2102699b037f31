"""Detectron2's own tools on the suite's models, with real Detectron2 on the CPU: scripts/train_net.py
(yaml --eval-only on a finished `suite train` run, a LazyConfig Cascade trained, checkpointed,
reloaded and evaluated), DefaultPredictor on a finished run, the LazyConfig predictor's argument
checks, and `suite train` refusing a LazyConfig file in one line."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from d2_helpers import TINY
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform

from suite.cli import main as suite_main
from suite.d2 import CosineConv2d, LongTailOutputLayers, add_longtail_config
from suite.data.synth import generate
from suite.harness.run_record import read_run_record
from suite.report.records import check_run

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
            "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
            "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100", "SOLVER.CHECKPOINT_PERIOD", "1000",
            "MODEL.ROI_BOX_HEAD.SEESAW.COMPILED", "False"]  # eager kernels: no compile time
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


def test_lazy_cascade_trains_seesaw_checkpoints_reloads_and_evaluates(data, tmp_path):
    config = str(REPO / "configs" / "lazy" / "cascade_mask_rcnn_R_101_FPN_2x_seesaw.py")
    output = tmp_path / "lazy"
    # Few detections to evaluate; Seesaw's eager kernels (torch.compile's first build is slow).
    common = ["--config-file", config, "--dataset", str(data)]
    fast = ["model.roi_heads.box_predictors.2.test_topk_per_image=20",
            *(f"model.roi_heads.box_predictors.{stage}.loss_params={{compiled:false}}" for stage in range(STAGES))]
    run_train_net(*common, *LAZY_TINY, *fast, f"train.output_dir={output}", f"train.eval_period={10 ** 6}",
                  f"dataloader.evaluator.output_dir={output / 'end'}")
    state = torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    for stage in range(STAGES):
        counts = state[f"roi_heads.box_predictor.{stage}.cls_loss.cum_samples"]
        assert counts.shape == (TINY.num_classes + 1,) and counts.sum() > 0
    assert state["roi_heads.box_predictor.0.cls_score.weight"].shape[0] == TINY.num_classes + 2  # Seesaw: C + 2

    results = run_train_net(*common, "--eval-only", *LAZY_TINY, *fast, f"train.output_dir={output / 'eval'}",
                            f"train.init_checkpoint={output / 'model_final.pth'}",
                            f"dataloader.evaluator.output_dir={output / 'reloaded'}")
    assert {"AP", "APr"} <= set(results["bbox"])
    at_end = detections(output / "end" / "lvis_instances_results.json")
    assert at_end and detections(output / "reloaded" / "lvis_instances_results.json") == at_end


def test_lazy_eql_reads_the_training_set_and_cosine_mask_is_an_argument(data, tmp_path):
    args = train_net.argument_parser().parse_args(
        ["--config-file", str(REPO / "configs" / "lazy" / "mask_rcnn_R_50_FPN_2x_eql.py"), "--dataset", str(data),
         *LAZY_TINY, f"train.output_dir={tmp_path}", "model.roi_heads.mask_cosine_scale=20.0"])
    cfg = train_net.setup_lazy(args)
    model = instantiate(cfg.model)
    predictor = model.roi_heads.box_predictor
    assert isinstance(predictor, LongTailOutputLayers) and predictor.num_classes == TINY.num_classes
    # EQL's rare classes from the tiny set's frequencies (7, 1, 2, 7, 1, 6 of 24 images) and LVIS v1's
    # threshold 1.1e-3: none; the frequencies were read (a missing one is an error).
    assert predictor.cls_loss.name == "eql" and predictor.cls_loss.rare.shape == (TINY.num_classes,)
    assert isinstance(model.roi_heads.mask_head.predictor, CosineConv2d)
    assert model.roi_heads.mask_head.predictor.scale == 20.0


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
