"""The plugin's config keys: `add_longtail_config(cfg)` and the mapping to loss parameters."""

from typing import Any, Dict, List

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from suite.losses import LAMBDA_LVIS_V1

# For each loss with parameters: its config node under MODEL.ROI_BOX_HEAD and KEY -> parameter.
LOSS_CONFIG_KEYS = {
    "focal": ("FOCAL", {"ALPHA": "alpha", "GAMMA": "gamma"}),
    "eql": ("EQL", {"LAMBDA": "lambda_"}),
    "eqlv2": ("EQLV2", {"GAMMA": "gamma", "MU": "mu", "ALPHA": "alpha", "TEST_WITH_OBJ": "test_with_obj"}),
    "fed": ("FED", {"NUM_CLASSES": "num_sampled_classes", "FREQ_WEIGHT_POWER": "freq_power", "SEED": "seed"}),
    "seesaw": ("SEESAW", {"P": "p", "Q": "q", "EPS": "eps", "COMPILED": "compiled"}),
    "seesaw_official": ("SEESAW", {"P": "p", "Q": "q", "EPS": "eps"}),  # mmdet's code, same keys
}


def add_longtail_config(cfg: CN) -> None:
    """Add the plugin's keys (with the papers' defaults) to a Detectron2 config, in place.
    Turn the plugin on with cfg.MODEL.ROI_HEADS.NAME = "LongTailROIHeads" (Mask R-CNN) or
    "LongTailCascadeROIHeads" (Cascade R-CNN)."""
    head = cfg.MODEL.ROI_BOX_HEAD
    # Classification loss of the box predictor: a name of suite.losses.LOSSES.
    head.CLS_LOSS = "ce"
    # Classifier width; 0 = what the loss needs (its num_logits). A non-zero value pins the
    # width (e.g. to fit a checkpoint) and must equal the loss's num_logits.
    head.CLS_NUM_LOGITS = 0
    # Normalized (cosine) linear classifier: logits = scale * cos(feature, class weight), as in
    # every official Seesaw config (temperature 20).
    head.COSINE_CLASSIFIER = False
    head.COSINE_SCALE = 20.0
    # Normalized (cosine) 1x1 mask predictor, as the official "normed mask" Seesaw configs
    # (NormedConv2d, temperature 20); needs MaskRCNNConvUpsampleHead.
    cfg.MODEL.ROI_MASK_HEAD.COSINE_PREDICTOR = False
    cfg.MODEL.ROI_MASK_HEAD.COSINE_SCALE = 20.0
    # Validate labels in the loss (one host sync per step on CUDA; Detectron2's matcher already
    # produces labels in [0, NUM_CLASSES]).
    head.CHECK_LABELS = False
    # Accumulate per-class positive/negative classifier gradient (run record's grad_balance).
    head.RECORD_GRAD_BALANCE = False
    # Sigmoid focal loss (Lin et al. 2017).
    head.FOCAL = CN({"ALPHA": 0.25, "GAMMA": 2.0})
    # Equalization Loss (Tan et al. 2020): rare-class frequency threshold; 1.1e-3 for LVIS v1,
    # 1.76e-3 for LVIS v0.5. Class frequencies come from the training set's metadata.
    head.EQL = CN({"LAMBDA": LAMBDA_LVIS_V1})
    # Equalization Loss v2 (Tan et al. 2021), the official defaults: slope and centre of the
    # gradient-ratio mapping, positive up-weighting, and scores times (1 - objectness) at test.
    head.EQLV2 = CN({"GAMMA": 12.0, "MU": 0.8, "ALPHA": 4.0, "TEST_WITH_OBJ": True})
    # Federated loss (Zhou et al. 2021), Detectron2's defaults (FED_LOSS_NUM_CLASSES,
    # FED_LOSS_FREQ_WEIGHT_POWER): classes per step and the exponent of the sampling weights
    # (training-set frequencies from the metadata); SEED seeds the draws with the rank and step.
    head.FED = CN({"NUM_CLASSES": 50, "FREQ_WEIGHT_POWER": 0.5, "SEED": 0})
    # Seesaw Loss (Wang et al. 2021): mitigation exponent, compensation exponent, sigma clamp,
    # and whether to run its kernels through torch.compile (None: on the CPU only).
    head.SEESAW = CN({"P": 0.8, "Q": 2.0, "EPS": 1e-2, "COMPILED": None})
    # LVIS evaluation (the suite's evaluator, also from TEST.EVAL_PERIOD): "fast" (vectorized,
    # equal to the official lvis API; docs/evaluation.md) or "official" (the lvis API's LVISEval).
    cfg.TEST.LVIS_EVALUATOR = "fast"
    # LongTailCascadeROIHeads: one weight per stage, multiplying that stage's loss terms, as
    # mmdetection's stage_loss_weights ((1, 0.5, 0.25) in the official Cascade Seesaw configs);
    # empty keeps Detectron2's cascade (terms summed, the features' gradient scaled by 1 / stages).
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS = ()
    add_parent_loss_keys(cfg)


