# Cascade Mask R-CNN R101-FPN on LVIS v1 through LazyConfig (common.py: data, 2x schedule,
# optimizer): Detectron2's common cascade model whose roi_heads are LongTailCascadeROIHeads, one
# LongTailOutputLayers per stage (each with its own loss state), stage loss weights (1, 0.5, 0.25)
# and SmoothL1 beta 1 as the official Cascade Seesaw configs (configs/lvis_v1/cascade_*.yaml say
# key by key). Loss "ce" here; the per-loss files beside this one set `loss_name` in every stage.
#   python scripts/train_net.py --config-file configs/lazy/cascade_mask_rcnn_R_101_FPN_2x_seesaw.py
from detectron2.model_zoo import get_config

from suite.d2 import LongTailCascadeROIHeads
from suite.d2.lazy import longtail_box_predictor

from .common import dataloader, lr_multiplier, optimizer, train

train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
model = get_config("common/models/cascade_rcnn.py").model
model.backbone.bottom_up.stages.depth = 101
model.proposal_generator.post_nms_topk = (2000, 1000)
model.proposal_generator.smooth_l1_beta = 1.0 / 9  # the cascade base's RPN SmoothL1Loss
model.roi_heads._target_ = LongTailCascadeROIHeads
model.roi_heads.num_classes = 1203
model.roi_heads.stage_loss_weights = (1.0, 0.5, 0.25)
model.roi_heads.mask_cosine_scale = None  # 20.0: the official "normed mask" predictor
model.roi_heads.box_predictors = [
    longtail_box_predictor(predictor, "ce", smooth_l1_beta=1.0,
                           test_score_thresh=1e-4, test_topk_per_image=300, test_nms_thresh=0.5)
    for predictor in model.roi_heads.box_predictors
]
