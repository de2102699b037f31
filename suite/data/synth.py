"""A generated long-tailed instance segmentation set in LVIS v1 format.

Classes come in look-alike families, as LVIS's rare classes often resemble frequent ones: a
family shares a shape; its members differ by texture (solid, striped, dotted, checkered) and a
small hue shift. Class of rank `r` (0 = most training images) is member `r // F` of family
`r % F` (F = 8 families), so every family has a frequent head and rarer siblings, and a model
that leans towards frequent classes confuses the rare ones with them.

Long tail. The classes are split into frequency groups in LVIS v1's proportions (337 rare,
461 common, 405 frequent of 1203) and, inside each group, the number of training images
falls geometrically with rank from the group's top to its bottom: log image count is
piecewise linear in rank, as in LVIS v1's tail (about ten-fold per 400 ranks) - a Zipf-like
few-classes-hold-most-instances distribution whose three groups are always populated.

Frequency (`frequency_thresholds`): LVIS's rule - rare 1-10, common 11-100, frequent > 100
training images - holds as it is from 400 training images up (a class with 10 examples is
rare whatever the set's size). Below 400 images both thresholds scale down with the set so
that a frequent class still needs more than a quarter of the images:
common_max = min(100, N // 4), rare_max = max(1, common_max // 10).

Validation: every class is in at least `min_val_images` val images (rare ones too), otherwise
in the same share of val images as of training images. Each category absent from an image is
listed in its `neg_category_ids` with probability `neg_fraction` (LVIS's negative sets are a
sample; the federated evaluation counts a false positive only on a listed negative).
Annotations are exhaustive, so `not_exhaustive_category_ids` is empty.

Deterministic: the same spec (seed included) gives the same bytes.
"""

import colorsys
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from suite.data.layout import SyntheticLayout
from suite.errors import UserError

# LVIS v1 train: 337 rare, 461 common, 405 frequent categories.
LVIS_V1_GROUP_SIZES = {"r": 337, "c": 461, "f": 405}
NUM_FAMILIES = 8
SHAPES = ("circle", "square", "triangle", "hexagon", "star", "cross", "ell", "crescent")
TEXTURES = ("solid", "striped", "dotted", "checkered")
MEMBERS_PER_FAMILY = 8
MAX_CLASSES_PER_IMAGE = 5
OBJECT_SIZE = (0.14, 0.32)  # object diameter as a share of the image side
# The LVIS profile (lvis_profile_spec; docs/data-stats.md "An LVIS-shaped set" argues each number).
LVIS_PROFILE_CLASSES = 31
LVIS_PROFILE_IMAGE_SIZE = 96
LVIS_PROFILE_VAL_IMAGES = 800
LVIS_PROFILE_MIN_VAL_IMAGES = 80


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. `head_image_fraction`: share of training images the most frequent class
    is in; `extra_instance_prob`: chance that a class present in an image has a second instance.
    How alike a family's members look: `hue_step`, the hue (0-1 circle) between two members
    (0.035 is about 13 degrees; 0 makes texture the only cue), and `texture_contrast`, how much
    darker a texture's second colour is (0 makes every texture look solid). `hue_offset` turns
    every class's hue by that much (0-1 circle): a set with another offset has classes of its
    own - same shapes and textures, other colours - as a pretraining set is separate from the
    set a detector is fine-tuned on."""

    num_train_images: int = 400
    num_val_images: int = 100
    num_classes: int = 24
    image_size: int = 128
    seed: int = 0
    head_image_fraction: float = 0.3
    min_val_images: int = 3
    neg_fraction: float = 0.5
    extra_instance_prob: float = 0.25
    hue_step: float = 0.035
    texture_contrast: float = 0.55
    hue_offset: float = 0.0

    def check(self) -> None:
        """ValueError naming the first bad field."""
        if not 20 <= self.num_train_images <= 1_000_000:
            raise ValueError(f"num_train_images must be in [20, 1000000], got {self.num_train_images}")
        if not 1 <= self.num_val_images <= 1_000_000:
            raise ValueError(f"num_val_images must be in [1, 1000000], got {self.num_val_images}")
        if not 3 <= self.num_classes <= NUM_FAMILIES * MEMBERS_PER_FAMILY:
            raise ValueError(f"num_classes must be in [3, {NUM_FAMILIES * MEMBERS_PER_FAMILY}], "
                             f"got {self.num_classes}")
        if not 32 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in [32, 1024], got {self.image_size}")
        if not 0 < self.head_image_fraction <= 1:
            raise ValueError(f"head_image_fraction must be in (0, 1], got {self.head_image_fraction}")
        if not 1 <= self.min_val_images <= self.num_val_images:
            raise ValueError(f"min_val_images must be in [1, num_val_images], got {self.min_val_images}")
        if not 0 <= self.hue_step <= 1 / MEMBERS_PER_FAMILY:
            raise ValueError(f"hue_step must be in [0, {1 / MEMBERS_PER_FAMILY}], got {self.hue_step}")
        if not 0 <= self.hue_offset < 1:
            raise ValueError(f"hue_offset must be in [0, 1), got {self.hue_offset}")
        for name in ("neg_fraction", "extra_instance_prob", "texture_contrast"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class LvisProfileSpec(SynthSpec):
    """A SynthSpec whose training image count per class is given, `train_counts[r]` for the class
    of rank r (descending), instead of following from `head_image_fraction` (ignored here): the
    LVIS profile, built by `lvis_profile_spec`. `profile` names it in the files' `info.spec`."""

    train_counts: Tuple[int, ...] = ()
    profile: str = "lvis"

    def check(self) -> None:
        """ValueError naming the first bad field (SynthSpec's checks, then the counts')."""
        super().check()
        counts = list(self.train_counts)
        if len(counts) != self.num_classes:
            raise ValueError(f"train_counts has {len(counts)} counts for {self.num_classes} classes")
        if min(counts) < 1 or counts != sorted(counts, reverse=True):
            raise ValueError("train_counts must be positive and in descending order (rank 0 = most images)")
        if counts[0] > self.num_train_images:
            raise ValueError(f"train_counts asks for a class in {counts[0]} of {self.num_train_images} training images")
        if sum(counts) > MAX_CLASSES_PER_IMAGE * self.num_train_images:
            raise ValueError(f"train_counts sum to {sum(counts)}, more than {MAX_CLASSES_PER_IMAGE} classes in each "
                             f"of the {self.num_train_images} training images")


