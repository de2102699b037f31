"""The box predictor whose classification loss is any suite loss."""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference
from detectron2.utils.events import get_event_storage
from torch import nn

from suite.d2.class_freq import class_freq_from_metadata
from suite.d2.config import YAML_ARGUMENT_NAMES, check_parent_loss_keys, loss_params_from_cfg
from suite.d2.cosine import CosineLinear
from suite.d2.grad_balance import GradientBalance
from suite.losses import build_loss, trainable_losses


# FastRCNNOutputLayers' own classification-loss switches (current Detectron2; v0.6 has neither) and
# what to use instead, in constructor terms (the yaml keys are suite.d2.config.PARENT_LOSS_KEYS).
PARENT_LOSS_ARGUMENTS = {
    "use_sigmoid_ce": "loss_name='focal' (per-class sigmoid; loss_params={'gamma': 0, 'alpha': -1} make it "
                      "plain sigmoid cross-entropy)",
    "use_fed_loss": "loss_name='fed' (the suite's federated loss; class_freq gives its sampling frequencies)",
}
# The federated loss's other arguments of current Detectron2, read only when use_fed_loss is on.
FED_LOSS_ARGUMENTS = ("get_fed_loss_cls_weights", "fed_loss_num_classes")
# How errors name the arguments by default (LazyConfig, Python); yaml: YAML_ARGUMENT_NAMES.
CONSTRUCTOR_ARGUMENT_NAMES = {
    "loss_name": "loss_name",
    "class_freq": "pass class_freq (a callable returning each class's fraction of training images, e.g. "
                  "suite.d2.class_freq_from_metadata) or loss_params['class_freq']",
    "num_logits": "num_logits",
}


