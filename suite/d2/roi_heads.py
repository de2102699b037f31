"""`LongTailROIHeads`: StandardROIHeads with the suite's box predictor."""

from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from torch import nn

from suite.d2.box_predictor import LongTailOutputLayers
from suite.d2.config import check_parent_loss_keys
from suite.d2.cosine import CosineConv2d


@ROI_HEADS_REGISTRY.register()
class LongTailROIHeads(StandardROIHeads):
    """Selected by cfg.MODEL.ROI_HEADS.NAME = "LongTailROIHeads"; the box predictor's loss comes
    from cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS (see suite.d2.add_longtail_config), and with
    cfg.MODEL.ROI_MASK_HEAD.COSINE_PREDICTOR the mask head's 1x1 predictor is a cosine one. Box
    head, mask head and everything else are StandardROIHeads'."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        check_parent_loss_keys(cfg)  # before the parent builds (and, today, asserts on) its own predictor
        ret = super()._init_box_head(cfg, input_shape)
        # The only difference from StandardROIHeads: the box predictor.
        ret["box_predictor"] = LongTailOutputLayers(cfg, ret["box_head"].output_shape)
        return ret

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        ret = super()._init_mask_head(cfg, input_shape)
        mask = cfg.MODEL.ROI_MASK_HEAD
        if ret and mask.COSINE_PREDICTOR:
            head = ret["mask_head"]
            if not isinstance(getattr(head, "predictor", None), nn.Conv2d) or head.predictor.kernel_size != (1, 1):
                raise ValueError(f"MODEL.ROI_MASK_HEAD.COSINE_PREDICTOR needs a mask head with a 1x1 conv "
                                 f"`predictor` (MaskRCNNConvUpsampleHead), not {mask.NAME!r}")
            predictor = CosineConv2d(head.predictor.in_channels, head.predictor.out_channels, scale=mask.COSINE_SCALE)
            # As Detectron2 initialises the plain predictor (only the direction matters here).
            nn.init.normal_(predictor.weight, std=0.001)
            nn.init.constant_(predictor.bias, 0)
            head.predictor = predictor
        return ret
