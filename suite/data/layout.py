"""Where the files of a data set live: the synthetic set's layout and LVIS v1's under
`$DETECTRON2_DATASETS`, with checks that name the exact path a missing file was expected at.

Detectron2's LVIS loader finds an image at `image_root + split_folder + "/" + file_name`, where
`split_folder/file_name` are the last two parts of the image's `coco_url`: a string
concatenation, so every image root here ends with a path separator.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from suite.errors import UserError

LVIS_V1 = "lvis_v1"  # how a command names LVIS v1 (under $DETECTRON2_DATASETS) among data sets
LVIS_DOWNLOAD = "https://www.lvisdataset.org/dataset"
COCO_DOWNLOAD = "https://cocodataset.org/#download"


@dataclass(frozen=True)
class SplitFiles:
    """One split: its LVIS-format JSON and the root its images' `coco_url` parts are joined to."""

    json_file: Path
    image_root: str  # ends with a separator


@dataclass(frozen=True)
class SyntheticLayout:
    """`suite data synth --out ROOT` writes:

        ROOT/annotations/lvis_v1_train.json   ROOT/images/train/000000000001.png ...
        ROOT/annotations/lvis_v1_val.json     ROOT/images/val/000000000401.png ...

    Each image's `coco_url` is `train/<file>` or `val/<file>`, relative to ROOT/images/.
    """

    root: Path

    @property
    def image_root(self) -> str:
        return str(self.root / "images") + os.sep

    def split(self, split: str) -> SplitFiles:
        """`split`: "train" or "val"."""
        return SplitFiles(self.root / "annotations" / f"lvis_v1_{split}.json", self.image_root)

    def image_dir(self, split: str) -> Path:
        return self.root / "images" / split


def detectron2_datasets_root() -> Path:
    """The root Detectron2's builtin data sets live under: `$DETECTRON2_DATASETS`, else ./datasets
    (read now, not at import, so that a later change of the variable counts; `~` is expanded)."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets")).expanduser()


def lvis_v1_split(root: Path, split: str) -> SplitFiles:
    """LVIS v1 as Detectron2's builtin `lvis_v1_train`/`lvis_v1_val` expect it:
    ROOT/lvis/lvis_v1_{split}.json, images at ROOT/coco/train2017/ and ROOT/coco/val2017/
    (LVIS v1 val takes images from both COCO 2017 folders)."""
    return SplitFiles(Path(root) / "lvis" / f"lvis_v1_{split}.json", str(Path(root) / "coco") + os.sep)


def dataset_split(dataset: str, split: str) -> SplitFiles:
    """The files of `split` ("train" or "val") of `dataset`: LVIS_V1 (under
    `detectron2_datasets_root()`, read now) or the folder of a generated set."""
    if dataset == LVIS_V1:
        return lvis_v1_split(detectron2_datasets_root(), split)
    return SyntheticLayout(Path(dataset)).split(split)


def check_lvis_v1_files(root: Path) -> None:
    """Raise UserError naming the first missing LVIS v1 file or COCO image folder under `root`,
    and where to get it."""
    root = Path(root)
    for split in ("train", "val"):
        json_file = lvis_v1_split(root, split).json_file
        if not json_file.is_file():
            raise UserError(
                f"LVIS v1 annotations not found: expected {json_file} (root {root} is "
                f"$DETECTRON2_DATASETS, default ./datasets); download lvis_v1_{split}.json from "
                f"{LVIS_DOWNLOAD}")
    for folder in ("train2017", "val2017"):
        image_dir = root / "coco" / folder
        if not image_dir.is_dir():
            raise UserError(
                f"COCO 2017 images not found: expected the folder {image_dir} (LVIS v1 uses COCO "
                f"2017 train and val images); download {folder}.zip from {COCO_DOWNLOAD}")
