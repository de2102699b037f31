"""The Detectron2 plugin on the CPU: a tiny Mask R-CNN trained and run with every suite loss."""

from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from suite.d2 import add_longtail_config
from suite.losses import LOSSES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NUM_CLASSES = 3


def tiny_cfg(loss: str):
    cfg = get_cfg()
    add_longtail_config(cfg)
    cfg.merge_from_file(str(CONFIGS / "small_cpu.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.CLS_LOSS = loss
    cfg.MODEL.ROI_BOX_HEAD.COSINE_CLASSIFIER = loss == "seesaw"
    cfg.INPUT.MIN_SIZE_TEST = cfg.INPUT.MAX_SIZE_TEST = 64
    return cfg


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for index in range(2):
        image = torch.randint(0, 255, (3, 64, 64), generator=generator, dtype=torch.uint8).float()
        instances = Instances((64, 64))
        instances.gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 40.0, 40.0], [30.0, 20.0, 60.0, 56.0]]))
        instances.gt_classes = torch.tensor([index, 2])
        masks = torch.zeros(2, 64, 64, dtype=torch.bool)
        masks[0, 8:40, 8:40] = True
        masks[1, 20:56, 30:60] = True
        instances.gt_masks = BitMasks(masks)
        inputs.append({"image": image, "height": 64, "width": 64, "instances": instances})
    return inputs


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_training_step_and_inference(loss):
    torch.manual_seed(0)
    cfg = tiny_cfg(loss)
    if loss == "eql":  # frequencies from metadata only (image_count / num_train_images)
        MetadataCatalog.get("d2_plugin_test_train").set(
            class_image_count=[{"id": 1, "image_count": 500}, {"id": 5, "image_count": 100},
                               {"id": 9, "image_count": 1}], num_train_images=1000)
        cfg.DATASETS.TRAIN = ("d2_plugin_test_train",)
    model = build_model(cfg)
    predictor = model.roi_heads.box_predictor
    if loss == "eql":
        # 500, 100 and 1 of 1000 images: only the last class lies under lambda = 1.1e-3.
        assert predictor.cls_loss.rare.tolist() == [False, False, True, False]
    assert predictor.cls_score.out_features == predictor.cls_loss.num_logits
    model.train()
    with EventStorage() as storage:
        losses = model(batch())
        total = sum(losses.values())
        total.backward()
        scalars = storage.latest()
    assert all(torch.isfinite(value) for value in losses.values()), losses
    assert {"loss_box_reg", "loss_mask", "loss_rpn_cls"} <= set(losses)
    assert predictor.cls_score.weight.grad is not None and predictor.cls_score.weight.grad.abs().sum() > 0
    assert "fast_rcnn/cls_accuracy" in scalars
    if loss == "seesaw":
        assert predictor.cls_loss.cum_samples.sum() > 0
    model.eval()
    with torch.no_grad():
        outputs = model([{k: v for k, v in item.items() if k != "instances"} for item in batch(1)])
    assert len(outputs) == 2
    for output in outputs:
        instances = output["instances"]
        assert instances.pred_boxes.tensor.shape == (len(instances), 4)
        assert instances.pred_masks.shape[0] == len(instances)
        assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
        assert (instances.pred_classes < NUM_CLASSES).all()


def test_seesaw_counts_survive_checkpoint_and_resume(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_cfg("seesaw"))
    model.train()
    with EventStorage():
        model(batch())
    counts = model.roi_heads.box_predictor.cls_loss.cum_samples.clone()
    assert counts.sum() > 0
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    resumed = build_model(tiny_cfg("seesaw"))
    assert resumed.roi_heads.box_predictor.cls_loss.cum_samples.sum() == 0
    DetectionCheckpointer(resumed).load(str(tmp_path / "model.pth"))
    assert torch.equal(resumed.roi_heads.box_predictor.cls_loss.cum_samples, counts)
    resumed.train()
    with EventStorage():
        resumed(batch())
    assert (resumed.roi_heads.box_predictor.cls_loss.cum_samples > counts).any()
    assert (resumed.roi_heads.box_predictor.cls_loss.cum_samples >= counts).all()


def test_unknown_loss_names_the_key():
    with pytest.raises(ValueError, match="MODEL.ROI_BOX_HEAD.CLS_LOSS"):
        build_model(tiny_cfg("nope"))


def test_eql_without_frequencies_names_the_key():
    cfg = tiny_cfg("eql")
    cfg.DATASETS.TRAIN = ("d2_plugin_test_unregistered",)
    with pytest.raises(ValueError, match="DATASETS.TRAIN"):
        build_model(cfg)


def test_classifier_width_mismatch_names_the_key():
    cfg = tiny_cfg("seesaw")
    cfg.MODEL.ROI_BOX_HEAD.CLS_NUM_LOGITS = NUM_CLASSES + 1  # seesaw needs C + 2
    with pytest.raises(ValueError, match="MODEL.ROI_BOX_HEAD.CLS_NUM_LOGITS"):
        build_model(cfg)
