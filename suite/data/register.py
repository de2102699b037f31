"""Registration of LVIS-format data sets with Detectron2's `DatasetCatalog`/`MetadataCatalog`.

Detectron2 v0.6's `register_lvis_instances` hands out the 1203 built-in LVIS classes for any
name containing "v1", so every set here is registered with `load_lvis_json(json, root, None)`
and metadata read from its own training JSON:

    thing_classes      category names in id order (label = category id - 1)
    json_file, image_root, evaluator_type="lvis"
    class_image_count  [{"id", "image_count"}, ...] training images per category, by id
                       (the field newer Detectron2 versions carry for LVIS v1)
    num_train_images   images in the training JSON (EQL's frequency is image_count / this)
    lvis_categories    [{"id", "name", "frequency", "image_count", "instance_count"}, ...] by id
                       (what the run record's per-category AP is listed with)

Registration reads and checks both JSON files once (LVIS v1's training file is about 1 GB, so
that takes a while there). Registering a name again replaces the entry, so the builtin `lvis_v1_train`/`lvis_v1_val`
(registered when Detectron2 is imported, with `$DETECTRON2_DATASETS` as it was then) are
re-registered with the root as it is now.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_lvis_json

from suite.data.check import check_split
from suite.data.layout import (LVIS_V1, SplitFiles, SyntheticLayout, check_lvis_v1_files, detectron2_datasets_root,
                               lvis_v1_split)
from suite.data.lvis_format import read_lvis_json
from suite.errors import UserError


@dataclass(frozen=True)
class RegisteredDataset:
    """Names of the registered splits and what a run record says about the set."""

    train: str
    val: str
    name: str  # "lvis_v1" or "synthetic"
    path: str  # the folder the set was read from
    num_classes: int
    num_train_images: int

    def record(self) -> Dict[str, Any]:
        """The run record's `dataset` field (docs/records.md)."""
        return {"name": self.name, "path": self.path, "num_classes": self.num_classes,
                "num_train_images": self.num_train_images}


def _register_split(name: str, files: SplitFiles, metadata: Dict[str, Any]) -> None:
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    json_file, image_root = str(files.json_file), files.image_root
    DatasetCatalog.register(name, lambda: load_lvis_json(json_file, image_root, None))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="lvis",
                                  **metadata)


def _register_pair(prefix: str, train: SplitFiles, val: SplitFiles, check_files: bool) -> Dict[str, Any]:
    """Check both JSON files (and with `check_files` their annotations and images, see
    suite.data.check), register `{prefix}_train` and `{prefix}_val`; return the metadata."""
    train_set = read_lvis_json(train.json_file)
    val_set = read_lvis_json(val.json_file)
    if check_files:
        check_split(train_set, train.json_file, train.image_root, "train")
        check_split(val_set, val.json_file, val.image_root, "val")
    categories: List[dict] = sorted(train_set["categories"], key=lambda category: category["id"])
    val_names = [category["name"] for category in sorted(val_set["categories"], key=lambda c: c["id"])]
    if val_names != [category["name"] for category in categories]:
        raise UserError(f"{val.json_file}: its categories differ from those of {train.json_file}")
    if any("image_count" not in category for category in categories):
        raise UserError(f"{train.json_file}: a category lacks 'image_count' (LVIS v1 training "
                        "files give each category's number of training images)")
    metadata = {
        "thing_classes": [category["name"] for category in categories],
        "class_image_count": [{"id": category["id"], "image_count": category["image_count"]}
                              for category in categories],
        "num_train_images": len(train_set["images"]),
        "lvis_categories": [{key: category.get(key) for key in
                             ("id", "name", "frequency", "image_count", "instance_count")}
                            for category in categories],
    }
    _register_split(f"{prefix}_train", train, metadata)
    _register_split(f"{prefix}_val", val, metadata)
    return metadata


def register_synthetic_lvis(root: Path, prefix: str = "synth", check_files: bool = False) -> RegisteredDataset:
    """Register a set written by `suite data synth --out root` as `{prefix}_train`/`{prefix}_val`.
    UserError if a file is missing or not LVIS format (or, with `check_files`, if an annotation
    or an image fails suite.data.check)."""
    layout = SyntheticLayout(Path(root))
    if not layout.root.is_dir():
        raise UserError(f"{layout.root}: no such data set folder (write one with: suite data synth --out {layout.root})")
    metadata = _register_pair(prefix, layout.split("train"), layout.split("val"), check_files)
    return RegisteredDataset(f"{prefix}_train", f"{prefix}_val", "synthetic", str(layout.root.resolve()),
                             len(metadata["thing_classes"]), metadata["num_train_images"])


def register_lvis_v1(root: Path = None, check_files: bool = False) -> RegisteredDataset:
    """Register LVIS v1 as `lvis_v1_train`/`lvis_v1_val` from `root` (default
    `$DETECTRON2_DATASETS`, read now), laid out as Detectron2's builtin registration expects:
    root/lvis/lvis_v1_{train,val}.json and COCO 2017 images at root/coco/{train2017,val2017}/.
    UserError naming the expected path and where to download it if a file is missing;
    `check_files` as for `register_synthetic_lvis`."""
    root = Path(root) if root is not None else detectron2_datasets_root()
    check_lvis_v1_files(root)
    metadata = _register_pair(LVIS_V1, lvis_v1_split(root, "train"), lvis_v1_split(root, "val"), check_files)
    return RegisteredDataset(f"{LVIS_V1}_train", f"{LVIS_V1}_val", LVIS_V1, str(root.resolve()),
                             len(metadata["thing_classes"]), metadata["num_train_images"])


def register_dataset(dataset: str, check_files: bool = False) -> RegisteredDataset:
    """`dataset`: "lvis_v1" (under `$DETECTRON2_DATASETS`) or the folder of a synthetic set;
    `check_files`: also check annotations and images (suite.data.check), before a run."""
    if dataset == LVIS_V1:
        return register_lvis_v1(check_files=check_files)
    return register_synthetic_lvis(Path(dataset), check_files=check_files)
