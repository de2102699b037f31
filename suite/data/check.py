"""The files of a data set checked before a run writes anything: what would otherwise fail in
the middle of training (an image Detectron2 cannot read, or whose size is not the JSON's) or
after it (a bad validation image), or train silently on wrong boxes.

`check_split` checks one LVIS-format split (already read and format-checked by
`suite.data.lvis_format`):

- the split has annotations;
- every bbox [x, y, w, h] has w > 0 and h > 0 and lies within its image, up to 1 pixel;
- every image exists, is not empty, opens as an image (header only: PIL reads the size without
  decoding) and has the width and height its JSON gives.

The first problem, in the file's order, is a UserError of one line naming the file and the problem.
Image headers are read in parallel threads, with a progress bar on a terminal. Images that
passed are remembered in a cache keyed by the JSON's sha256 and the image root, per image by its
size and modification time, so that a second run reads no image again (a changed image is read
again). The cache lives in $SUITE_CACHE_DIR (default $XDG_CACHE_HOME/seesaw-suite, else
~/.cache/seesaw-suite), under data-check/.
"""

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from suite.errors import UserError
from suite.records import write_json_atomic

BOX_TOLERANCE_PX = 1.0
HEADER_READ_THREADS = 16
CHUNK = 256  # images per thread task
CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where the suite keeps caches (see the module docstring)."""
    if os.environ.get("SUITE_CACHE_DIR"):
        return Path(os.environ["SUITE_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "seesaw-suite"


def image_path(image_root: str, image: Dict[str, Any]) -> str:
    """Where Detectron2's LVIS loader looks for `image`: root + the last two parts of its coco_url."""
    split_folder, file_name = image["coco_url"].split("/")[-2:]
    return os.path.join(image_root + split_folder, file_name)


def box_problem(bbox: Any, width: int, height: int) -> str:
    """Why `bbox` ([x, y, w, h] in pixels) cannot be trained on in a width x height image, or ""."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        return f"bbox {bbox!r} is not [x, y, width, height]"
    x, y, w, h = bbox
    if not (w > 0 and h > 0):
        return f"bbox {bbox} has a width or height that is not positive"
    tolerance = BOX_TOLERANCE_PX
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        return f"bbox {bbox} lies outside its {width}x{height} image"
    return ""


def _check_annotations(dataset: Dict[str, Any], json_file: Path, split: str) -> None:
    if not dataset["annotations"]:
        raise UserError(f"{json_file}: the {split} split has no annotations (nothing to "
                        f"{'train on' if split == 'train' else 'evaluate'})")
    sizes = {image["id"]: (image["width"], image["height"]) for image in dataset["images"]}
    for annotation in dataset["annotations"]:
        problem = box_problem(annotation["bbox"], *sizes[annotation["image_id"]])
        if problem:
            raise UserError(f"{json_file}: annotation {annotation['id']} (image {annotation['image_id']}): {problem}")


def _image_problem(path: str, width: int, height: int) -> Tuple[str, Optional[List[int]]]:
    """(problem or "", [size in bytes, mtime in ns] of the file when it passed)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return "no such image file", None
    except OSError as error:
        return f"cannot read ({error.strerror})", None
    if stat.st_size == 0:
        return "empty file (0 bytes)", None
    try:
        with Image.open(path) as image:
            size = image.size
    except UnidentifiedImageError:
        return "not an image PIL can read", None
    except OSError as error:
        return f"cannot read as an image ({error})", None
    if size != (width, height):
        return f"is {size[0]}x{size[1]} pixels, its JSON says {width}x{height}", None
    return "", [stat.st_size, stat.st_mtime_ns]


def _file_signature(path: str) -> Optional[List[int]]:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _cache_file(json_file: Path, image_root: str) -> Path:
    digest = hashlib.sha256()
    with open(json_file, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 24), b""):
            digest.update(block)
    digest.update(b"\0" + image_root.encode())
    return cache_dir() / "data-check" / f"{digest.hexdigest()}.json"


def _read_cache(path: Path) -> Dict[str, List[int]]:
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cached, dict) or cached.get("version") != CACHE_VERSION:
        return {}
    return cached.get("images", {})


def _check_images(images: Sequence[Dict[str, Any]], json_file: Path, image_root: str, split: str) -> None:
    cache_file = _cache_file(json_file, image_root)
    passed = _read_cache(cache_file)
    paths = [image_path(image_root, image) for image in images]
    signatures: List[Optional[List[int]]] = [None] * len(images)
    problems: Dict[int, str] = {}
    for index, path in enumerate(paths):  # a stat each: far cheaper than a header read
        signature = passed.get(path)
        if signature is not None and _file_signature(path) == signature:
            signatures[index] = signature
    unchecked = [index for index, signature in enumerate(signatures) if signature is None]

    def check(chunk: Sequence[int]) -> List[Tuple[int, str, Optional[List[int]]]]:
        return [(index, *_image_problem(paths[index], images[index]["width"], images[index]["height"]))
                for index in chunk]

    chunks = [unchecked[start:start + CHUNK] for start in range(0, len(unchecked), CHUNK)]
    with ThreadPoolExecutor(HEADER_READ_THREADS) as pool, \
            tqdm(total=len(unchecked), desc=f"checking {split} images", unit="img", file=sys.stderr,
                 disable=None, leave=False) as progress:
        for results in pool.map(check, chunks):
            for index, problem, signature in results:
                signatures[index] = signature
                if problem:
                    problems[index] = problem
            progress.update(len(results))
    if problems:
        first = min(problems)
        more = f"; {len(problems) - 1} more image(s) have problems" if len(problems) > 1 else ""
        raise UserError(f"{paths[first]}: {problems[first]} (image {images[first]['id']} of {json_file}){more}")
    if unchecked:
        try:
            write_json_atomic(cache_file, {"version": CACHE_VERSION, "images": dict(zip(paths, signatures))})
        except OSError:
            pass  # an unwritable cache only costs the next run the same check


def check_split(dataset: Dict[str, Any], json_file: Path, image_root: str, split: str) -> None:
    """Check one split (`split`: "train" or "val") of an LVIS-format set whose images Detectron2
    finds under `image_root`; UserError naming the file and the first problem."""
    _check_annotations(dataset, Path(json_file), split)
    _check_images(dataset["images"], Path(json_file), image_root, split)
