"""`LongTailROIHeads`: StandardROIHeads with the suite's box predictor."""

from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads

from suite.d2.box_predictor import LongTailOutputLayers
from suite.d2.config import check_parent_loss_keys


@ROI_HEADS_REGISTRY.register()
class LongTailROIHeads(StandardROIHeads):
    """Selected by cfg.MODEL.ROI_HEADS.NAME = "LongTailROIHeads"; the box predictor's loss comes
    from cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS (see suite.d2.add_longtail_config). Box head, mask
    head and everything else are StandardROIHeads'."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        check_parent_loss_keys(cfg)  # before the parent builds (and, today, asserts on) its own predictor
        ret = super()._init_box_head(cfg, input_shape)
        # The only difference from StandardROIHeads: the box predictor.
        ret["box_predictor"] = LongTailOutputLayers(cfg, ret["box_head"].output_shape)
        return ret
