"""The pretrained start of the study protocol and the shared initial weights of a seed.

`pretrain_backbone`: the CPU stand-in for ImageNet pretraining. A Mask R-CNN with CE is trained
from scratch on a separate generated set (its own seed, and its own classes: every hue turned by
PRETRAIN_HUE_OFFSET, so no pretraining class has the shape, texture and colour of a study class;
shapes and textures - generic features - are shared, as ImageNet shares them with LVIS), and only its
ResNet body (`backbone.bottom_up.*`, what an ImageNet checkpoint holds) is kept, in
`backbone.pth`, loadable through MODEL.WEIGHTS. Trained once per seed, reused by every loss.

`write_initial_weights`: what makes seeds paired. Detectron2 draws a model's initial weights in
the order it builds modules, and the classifier's width differs between losses (C + 1, C, C + 2),
so every module built after it (the mask head) would start differently for each loss. So for
seed s one model is built (seed s, the pretrained backbone loaded) and saved without the
classifier (`roi_heads.box_predictor.cls_score.*`, which each loss initialises itself) and
without loss state; every loss of seed s starts from that file through MODEL.WEIGHTS.
"""

import logging
from pathlib import Path
from typing import Optional

import torch

BACKBONE_FILE = "backbone.pth"
BACKBONE_PREFIX = "backbone.bottom_up."
# Keys of a loss's own: the classifier (its width and bias depend on the loss), the loss's
# state (Seesaw counts) and the gradient-balance record.
LOSS_OWN_PREFIXES = ("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.cls_loss.",
                     "roi_heads.box_predictor.grad_balance.")
# Half the hue between two families: every pretraining class sits between two study families.
PRETRAIN_HUE_OFFSET = 0.0625
AUTHOR = "seesaw-suite"
logger = logging.getLogger("suite.study")


def _save_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(payload, temporary)
    temporary.replace(path)


def extract_backbone(checkpoint: Path, out: Path) -> Path:
    """Save the ResNet body of a Detectron2 checkpoint (keys backbone.bottom_up.*, without BN's
    num_batches_tracked, which FrozenBN has not) as a MODEL.WEIGHTS file."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    body = {key: value for key, value in state.items()
            if key.startswith(BACKBONE_PREFIX) and not key.endswith("num_batches_tracked")}
    if not body:
        raise ValueError(f"{checkpoint}: no {BACKBONE_PREFIX}* weights in it")
    _save_atomic(out, {"model": body, "__author__": AUTHOR})
    return out


def write_initial_weights(cfg, seed: int, pretrained: Optional[str], out: Path) -> Path:
    """Build the model of `cfg` with seed `seed`, load `pretrained` (a MODEL.WEIGHTS path or URL;
    None or "" for none) and save its weights without the loss's own (LOSS_OWN_PREFIXES)."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from detectron2.utils.env import seed_all_rng

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    seed_all_rng(seed)
    model = build_model(cfg)
    if pretrained:
        DetectionCheckpointer(model).load(pretrained)
    state = {key: value for key, value in model.state_dict().items() if not key.startswith(LOSS_OWN_PREFIXES)}
    _save_atomic(out, {"model": state, "__author__": AUTHOR})
    return out


PRETRAIN_DATA_SEED = 1000  # the pretraining set's own generator seed (the study set's is 0)
PRETRAIN_IMAGES = 800  # twice the study set's training images: the larger, separate set
PRETRAIN_ITERATIONS = 300


def steps(iterations: int, fractions: tuple) -> str:
    """SOLVER.STEPS at these fractions of training, as a config value; steps that would not
    fall inside training (very short runs) are left out."""
    kept = sorted({round(iterations * fraction) for fraction in fractions} & set(range(1, iterations)))
    return "(" + "".join(f"{step}," for step in kept) + ")"


def pretrain_set_spec(num_classes: int, image_size: int, num_train_images: int = PRETRAIN_IMAGES):
    """The pretraining set: own seed, own classes (hues turned), as many classes and the same
    image size as the set it prepares for; a small val split (suite train evaluates it once)."""
    from suite.data.synth import SynthSpec

    return SynthSpec(num_train_images=num_train_images, num_val_images=8, min_val_images=1,
                     num_classes=num_classes, image_size=image_size, seed=PRETRAIN_DATA_SEED,
                     hue_offset=PRETRAIN_HUE_OFFSET)


def pretrain_backbone(data_dir: Path, run_dir: Path, seed: int, iterations: int = PRETRAIN_ITERATIONS,
                      config_file: Optional[Path] = None, overrides=(), device: str = "cpu",
                      num_gpus: int = 1) -> Path:
    """Train CE from scratch on the pretraining set at `data_dir` (an ordinary run directory at
    `run_dir`, resumed if interrupted, kept if finished) and write RUN_DIR/backbone.pth; return
    its path. Step decay at 80 % of the iterations, as the demo's schedule from scratch."""
    from suite.schema import RUN_RECORD
    from suite.harness.train import TrainOptions, train

    run_dir = Path(run_dir)
    backbone = run_dir / BACKBONE_FILE
    if backbone.is_file():
        return backbone
    if not (run_dir / RUN_RECORD).exists():
        train(TrainOptions(loss="ce", dataset=str(data_dir), output=run_dir, config_file=config_file,
                           max_iter=iterations, seed=seed, device=device, num_gpus=num_gpus,
                           resume=(run_dir / "last_checkpoint").exists(),
                           overrides=["SOLVER.STEPS", steps(iterations, (0.8,)), *overrides]))
    return extract_backbone(run_dir / "model_final.pth", backbone)
