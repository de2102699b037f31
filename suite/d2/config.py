"""The plugin's config keys: `add_longtail_config(cfg)` and the mapping to loss parameters."""

from typing import Any, Dict, List

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from suite.losses import params_with_defaults, trainable_losses

BOX_HEAD = "MODEL.ROI_BOX_HEAD"


def loss_config_nodes() -> Dict[str, Dict[str, Any]]:
    """Each loss's parameter node under MODEL.ROI_BOX_HEAD, as the loss declares it (its class's
    `config_node` and `config_keys`), at its constructor's defaults: {node: {KEY: default}}. Losses
    that share a node (Seesaw and its official code) share its keys."""
    nodes: Dict[str, Dict[str, Any]] = {}
    for loss in trainable_losses().values():
        if loss.config_node is not None:
            defaults = params_with_defaults(loss.name, {})
            node = nodes.setdefault(loss.config_node, {})
            for key, parameter in loss.config_keys.items():
                node.setdefault(key, defaults[parameter])
    return nodes


def loss_param_key(loss_name: str, parameter: str) -> str:
    """The config key of a loss parameter, e.g. ("seesaw", "q") -> "MODEL.ROI_BOX_HEAD.SEESAW.Q"."""
    loss = trainable_losses()[loss_name]
    keys = {param: key for key, param in loss.config_keys.items()}
    if parameter not in keys:
        raise ValueError(f"{loss_name} has no config key for {parameter!r}; its keys: {dict(loss.config_keys)}")
    return f"{BOX_HEAD}.{loss.config_node}.{keys[parameter]}"


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
    # Each loss's parameters, in its node (FOCAL, EQL, EQLV2, FED, SEESAW: loss_config_nodes) at
    # the defaults of its constructor, whose docstring says what each means (suite.losses).
    for node, keys in loss_config_nodes().items():
        head[node] = CN(keys)
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
    """The keyword parameters of the configured loss, from its node (without data-derived ones
    such as EQL's class_freq)."""
    loss = trainable_losses().get(cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS)
    if loss is None or loss.config_node is None:
        return {}
    node = cfg.MODEL.ROI_BOX_HEAD[loss.config_node]
    return {parameter: node[key] for key, parameter in loss.config_keys.items()}


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
