"""Cascade R-CNN through the plugin with real Detectron2 on the CPU: every stage trains the chosen
loss with its own state, the stage loss weights, checkpoints, config errors, and the refusal of
heads that would not train CLS_LOSS."""

import pytest
import torch
from d2_helpers import tiny_cfg, tiny_dataset, train_batches
from data_helpers import small_set
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from suite.cli import main
from suite.d2 import CosineConv2d, CosineLinear, LongTailOutputLayers, check_roi_heads
from suite.harness.trainer import LongTailTrainer

STAGES = 3
SEESAW_TERMS = ("loss_cls_classes", "loss_cls_objectness", "loss_box_reg")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("cascade") / "set")


def cascade_cfg(dataset, loss="seesaw", weights=(1.0, 0.5, 0.25), **head):
    cfg = tiny_cfg(dataset, loss, CLS_AGNOSTIC_BBOX_REG=True, **head)
    cfg.MODEL.ROI_HEADS.NAME = "LongTailCascadeROIHeads"
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS = weights
    cfg.MODEL.ROI_BOX_HEAD.SEESAW.COMPILED = False  # the eager kernels: no compile time (compiled: test_d2_plugin)
    return cfg


def _model(cfg):
    torch.manual_seed(0)
    return build_model(cfg)


def _losses(model, batch, backward=True):
    model.train()
    model.zero_grad()
    torch.manual_seed(1)  # the RoI sampler draws at random
    with EventStorage():
        losses = model(batch)
        if backward:
            sum(losses.values()).backward()
    return losses


def test_every_stage_trains_seesaw_with_its_own_counts(dataset):
    cfg = cascade_cfg(dataset, COSINE_CLASSIFIER=True)
    cfg.MODEL.ROI_MASK_HEAD.COSINE_PREDICTOR = True
    model = _model(cfg)
    predictors = model.roi_heads.box_predictor
    assert len(predictors) == STAGES and all(isinstance(p, LongTailOutputLayers) for p in predictors)
    assert all(isinstance(p.cls_score, CosineLinear) and p.cls_score.out_features == dataset.num_classes + 2
               for p in predictors)
    assert isinstance(model.roi_heads.mask_head.predictor, CosineConv2d)
    # Each stage its own loss module, and its own box transform (BBOX_REG_WEIGHTS).
    assert len({id(p.cls_loss) for p in predictors}) == STAGES
    assert [p.box2box_transform.weights for p in predictors] == [
        tuple(w) for w in cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS]

    batch = train_batches(cfg, 1)[0]
    losses = _losses(model, batch)
    expected = {f"{term}_stage{stage}" for term in SEESAW_TERMS for stage in range(STAGES)}
    assert expected <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    for predictor in predictors:
        assert predictor.cls_score.weight.grad.abs().sum() > 0
    # Stage 0 counts the sampled RoIs; later stages count the previous stage's boxes, each
    # stage accumulating its own (C + 1 counts, background last).
    counts = [p.cls_loss.cum_samples.clone() for p in predictors]
    assert int(counts[0].sum()) == 2 * cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE
    assert all(c.shape == (dataset.num_classes + 1,) and c.sum() > 0 for c in counts)
    _losses(model, batch)  # a second step adds to every stage's own counts
    assert all(torch.equal(p.cls_loss.cum_samples, 2 * c) for p, c in zip(predictors, counts))

    model.eval()
    with torch.no_grad():
        outputs = model([{"image": item["image"], "height": 48, "width": 80} for item in batch])
    instances = outputs[0]["instances"]
    assert 0 < len(instances) <= cfg.TEST.DETECTIONS_PER_IMAGE
    assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
    assert instances.pred_masks.shape[1:] == (48, 80)


