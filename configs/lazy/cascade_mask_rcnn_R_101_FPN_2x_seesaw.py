# configs/lazy/cascade_mask_rcnn_R_101_FPN_2x.py with every stage's classifier trained by "seesaw".
from .cascade_mask_rcnn_R_101_FPN_2x import dataloader, lr_multiplier, model, optimizer, train

for _predictor in model.roi_heads.box_predictors:
    _predictor.loss_name = "seesaw"
    _predictor.cosine_scale = 20.0  # NormedLinear, temperature 20, as in every official Seesaw config
