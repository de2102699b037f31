# configs/lazy/cascade_mask_rcnn_R_101_FPN_2x.py with every stage's classifier trained by "focal".
from .cascade_mask_rcnn_R_101_FPN_2x import dataloader, lr_multiplier, model, optimizer, train

for _predictor in model.roi_heads.box_predictors:
    _predictor.loss_name = "focal"
