"""`LongTailCascadeROIHeads`: Cascade R-CNN whose every stage trains a suite loss, each stage with
its own loss state (Seesaw's counts, EQLv2's sums), as mmdetection's cascade Seesaw configs have
one loss per stage."""

from typing import Optional, Sequence

from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, CascadeROIHeads

from suite.d2.box_predictor import LongTailOutputLayers
from suite.d2.config import check_parent_loss_keys
from suite.d2.roi_heads import mask_cosine_scale_from_cfg, use_cosine_mask_predictor


@ROI_HEADS_REGISTRY.register()
class LongTailCascadeROIHeads(CascadeROIHeads):
    """Selected by cfg.MODEL.ROI_HEADS.NAME = "LongTailCascadeROIHeads": Detectron2's
    CascadeROIHeads (stages from MODEL.ROI_BOX_CASCADE_HEAD.IOUS and BBOX_REG_WEIGHTS) with a
    LongTailOutputLayers of loss MODEL.ROI_BOX_HEAD.CLS_LOSS in every stage.

    Stage loss weights (MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS, `stage_loss_weights`):
    empty/None is Detectron2's cascade (stage losses summed, the gradient reaching the shared
    features scaled by 1 / stages); weights (w_0, ..., w_{S-1}) are mmdetection's
    (`stage_loss_weights`, (1, 0.5, 0.25) in the official configs): every loss term of stage k
    times w_k and the features' gradient not rescaled. Inference is Detectron2's: the stages'
    (R, C + 1) probabilities averaged, the last stage's boxes.

    Through LazyConfig: CascadeROIHeads' arguments with `box_predictors` a list of
    LongTailOutputLayers (one per stage), `stage_loss_weights` and `mask_cosine_scale` (as
    LongTailROIHeads')."""

    @configurable
    def __init__(self, *, stage_loss_weights: Optional[Sequence[float]] = None,
                 mask_cosine_scale: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        for stage, predictor in enumerate(self.box_predictor):
            if not isinstance(predictor, LongTailOutputLayers):
                raise ValueError(f"box_predictors[{stage}] is a {type(predictor).__name__}: every stage of "
                                 "LongTailCascadeROIHeads needs a LongTailOutputLayers (its loss would not be trained)")
        if stage_loss_weights:
            stage_loss_weights = tuple(float(weight) for weight in stage_loss_weights)
            if len(stage_loss_weights) != self.num_cascade_stages or min(stage_loss_weights) < 0:
                raise ValueError(f"stage_loss_weights (MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS) must be "
                                 f"{self.num_cascade_stages} non-negative numbers, one per stage, got {stage_loss_weights}")
        self.stage_loss_weights = stage_loss_weights or None
        if mask_cosine_scale is not None:
            use_cosine_mask_predictor(self, mask_cosine_scale)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["stage_loss_weights"] = tuple(cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS)
        ret["mask_cosine_scale"] = mask_cosine_scale_from_cfg(cfg)
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        check_parent_loss_keys(cfg)
        # Detectron2 asserts these; here they are one line naming the keys.
        if not cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG:
            raise ValueError("MODEL.ROI_HEADS.NAME LongTailCascadeROIHeads needs MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG "
                             "True (Detectron2's cascade regresses class-agnostic boxes, as the official configs)")
        cascade = cfg.MODEL.ROI_BOX_CASCADE_HEAD
        if len(cascade.IOUS) != len(cascade.BBOX_REG_WEIGHTS):
            raise ValueError(f"MODEL.ROI_BOX_CASCADE_HEAD: IOUS ({len(cascade.IOUS)}) and BBOX_REG_WEIGHTS "
                             f"({len(cascade.BBOX_REG_WEIGHTS)}) must list one entry per stage")
        if cascade.IOUS[0] != cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS[0]:
            raise ValueError(f"MODEL.ROI_BOX_CASCADE_HEAD.IOUS[0] ({cascade.IOUS[0]}) must equal "
                             f"MODEL.ROI_HEADS.IOU_THRESHOLDS[0] ({cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS[0]})")
        ret = super()._init_box_head(cfg, input_shape)
        # The only difference from CascadeROIHeads' stages: each predictor is the suite's, with
        # the stage's own box transform (its BBOX_REG_WEIGHTS).
        ret["box_predictors"] = [
            LongTailOutputLayers(cfg, head.output_shape, box2box_transform=predictor.box2box_transform)
            for head, predictor in zip(ret["box_heads"], ret["box_predictors"])
        ]
        return ret

    def _forward_box(self, features, proposals, targets=None):
        """CascadeROIHeads' (losses named `<term>_stage<k>`), each stage's terms times its weight."""
        outputs = super()._forward_box(features, proposals, targets)
        if not (self.training and self.stage_loss_weights):
            return outputs
        weighted = {}
        for name, value in outputs.items():
            stage = int(name.rsplit("_stage", 1)[1])
            weighted[name] = value * self.stage_loss_weights[stage]
        return weighted

    def _run_stage(self, features, proposals, stage):
        """CascadeROIHeads' stage; with stage loss weights the features' gradient is not rescaled
        (mmdetection's cascade), since the weights already set each stage's share."""
        if not self.stage_loss_weights:
            return super()._run_stage(features, proposals, stage)
        box_features = self.box_pooler(features, [x.proposal_boxes for x in proposals])
        box_features = self.box_head[stage](box_features)
        return self.box_predictor[stage](box_features)
