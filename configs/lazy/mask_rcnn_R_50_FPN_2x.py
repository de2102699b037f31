# Mask R-CNN R50-FPN on LVIS v1 through LazyConfig (common.py: data, 2x schedule, optimizer),
# with the suite's heads: Detectron2's common model whose roi_heads are LongTailROIHeads and whose
# box predictor is LongTailOutputLayers, loss "ce" here; the per-loss files beside this one set
# `loss_name` (and Seesaw's cosine classifier). EQL and the federated loss need class frequencies:
# scripts/train_net.py passes them (suite.d2.lazy.class_freq_of).
#   python scripts/train_net.py --config-file configs/lazy/mask_rcnn_R_50_FPN_2x_seesaw.py
from detectron2.model_zoo import get_config

from suite.d2 import LongTailROIHeads
from suite.d2.lazy import longtail_box_predictor

from .common import dataloader, lr_multiplier, optimizer, train

model = get_config("common/models/mask_rcnn_fpn.py").model
model.roi_heads._target_ = LongTailROIHeads
model.roi_heads.num_classes = 1203
model.roi_heads.mask_cosine_scale = None  # 20.0: the official "normed mask" predictor
model.roi_heads.box_predictor = longtail_box_predictor(
    model.roi_heads.box_predictor, "ce",
    test_score_thresh=1e-4, test_topk_per_image=300, test_nms_thresh=0.5,
)
