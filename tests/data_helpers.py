"""Small generated sets for the data and evaluation tests, and LVIS-format files built from them."""

import json
import shutil
from pathlib import Path

from suite.data.layout import SyntheticLayout
from suite.data.synth import SynthSpec, generate

SMALL = SynthSpec(num_train_images=40, num_val_images=24, num_classes=9, image_size=64, seed=3)
# SMALL's training split with few validation images (every class in one at least), for the harness
# tests' runs: the evaluation at the end of a tiny run was most of its time.
RUN_SET = SynthSpec(num_train_images=40, num_val_images=6, num_classes=9, image_size=64, seed=3, min_val_images=1)


def small_set(root: Path, spec: SynthSpec = SMALL) -> SyntheticLayout:
    generate(spec, root)
    return SyntheticLayout(root)


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def lay_out_like_lvis_v1(layout: SyntheticLayout, datasets_root: Path) -> None:
    """Copy a synthetic set to datasets_root as LVIS v1 is laid out under $DETECTRON2_DATASETS:
    lvis/lvis_v1_{train,val}.json with COCO-style coco_url, images in coco/train2017 and
    coco/val2017 - half of the val images in train2017, as LVIS v1 val takes images from both."""
    (datasets_root / "lvis").mkdir(parents=True)
    for split in ("train", "val"):
        dataset = read(layout.split(split).json_file)
        for index, image in enumerate(dataset["images"]):
            source = layout.image_dir(split) / Path(image["coco_url"]).name
            folder = "train2017" if split == "train" or index % 2 else "val2017"
            target = datasets_root / "coco" / folder / f"{image['id']:012d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            image["coco_url"] = f"http://images.cocodataset.org/{folder}/{target.name}"
        (datasets_root / "lvis" / f"lvis_v1_{split}.json").write_text(json.dumps(dataset))