@dataclass(frozen=True)
class SynthClass:
    rank: int  # 0 = most training images
    family: int  # shape index
    member: int  # position in the family: texture and hue shift
    name: str
    texture: str
    hue: float  # 0-1 circle


def frequency_thresholds(num_train_images: int) -> Tuple[int, int]:
    """(rare_max, common_max): rare <= rare_max < common <= common_max < frequent, in training
    images. LVIS's (10, 100) from 400 images up, scaled down below (see the module docstring)."""
    common_max = min(100, num_train_images // 4)
    return max(1, common_max // 10), common_max


def frequency_group(image_count: int, thresholds: Tuple[int, int]) -> str:
    rare_max, common_max = thresholds
    return "r" if image_count <= rare_max else "c" if image_count <= common_max else "f"


def group_sizes(num_classes: int) -> Dict[str, int]:
    """Classes per frequency group in LVIS v1's proportions, at least one each."""
    total = sum(LVIS_V1_GROUP_SIZES.values())
    rare = max(1, round(num_classes * LVIS_V1_GROUP_SIZES["r"] / total))
    frequent = max(1, round(num_classes * LVIS_V1_GROUP_SIZES["f"] / total))
    return {"r": rare, "c": num_classes - rare - frequent, "f": frequent}


def _geometric(top: int, bottom: int, count: int) -> List[int]:
    if count == 1:
        return [top]
    return [round(top * (bottom / top) ** (i / (count - 1))) for i in range(count)]


def train_image_counts(spec: SynthSpec) -> List[int]:
    """Planned training images per class, by rank (descending)."""
    rare_max, common_max = frequency_thresholds(spec.num_train_images)
    sizes = group_sizes(spec.num_classes)
    head = min(spec.num_train_images, max(common_max + 1, round(spec.head_image_fraction * spec.num_train_images)))
    return (_geometric(head, common_max + 1, sizes["f"]) + _geometric(common_max, rare_max + 1, sizes["c"])
            + _geometric(rare_max, 1, sizes["r"]))


def lvis_quantile_counts(num_classes: int, groups: Mapping[str, Mapping[str, Any]]) -> List[int]:
    """Training images per class, by rank (descending), for `num_classes` classes in LVIS v1's
    group proportions (group_sizes): the i-th of a group's n classes (0 = most images) gets the
    group's image count at quantile level 1 - (i + 0.5) / n, interpolated linearly in `groups[g]
    ["quantiles"]` (counts at evenly spaced levels 0..1, as baselines/lvis_v1_image_counts.json
    holds them) and rounded half up."""
    sizes = group_sizes(num_classes)
    counts = []
    for group in ("f", "c", "r"):
        quantiles = groups[group]["quantiles"]
        levels = np.linspace(0.0, 1.0, len(quantiles))
        count = sizes[group]
        counts += [int(np.floor(np.interp(1 - (i + 0.5) / count, levels, quantiles) + 0.5)) for i in range(count)]
    return counts


def lvis_profile_spec(num_classes: int = LVIS_PROFILE_CLASSES, image_size: int = LVIS_PROFILE_IMAGE_SIZE,
                      num_val_images: int = LVIS_PROFILE_VAL_IMAGES, min_val_images: int = LVIS_PROFILE_MIN_VAL_IMAGES,
                      seed: int = 0) -> LvisProfileSpec:
    """The LVIS-shaped set (docs/data-stats.md argues each number): per-class training image counts
    from LVIS v1's per-group quantiles (lvis_quantile_counts on the committed baseline) and as many
    training images as give LVIS v1's mean classes per image (sum of the counts / that mean,
    rounded). UserError naming a missing baseline file; ValueError where the counts do not fit
    (too few classes: the largest count would exceed the images)."""
    from suite.data.lvis_reference import load_baseline, lvis_v1_classes_per_image

    counts = lvis_quantile_counts(num_classes, load_baseline()["groups"])
    spec = LvisProfileSpec(num_train_images=round(sum(counts) / lvis_v1_classes_per_image()),
                           num_val_images=num_val_images, num_classes=num_classes, image_size=image_size, seed=seed,
                           min_val_images=min_val_images, train_counts=tuple(counts))
    spec.check()
    return spec


def make_classes(num_classes: int, hue_step: float, hue_offset: float = 0.0) -> List[SynthClass]:
    """Classes by rank. Names say shape and texture (and hue step past the fourth member).
    Textures rotate with the family so that no texture marks a frequency group."""
    families = min(NUM_FAMILIES, num_classes)
    classes = []
    for rank in range(num_classes):
        family, member = rank % families, rank // families
        texture = TEXTURES[(member + family) % len(TEXTURES)]
        suffix = "" if member < len(TEXTURES) else f"_{member // len(TEXTURES) + 1}"
        hue = (hue_offset + family / NUM_FAMILIES + member * hue_step) % 1.0
        classes.append(SynthClass(rank, family, member, f"{SHAPES[family]}_{texture}{suffix}", texture, hue))
    return classes


def _unit_shape(family: int) -> np.ndarray:
    """(V, 2) polygon of a shape of radius about 1, centred at 0, counter-clockwise."""
    shape = SHAPES[family]
    if shape == "circle":
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    if shape in ("square", "triangle", "hexagon"):
        sides = {"square": 4, "triangle": 3, "hexagon": 6}[shape]
        angles = np.linspace(0, 2 * np.pi, sides, endpoint=False) + np.pi / sides
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    if shape == "star":
        angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    if shape == "cross":
        a, b = 0.33, 0.95
        return np.array([(a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b),
                         (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a), (-a, -b)])
    if shape == "ell":
        return np.array([(-0.8, -0.9), (-0.1, -0.9), (-0.1, 0.2), (0.8, 0.2), (0.8, 0.9), (-0.8, 0.9)])
    # crescent: the unit disc minus a disc of radius 0.8 centred at (0.45, 0)
    outer = np.linspace(np.radians(51.3), np.radians(308.7), 14)
    inner = np.linspace(np.radians(282.6), np.radians(77.4), 10)
    return np.concatenate([np.stack([np.cos(outer), np.sin(outer)], 1),
                           np.stack([0.45 + 0.8 * np.cos(inner), 0.8 * np.sin(inner)], 1)])


UNIT_SHAPES = [_unit_shape(family) for family in range(NUM_FAMILIES)]


def _texture_mask(texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) bool: where the darker second colour of a texture goes."""
    y, x = np.mgrid[0:size, 0:size]
    x, y = x + int(rng.integers(6)), y + int(rng.integers(6))
    if texture == "solid":
        return np.zeros((size, size), bool)
    if texture == "striped":
        return (x + y) // 3 % 2 == 0
    if texture == "dotted":
        return (x % 5 < 2) & (y % 5 < 2)
    return (x // 3 + y // 3) % 2 == 0


def _allocate(counts: Sequence[int], num_images: int, rng: np.random.Generator) -> List[List[int]]:
    """Classes (by rank) present in each image: class k in counts[k] distinct images, each time
    the least-loaded ones (random tie-break), at most MAX_CLASSES_PER_IMAGE per image. Rarest
    classes first, so that when images run out of room a frequent class loses images, not them."""
    load = np.zeros(num_images)
    present: List[List[int]] = [[] for _ in range(num_images)]
    for rank in sorted(range(len(counts)), key=lambda rank: (counts[rank], rank)):
        count = counts[rank]
        order = np.argsort(load + rng.random(num_images), kind="stable")
        chosen = [i for i in order if load[i] < MAX_CLASSES_PER_IMAGE][:count]
        for image in chosen:
            load[image] += 1
            present[image].append(rank)
    return present


def _place(objects: List[Tuple[SynthClass, float]], size: int, rng: np.random.Generator):
    """Non-overlapping polygons inside the image: yields (class, (V, 2) polygon in pixels).
    An object that does not fit after shrinking is left out."""
    boxes: List[Tuple[float, float, float, float]] = []
    for cls, diameter in sorted(objects, key=lambda item: -item[1]):
        for attempt in range(60):
            if attempt and attempt % 20 == 0:
                diameter *= 0.75
            angle, aspect = rng.uniform(0, 2 * np.pi), rng.uniform(0.8, 1.25)
            rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            polygon = (UNIT_SHAPES[cls.family] * [aspect, 1 / aspect]) @ rotation.T * (diameter / 2)
            low, high = polygon.min(0), polygon.max(0)
            centre = rng.uniform(1 - low, size - 1 - high) if np.all(high - low < size - 2) else None
            if centre is None:
                continue
            x0, y0 = centre + low
            x1, y1 = centre + high
            if all(x0 > bx1 + 1 or x1 < bx0 - 1 or y0 > by1 + 1 or y1 < by0 - 1
                   for bx0, by0, bx1, by1 in boxes):
                boxes.append((x0, y0, x1, y1))
                yield cls, np.round(polygon + centre, 2)
                break


def _render(placed, size: int, texture_contrast: float, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 image: a low-saturation noisy background and textured objects."""
    background = rng.uniform(90, 200) + rng.uniform(-25, 25, 3)
    image = np.broadcast_to(background, (size, size, 3)).copy()
    for cls, polygon in placed:
        hue = (cls.hue + rng.uniform(-0.01, 0.01)) % 1.0
        colour = 255 * np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 0.85), rng.uniform(0.75, 0.95)))
        canvas = Image.new("L", (size, size))
        ImageDraw.Draw(canvas).polygon([tuple(point) for point in polygon], fill=1)
        inside = np.asarray(canvas, bool)
        dark = _texture_mask(cls.texture, size, rng)
        image[inside & ~dark] = colour
        image[inside & dark] = (1 - texture_contrast) * colour
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _polygon_area(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _build_split(spec: SynthSpec, counts: Sequence[int], classes: List[SynthClass],
                 category_ids: Sequence[int], num_images: int, first_image_id: int,
                 first_annotation_id: int, image_dir: Path, split: str,
                 rng: np.random.Generator) -> Tuple[List[dict], List[dict]]:
    """Render one split's images into `image_dir`; return its LVIS `images` and `annotations`.
    `counts[r]`: images planned for the class of rank r; `category_ids[r]`: its category id."""
    images, annotations = [], []
    for index, ranks in enumerate(_allocate(counts, num_images, rng)):
        image_id = first_image_id + index
        objects = []
        for rank in sorted(ranks, reverse=True):  # rarest first: they are placed first
            copies = 1 + int(rng.random() < spec.extra_instance_prob)
            objects += [(classes[rank], rng.uniform(*OBJECT_SIZE) * spec.image_size) for _ in range(copies)]
        placed = list(_place(objects, spec.image_size, rng))
        file_name = f"{image_id:012d}.png"
        Image.fromarray(_render(placed, spec.image_size, spec.texture_contrast, rng)).save(image_dir / file_name, compress_level=1)
        present = {category_ids[cls.rank] for cls, _ in placed}
        draws = rng.random(len(classes))
        images.append({
            "id": image_id, "height": spec.image_size, "width": spec.image_size,
            "coco_url": f"{split}/{file_name}",
            "neg_category_ids": [cid for cid in range(1, len(classes) + 1)
                                 if cid not in present and draws[cid - 1] < spec.neg_fraction],
            "not_exhaustive_category_ids": [],
        })
        for cls, polygon in placed:
            (x0, y0), (x1, y1) = polygon.min(0), polygon.max(0)
            annotations.append({
                "id": first_annotation_id + len(annotations), "image_id": image_id,
                "category_id": category_ids[cls.rank],
                "segmentation": [polygon.reshape(-1).tolist()], "area": round(_polygon_area(polygon), 2),
                "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
            })
    return images, annotations


def _categories(classes: List[SynthClass], category_ids: Sequence[int], train_annotations: List[dict],
                thresholds: Tuple[int, int]) -> List[dict]:
    """LVIS categories, by id, with training image and instance counts and frequency group."""
    images_of: Dict[int, set] = {cid: set() for cid in category_ids}
    instances_of = dict.fromkeys(category_ids, 0)
    for annotation in train_annotations:
        images_of[annotation["category_id"]].add(annotation["image_id"])
        instances_of[annotation["category_id"]] += 1
    categories = []
    for cls in sorted(classes, key=lambda c: category_ids[c.rank]):
        cid = category_ids[cls.rank]
        shape, texture = SHAPES[cls.family], cls.texture
        categories.append({
            "id": cid, "name": cls.name, "synonyms": [cls.name],
            "def": f"a {texture} {shape}, hue {cls.hue:.3f} (synthetic; family {shape}, member {cls.member})",
            "frequency": frequency_group(len(images_of[cid]), thresholds),
            "image_count": len(images_of[cid]), "instance_count": instances_of[cid],
        })
    return categories


def generate(spec: SynthSpec, out: Path) -> Dict[str, Any]:
    """Write the set to `out` (layout: `SyntheticLayout`), which must not exist or be empty; the
    set appears there whole or not at all. Returns a summary (counts per split and group)."""
    spec.check()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty: choose a new --out (nothing was written)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as error:
        raise UserError(f"{out}: cannot create the folder ({error.strerror})") from None
    try:
        summary = _write(spec, SyntheticLayout(staging))
        os.chmod(staging, 0o755)
        os.replace(staging, out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{out}: writing the set failed ({error.strerror}); nothing was written") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _write(spec: SynthSpec, layout: SyntheticLayout) -> Dict[str, Any]:
    rng = np.random.default_rng(spec.seed)
    classes = make_classes(spec.num_classes, spec.hue_step, spec.hue_offset)
    by_name = sorted(classes, key=lambda c: c.name)  # ids in name order, as LVIS's are
    category_ids = [0] * len(classes)
    for position, cls in enumerate(by_name):
        category_ids[cls.rank] = position + 1
    thresholds = frequency_thresholds(spec.num_train_images)
    train_counts = list(spec.train_counts) if isinstance(spec, LvisProfileSpec) else train_image_counts(spec)
    val_counts = [min(spec.num_val_images, max(spec.min_val_images,
                                               round(count * spec.num_val_images / spec.num_train_images)))
                  for count in train_counts]
    splits = {}
    first_image_id, first_annotation_id = 1, 1
    for split, counts, num_images in (("train", train_counts, spec.num_train_images),
                                      ("val", val_counts, spec.num_val_images)):
        layout.image_dir(split).mkdir(parents=True)
        splits[split] = _build_split(spec, counts, classes, category_ids, num_images, first_image_id,
                                     first_annotation_id, layout.image_dir(split), split, rng)
        first_image_id += num_images
        first_annotation_id += len(splits[split][1])
    categories = _categories(classes, category_ids, splits["train"][1], thresholds)
    info = {"description": "seesaw-suite synthetic long-tailed set in LVIS v1 format",
            "spec": asdict(spec), "frequency_thresholds": {"rare_max": thresholds[0], "common_max": thresholds[1]}}
    for split, (images, annotations) in splits.items():
        dataset = {"info": info, "licenses": [], "categories": categories, "images": images,
                   "annotations": annotations}
        json_file = layout.split(split).json_file
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(dataset, separators=(",", ":")))
    groups = {group: sum(c["frequency"] == group for c in categories) for group in ("r", "c", "f")}
    return {"num_train_images": spec.num_train_images, "num_val_images": spec.num_val_images,
            "num_classes": spec.num_classes, "groups": groups,
            "train_instances": len(splits["train"][1]), "val_instances": len(splits["val"][1])}