def test_stage_loss_weights_scale_each_stage_and_leave_the_features_gradient_unscaled(dataset):
    """With weights (1, 0.5, 0.25) every term of stage k is w_k times the unweighted one (the
    same model and draws); Detectron2's unweighted cascade scales the features' gradient by 1/3."""
    batch = train_batches(cascade_cfg(dataset), 1)[0]
    weighted_model, plain_model = _model(cascade_cfg(dataset)), _model(cascade_cfg(dataset, weights=()))
    weighted, plain = _losses(weighted_model, batch, backward=False), _losses(plain_model, batch, backward=False)
    assert set(weighted) == set(plain)
    for name, value in plain.items():
        weight = (1.0, 0.5, 0.25)[int(name.rsplit("_stage", 1)[1])] if "_stage" in name else 1.0
        torch.testing.assert_close(weighted[name], value * weight)

    def head_feature_grad(model):
        """Gradient reaching the pooled features from stage 2's terms alone."""
        model.zero_grad()
        torch.manual_seed(1)
        with EventStorage():
            losses = model(batch)
        stage2 = sum(v for k, v in losses.items() if k.endswith("_stage2"))
        stage2.backward()
        return model.backbone.fpn_output2.weight.grad.clone()

    # Stage 2 weighted by 0.25 without rescaling vs weight 1 with Detectron2's 1/3.
    weighted_grad, plain_grad = head_feature_grad(weighted_model) / 0.25, head_feature_grad(plain_model) * 3
    assert plain_grad.abs().max() > 0
    torch.testing.assert_close(weighted_grad, plain_grad, rtol=1e-4, atol=1e-5 * float(plain_grad.abs().max()))


def test_checkpoint_round_trip_keeps_every_stage_counts(dataset, tmp_path):
    cfg = cascade_cfg(dataset)
    model = _model(cfg)
    _losses(model, train_batches(cfg, 1)[0])
    counts = [p.cls_loss.cum_samples.clone() for p in model.roi_heads.box_predictor]
    DetectionCheckpointer(model, str(tmp_path)).save("model_final")
    fresh = _model(cfg)
    DetectionCheckpointer(fresh, str(tmp_path)).load(str(tmp_path / "model_final.pth"))
    for stage, predictor in enumerate(fresh.roi_heads.box_predictor):
        assert torch.equal(predictor.cls_loss.cum_samples, counts[stage])


@pytest.mark.parametrize("head", ["CascadeROIHeads", "StandardROIHeads"])
def test_a_head_that_ignores_cls_loss_is_refused_before_building(dataset, head):
    cfg = tiny_cfg(dataset, "seesaw", CLS_AGNOSTIC_BBOX_REG=True)
    cfg.MODEL.ROI_HEADS.NAME = head
    with pytest.raises(ValueError, match=f"{head}.*MODEL.ROI_BOX_HEAD.CLS_LOSS = 'seesaw'.*LongTailCascadeROIHeads"):
        check_roi_heads(cfg)
    with pytest.raises(ValueError, match="is not a head of the plugin"):
        LongTailTrainer.build_model(cfg)
    cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS = "ce"  # plain Detectron2: nothing of the plugin's is asked for
    check_roi_heads(cfg)


@pytest.mark.parametrize("key, value, message", [
    ("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", False, "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG"),
    ("MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS", (1.0, 0.5), "STAGE_LOSS_WEIGHTS"),
    ("MODEL.ROI_BOX_CASCADE_HEAD.IOUS", (0.4, 0.6, 0.7), "MODEL.ROI_BOX_CASCADE_HEAD.IOUS[0]"),
])
def test_bad_cascade_config_is_one_error_naming_the_key(dataset, key, value, message):
    cfg = cascade_cfg(dataset)
    cfg.merge_from_list([key, value])
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(".", r"\.")):
        build_model(cfg)


def test_stage_weights_on_a_single_stage_head_are_refused(dataset):
    cfg = tiny_cfg(dataset, "seesaw")
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)
    with pytest.raises(ValueError, match="STAGE_LOSS_WEIGHTS is for Cascade R-CNN"):
        build_model(cfg)


def test_suite_train_refuses_detectron2_cascade_in_one_line(tmp_path, capsys):
    """The data and configs/small_cpu_cascade.yaml with Detectron2's own cascade head: refused
    before anything is written (it trained plain CE and crashed after training). A cascade that
    `suite train` runs to a complete record: tests/test_d2_tools.py."""
    from suite.harness.train import CONFIGS_DIR

    data = tmp_path / "synth"
    small_set(data)
    other = tmp_path / "refused"
    assert main(["train", "--loss", "seesaw", "--dataset", str(data), "--output", str(other), "--max-iter", "1",
                 "--config", str(CONFIGS_DIR / "small_cpu_cascade.yaml"), "MODEL.ROI_HEADS.NAME", "CascadeROIHeads"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CascadeROIHeads" in err[0] and "LongTailCascadeROIHeads" in err[0], err
    assert not other.exists() or not any(other.iterdir())
