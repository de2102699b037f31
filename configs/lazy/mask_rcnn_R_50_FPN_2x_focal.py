# configs/lazy/mask_rcnn_R_50_FPN_2x.py with the box classifier trained by "focal".
from .mask_rcnn_R_50_FPN_2x import dataloader, lr_multiplier, model, optimizer, train

for _predictor in [model.roi_heads.box_predictor]:
    _predictor.loss_name = "focal"