# Detectron2's own classification-loss switches of FastRCNNOutputLayers (current versions; v0.6
# has neither). The suite's predictor replaces that classification loss, so they would be
# silently ignored: a config that turns one on is refused, naming the suite's equivalent.
PARENT_LOSS_KEYS = {
    "USE_SIGMOID_CE": "MODEL.ROI_BOX_HEAD.CLS_LOSS focal (per-class sigmoid; FOCAL.GAMMA 0 and "
                      "FOCAL.ALPHA -1 make it plain sigmoid cross-entropy)",
    "USE_FED_LOSS": "MODEL.ROI_BOX_HEAD.CLS_LOSS fed (the suite's federated loss)",
}


# How the predictor's errors name its arguments when it is built from a yaml config.
YAML_ARGUMENT_NAMES = {
    "loss_name": "MODEL.ROI_BOX_HEAD.CLS_LOSS",
    "class_freq": "DATASETS.TRAIN must name registered LVIS-format sets",
    "num_logits": "MODEL.ROI_BOX_HEAD.CLS_NUM_LOGITS",
}


def add_parent_loss_keys(cfg: CN) -> None:
    """Give `cfg` the keys of PARENT_LOSS_KEYS (False) where the installed Detectron2 lacks them,
    so that setting one reaches `check_parent_loss_keys` on every version."""
    head = cfg.MODEL.ROI_BOX_HEAD
    for key in PARENT_LOSS_KEYS:
        if key not in head:
            head[key] = False


def check_parent_loss_keys(cfg: CN) -> None:
    """ValueError naming the first key of PARENT_LOSS_KEYS that is on, and what to use instead."""
    for key, equivalent in PARENT_LOSS_KEYS.items():
        if cfg.MODEL.ROI_BOX_HEAD.get(key, False):
            raise ValueError(f"MODEL.ROI_BOX_HEAD.{key} is Detectron2's own loss switch, which the suite's "
                             f"box predictor does not use; set {equivalent} instead")


def loss_params_from_cfg(cfg: CN) -> Dict[str, Any]:
    """The keyword parameters of the configured loss (without data-derived ones such as EQL's
    class_freq)."""
    name = cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS
    if name not in LOSS_CONFIG_KEYS:
        return {}
    node_name, keys = LOSS_CONFIG_KEYS[name]
    node = cfg.MODEL.ROI_BOX_HEAD[node_name]
    return {parameter: node[key] for key, parameter in keys.items()}


# The ROI heads of the plugin; any other reads none of its keys.
PLUGIN_ROI_HEADS = ("LongTailROIHeads", "LongTailCascadeROIHeads")


# The plugin's keys that ask for something only its heads train (the others tune those things).
PLUGIN_SWITCH_KEYS = ("MODEL.ROI_BOX_HEAD.CLS_LOSS", "MODEL.ROI_BOX_HEAD.CLS_NUM_LOGITS",
                      "MODEL.ROI_BOX_HEAD.COSINE_CLASSIFIER", "MODEL.ROI_BOX_HEAD.RECORD_GRAD_BALANCE",
                      "MODEL.ROI_MASK_HEAD.COSINE_PREDICTOR", "MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS")


def _value(cfg: CN, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return tuple(node) if isinstance(node, (list, tuple)) else node


def plugin_keys_in_use(cfg: CN) -> List[str]:
    """The PLUGIN_SWITCH_KEYS set away from add_longtail_config's defaults ("KEY = value")."""
    defaults = get_cfg()
    add_longtail_config(defaults)
    return [f"{key} = {_value(cfg, key)!r}" for key in PLUGIN_SWITCH_KEYS if _value(cfg, key) != _value(defaults, key)]


def check_roi_heads(cfg: CN) -> None:
    """ValueError, before anything is built, when MODEL.ROI_HEADS.NAME is not a head of the
    plugin while a plugin key asks for something only the plugin trains (a loss other than
    Detectron2's CE would otherwise be silently not trained)."""
    name = cfg.MODEL.ROI_HEADS.NAME
    in_use = plugin_keys_in_use(cfg)
    if name not in PLUGIN_ROI_HEADS and in_use:
        raise ValueError(f"MODEL.ROI_HEADS.NAME {name!r} is not a head of the plugin and ignores {in_use[0]}; "
                         f"use {' or '.join(PLUGIN_ROI_HEADS)} (Cascade R-CNN: LongTailCascadeROIHeads)")
