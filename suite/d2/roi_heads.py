"""`LongTailROIHeads`: StandardROIHeads with the suite's box predictor (and, optionally, a cosine
mask predictor)."""

from typing import Optional

from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from torch import nn

from suite.d2.box_predictor import LongTailOutputLayers
from suite.d2.config import check_parent_loss_keys
from suite.d2.cosine import CosineConv2d


def use_cosine_mask_predictor(roi_heads: nn.Module, scale: float) -> None:
    """Replace the 1x1 conv `predictor` of the mask head (MaskRCNNConvUpsampleHead) of ROI heads
    with masks on by a CosineConv2d of the same shape with temperature `scale`, in place."""
    if not roi_heads.mask_on:
        raise ValueError("mask_cosine_scale (MODEL.ROI_MASK_HEAD.COSINE_PREDICTOR) needs a mask head")
    mask_head = roi_heads.mask_head
    predictor = getattr(mask_head, "predictor", None)
    if not isinstance(predictor, nn.Conv2d) or predictor.kernel_size != (1, 1):
        raise ValueError(f"mask_cosine_scale (MODEL.ROI_MASK_HEAD.COSINE_PREDICTOR) needs a mask head with a 1x1 "
                         f"conv `predictor` (MaskRCNNConvUpsampleHead), not {type(mask_head).__name__}")
    cosine = CosineConv2d(predictor.in_channels, predictor.out_channels, scale=scale)
    # As Detectron2 initialises the plain predictor (only the direction matters here).
    nn.init.normal_(cosine.weight, std=0.001)
    nn.init.constant_(cosine.bias, 0)
    mask_head.predictor = cosine


def mask_cosine_scale_from_cfg(cfg) -> Optional[float]:
    """MODEL.ROI_MASK_HEAD.COSINE_SCALE when COSINE_PREDICTOR is on and masks are, else None."""
    mask = cfg.MODEL.ROI_MASK_HEAD
    return mask.COSINE_SCALE if cfg.MODEL.MASK_ON and mask.COSINE_PREDICTOR else None


@ROI_HEADS_REGISTRY.register()
class LongTailROIHeads(StandardROIHeads):
    """Selected by cfg.MODEL.ROI_HEADS.NAME = "LongTailROIHeads"; the box predictor's loss comes
    from cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS (see suite.d2.add_longtail_config), and with
    cfg.MODEL.ROI_MASK_HEAD.COSINE_PREDICTOR the mask head's 1x1 predictor is a cosine one. Box
    head, mask head and everything else are StandardROIHeads'.

    Through LazyConfig: StandardROIHeads' arguments, `box_predictor` a LongTailOutputLayers, and
    `mask_cosine_scale` (None: the plain mask predictor; 20.0: the official normed mask)."""

    @configurable
    def __init__(self, *, mask_cosine_scale: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        if mask_cosine_scale is not None:
            use_cosine_mask_predictor(self, mask_cosine_scale)

    @classmethod
    def from_config(cls, cfg, input_shape):
        if cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS:
            raise ValueError("MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS is for Cascade R-CNN: set "
                             "MODEL.ROI_HEADS.NAME LongTailCascadeROIHeads, or leave it empty")
        ret = super().from_config(cfg, input_shape)
        ret["mask_cosine_scale"] = mask_cosine_scale_from_cfg(cfg)
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        check_parent_loss_keys(cfg)  # before the parent builds (and, today, asserts on) its own predictor
        ret = super()._init_box_head(cfg, input_shape)
        # The only difference from StandardROIHeads: the box predictor.
        ret["box_predictor"] = LongTailOutputLayers(cfg, ret["box_head"].output_shape)
        return ret
