"""Detectron2 plugin: Mask R-CNN whose box classifier is trained with any suite loss.

    from detectron2.config import get_cfg
    from suite.d2 import add_longtail_config
    cfg = get_cfg(); add_longtail_config(cfg)
    cfg.MODEL.ROI_HEADS.NAME = "LongTailROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS = "seesaw"
    check_roi_heads(cfg)  # a head that is not the plugin's would not train CLS_LOSS

Cascade R-CNN: cfg.MODEL.ROI_HEADS.NAME = "LongTailCascadeROIHeads" (every stage trains CLS_LOSS).

This is the only package of the suite that imports Detectron2's model classes.
"""

from suite.d2 import cascade, roi_heads  # noqa: F401  (register LongTailROIHeads, LongTailCascadeROIHeads)
from suite.d2.box_predictor import LongTailOutputLayers
from suite.d2.cascade import LongTailCascadeROIHeads
from suite.d2.class_freq import class_freq_from_metadata
from suite.d2.config import (PARENT_LOSS_KEYS, PLUGIN_ROI_HEADS, add_longtail_config, check_parent_loss_keys,
                             check_roi_heads, loss_config_nodes, loss_param_key, loss_params_from_cfg)
from suite.d2.cosine import CosineConv2d, CosineLinear
from suite.d2.roi_heads import LongTailROIHeads

__all__ = [
    "LongTailROIHeads", "LongTailCascadeROIHeads", "LongTailOutputLayers", "CosineLinear", "CosineConv2d", "add_longtail_config",
    "loss_params_from_cfg", "loss_config_nodes", "loss_param_key", "class_freq_from_metadata", "PARENT_LOSS_KEYS",
    "check_parent_loss_keys", "check_roi_heads", "PLUGIN_ROI_HEADS",
]
