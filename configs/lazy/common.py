# LVIS v1 data, schedule and optimizer shared by this folder's configs: the settings of
# configs/Base-LVISv1-MaskRCNN-FPN-2x.yaml (the official Seesaw configs' keys) in LazyConfig form.
# Needs ImageNet weights (train.init_checkpoint) and a GPU for the real schedule.
from detectron2.config import LazyCall as L
from detectron2.evaluation import LVISEvaluator
from detectron2.model_zoo import get_config
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.dataset.names = "lvis_v1_train"
dataloader.train.total_batch_size = 16
dataloader.test.dataset.names = "lvis_v1_val"
dataloader.evaluator = L(LVISEvaluator)(dataset_name="${..test.dataset.names}", max_dets_per_image=300)

train = get_config("common/train.py").train
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.max_iter = 150264  # 24 epochs of LVIS v1 train (100,170 images) at 16 images
train.checkpointer.period = 6261
train.eval_period = 150264
# Seeded as `suite train` (--seed 0): default_setup seeds each rank with seed + rank, and the run
# record's seed is this (Detectron2's common train config has none: a random seed every run).
train.seed = 0

optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.02

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[100176, 137742, 150264]),
    warmup_length=500 / 150264,
    warmup_method="linear",
    warmup_factor=0.001,
)