class LongTailOutputLayers(FastRCNNOutputLayers):
    """Detectron2's FastRCNNOutputLayers with the classification loss, the classifier width and
    the inference scores taken from a suite loss (`self.cls_loss`).

    Box regression and its loss stay Detectron2's. `cls_score` outputs `cls_loss.num_logits`
    logits per RoI (C + 1 for ce/eqlv2, C for focal/eql/fed, C + 2 for seesaw); `predict_probs` returns
    `cls_loss.scores`: (R, C + 1) probabilities, background last, for every loss.

    `class_score_floor`: None, or a (C,) tensor that `inference` applies beside the score threshold:
    a class's score below its floor yields no detection (`suite.evaluation.class_topk` sets it
    while it collects the K best detections of each class). Not a parameter or a buffer.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        loss_name: str = "ce",
        loss_params: Optional[Dict[str, Any]] = None,
        class_freq: Optional[Callable[[], Sequence[float]]] = None,
        num_logits: int = 0,
        cosine_scale: Optional[float] = None,
        check_labels: bool = False,
        record_grad_balance: bool = False,
        argument_names: Optional[Mapping[str, str]] = None,
        **kwargs,
    ):
        """
        Args:
            input_shape, **kwargs: as FastRCNNOutputLayers (num_classes: foreground classes).
                Its own classification-loss switches (`use_sigmoid_ce`, `use_fed_loss` of current
                Detectron2) are refused when true: this predictor replaces that loss. When false
                they are dropped with the federated loss's other arguments, which Detectron2 v0.6
                does not know.
            loss_name: a name of suite.losses.LOSSES.
            loss_params: the loss's keyword parameters.
            class_freq: called once, for eql and fed when loss_params has no class_freq: returns the
                fraction of training images containing each class (a lazy callable, so that
                the predictor can be built without a registered data set).
            num_logits: 0, or the classifier width the config pins (must equal the loss's).
            cosine_scale: None for a plain linear classifier, else the temperature of a cosine one.
            check_labels: validate labels in the loss (a host sync per step on CUDA).
            record_grad_balance: accumulate per-class positive/negative classifier gradient.
            argument_names: how errors name the arguments: the constructor's own names by default
                (LazyConfig, Python); `from_config` passes the yaml keys (YAML_ARGUMENT_NAMES).
        """
        names = dict(argument_names or CONSTRUCTOR_ARGUMENT_NAMES)
        for switch, equivalent in PARENT_LOSS_ARGUMENTS.items():
            if kwargs.pop(switch, False):
                raise ValueError(f"LongTailOutputLayers({switch}=True): {switch} is Detectron2's own loss switch, "
                                 f"which this predictor replaces; use {equivalent} instead (and drop {switch})")
        for argument in FED_LOSS_ARGUMENTS:
            kwargs.pop(argument, None)  # only read with use_fed_loss, which is off here
        super().__init__(input_shape, **kwargs)
        loss_params = dict(loss_params or {})
        loss_class = trainable_losses().get(loss_name)
        if loss_class is not None and loss_class.needs_class_freq and "class_freq" not in loss_params:
            if class_freq is None:
                raise ValueError(f"{names['loss_name']} = {loss_name!r} needs class frequencies: "
                                 f"{names['class_freq']}")
            loss_params["class_freq"] = class_freq()
        try:
            self.cls_loss = build_loss(loss_name, self.num_classes, **loss_params)
        except ValueError as error:
            raise ValueError(f"{names['loss_name']} = {loss_name!r}: {error}") from None
        self.cls_loss.check_labels = check_labels
        if num_logits and num_logits != self.cls_loss.num_logits:
            raise ValueError(
                f"{names['num_logits']} = {num_logits}, but loss {loss_name!r} needs "
                f"{self.cls_loss.num_logits} logits for {self.num_classes} classes (0 sizes it from the loss)"
            )
        input_size = self.cls_score.in_features
        if cosine_scale is None:
            self.cls_score = nn.Linear(input_size, self.cls_loss.num_logits)
        else:
            self.cls_score = CosineLinear(input_size, self.cls_loss.num_logits, scale=cosine_scale)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.constant_(self.cls_score.bias, self.cls_loss.initial_logit_bias)
        self.grad_balance = GradientBalance(self.num_classes) if record_grad_balance else None
        self.class_score_floor: Optional[torch.Tensor] = None

    @classmethod
    def from_config(cls, cfg, input_shape):
        check_parent_loss_keys(cfg)
        head = cfg.MODEL.ROI_BOX_HEAD
        ret = super().from_config(cfg, input_shape)
        ret.update({
            "loss_name"          : head.CLS_LOSS,
            "loss_params"        : loss_params_from_cfg(cfg),
            "class_freq"         : lambda: class_freq_from_metadata(cfg.DATASETS.TRAIN, cfg.MODEL.ROI_HEADS.NUM_CLASSES),
            "num_logits"         : head.CLS_NUM_LOGITS,
            "cosine_scale"       : head.COSINE_SCALE if head.COSINE_CLASSIFIER else None,
            "check_labels"       : head.CHECK_LABELS,
            "record_grad_balance": head.RECORD_GRAD_BALANCE,
            "argument_names"     : YAML_ARGUMENT_NAMES,
        })  # fmt: skip
        return ret

    def losses(self, predictions, proposals):
        """The loss's classification terms (each weighted by loss_weight["loss_cls"]) and
        Detectron2's box regression loss; the loss's accuracies go to the event storage as
        `fast_rcnn/<name>`."""
        scores, proposal_deltas = predictions
        gt_classes = cat([p.gt_classes for p in proposals], dim=0) if len(proposals) else torch.empty(
            0, dtype=torch.int64, device=scores.device)
        if len(proposals):
            proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
            # All-background images have no gt_boxes; their proposals are never regressed.
            gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)
        else:
            proposal_boxes = gt_boxes = torch.empty((0, 4), device=proposal_deltas.device)

        storage = get_event_storage()
        if gt_classes.numel():
            for name, value in self.cls_loss.accuracies(scores.detach(), gt_classes).items():
                if torch.isfinite(value):  # fg accuracy of a batch without foreground is NaN
                    storage.put_scalar(f"fast_rcnn/{name}", value.item())
        if self.grad_balance is not None and self.training and scores.requires_grad:
            self.grad_balance.observe(scores, gt_classes)
        cls_weight = self.loss_weight.get("loss_cls", 1.0)
        losses = {name: value * cls_weight for name, value in self.cls_loss(scores, gt_classes).items()}
        losses["loss_box_reg"] = self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes) * \
            self.loss_weight.get("loss_box_reg", 1.0)
        return losses

    def inference(self, predictions, proposals):
        """FastRCNNOutputLayers.inference; with `class_score_floor` set, a class's score below its
        floor is 0 before the score threshold and NMS (so it yields no detection). Only detections
        below a floor go: NMS lets a detection suppress lower-scoring ones only."""
        if self.class_score_floor is None:
            return super().inference(predictions, proposals)
        floor = torch.cat([self.class_score_floor, self.class_score_floor.new_full((1,), -1.0)])
        scores = [probs * (probs >= floor.to(probs.device)) for probs in self.predict_probs(predictions, proposals)]
        return fast_rcnn_inference(self.predict_boxes(predictions, proposals), scores,
                                   [proposal.image_size for proposal in proposals], self.test_score_thresh,
                                   self.test_nms_thresh, self.test_topk_per_image)

    def predict_probs(self, predictions, proposals) -> List[torch.Tensor]:
        """Per image, (R_i, C + 1) probabilities from the loss's `scores`, background last."""
        scores, _ = predictions
        probs = self.cls_loss.scores(scores)
        return probs.split([len(p) for p in proposals], dim=0)
