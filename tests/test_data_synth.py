"""The generated set: LVIS v1 format, deterministic, long-tailed with populated frequency groups,
rare classes in val, annotations that match the pixels."""

import colorsys
import os
from collections import defaultdict

import numpy as np
import pytest
from lvis import LVIS
from PIL import Image
from pycocotools import mask as mask_utils

from suite.data.lvis_format import lvis_format_problem
from suite.data.synth import (SHAPES, LvisProfileSpec, SynthSpec, frequency_thresholds, generate, group_sizes,
                              lvis_profile_spec, lvis_quantile_counts, make_classes)

from data_helpers import SMALL, read, small_set


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return small_set(tmp_path_factory.mktemp("synth") / "set")


@pytest.fixture(scope="module")
def default_set(tmp_path_factory):
    """The CLI's default set (400 + 100 images of 128 px, 24 classes)."""
    return small_set(tmp_path_factory.mktemp("synth") / "default", SynthSpec())


def files_of(root):
    return {path.relative_to(root): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_same_seed_same_bytes_other_seed_other_set(small, tmp_path):
    again = small_set(tmp_path / "again")
    assert files_of(again.root) == files_of(small.root)
    other = small_set(tmp_path / "other", SynthSpec(**{**SMALL.__dict__, "seed": 4}))
    assert read(other.split("train").json_file)["annotations"] != read(small.split("train").json_file)["annotations"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_official_lvis_api_loads_both_splits(small, split):
    json_file = small.split(split).json_file
    lvis = LVIS(str(json_file))
    dataset = read(json_file)
    assert lvis_format_problem(dataset) == ""
    assert len(lvis.get_img_ids()) == (SMALL.num_train_images if split == "train" else SMALL.num_val_images)
    assert len(lvis.get_cat_ids()) == SMALL.num_classes
    assert len(lvis.get_ann_ids()) == len(dataset["annotations"]) > 0


def test_category_counts_and_frequency_follow_the_documented_rule(small):
    train, val = read(small.split("train").json_file), read(small.split("val").json_file)
    assert train["categories"] == val["categories"]
    images_of, instances_of = defaultdict(set), defaultdict(int)
    for annotation in train["annotations"]:
        images_of[annotation["category_id"]].add(annotation["image_id"])
        instances_of[annotation["category_id"]] += 1
    rare_max, common_max = 1, 10  # 40 training images: common_max = 40 // 4, rare_max = 10 // 10
    assert train["info"]["frequency_thresholds"] == {"rare_max": rare_max, "common_max": common_max}
    for category in train["categories"]:
        count = len(images_of[category["id"]])
        assert category["image_count"] == count >= 1
        assert category["instance_count"] == instances_of[category["id"]]
        expected = "r" if count <= rare_max else "c" if count <= common_max else "f"
        assert category["frequency"] == expected, category
        assert category["synonyms"] == [category["name"]] and category["def"]


@pytest.mark.parametrize("num_train_images, expected", [
    (20, (1, 5)), (40, (1, 10)), (100, (2, 25)), (399, (9, 99)), (400, (10, 100)), (100_170, (10, 100))])
def test_frequency_thresholds(num_train_images, expected):
    assert frequency_thresholds(num_train_images) == expected


def test_group_sizes_follow_lvis_v1_proportions():
    assert group_sizes(1203) == {"r": 337, "c": 461, "f": 405}
    assert group_sizes(24) == {"r": 7, "c": 9, "f": 8}
    assert group_sizes(3) == {"r": 1, "c": 1, "f": 1}


@pytest.mark.parametrize("num_train_images, num_classes", [(20, 3), (60, 12), (150, 30)])
def test_every_group_populated_and_every_class_in_val(tmp_path, num_train_images, num_classes):
    spec = SynthSpec(num_train_images=num_train_images, num_val_images=30, num_classes=num_classes,
                     image_size=48, seed=num_classes)
    layout = small_set(tmp_path / "set", spec)
    categories = read(layout.split("train").json_file)["categories"]
    assert {category["frequency"] for category in categories} == {"r", "c", "f"}
    val_images = defaultdict(set)
    for annotation in read(layout.split("val").json_file)["annotations"]:
        val_images[annotation["category_id"]].add(annotation["image_id"])
    assert all(len(val_images[category["id"]]) >= spec.min_val_images for category in categories)


def test_default_set_is_long_tailed_with_rare_classes_in_val(default_set):
    train, val = read(default_set.split("train").json_file), read(default_set.split("val").json_file)
    categories = train["categories"]
    groups = {group: [c for c in categories if c["frequency"] == group] for group in "rcf"}
    assert {group: len(members) for group, members in groups.items()} == {"r": 7, "c": 9, "f": 8}
    assert max(c["image_count"] for c in groups["r"]) <= 10 < min(c["image_count"] for c in groups["c"])
    assert max(c["image_count"] for c in groups["c"]) <= 100 < min(c["image_count"] for c in groups["f"])
    frequent_instances = sum(c["instance_count"] for c in groups["f"])
    rare_instances = sum(c["instance_count"] for c in groups["r"])
    assert frequent_instances > 20 * rare_instances
    val_images = defaultdict(set)
    for annotation in val["annotations"]:
        val_images[annotation["category_id"]].add(annotation["image_id"])
    assert all(len(val_images[c["id"]]) >= 3 for c in groups["r"])
    # look-alike families: every rare class shares its shape with a frequent class
    shape = {c["id"]: c["name"].split("_")[0] for c in categories}
    frequent_shapes = {shape[c["id"]] for c in groups["f"]}
    assert all(shape[c["id"]] in frequent_shapes for c in groups["r"])


def test_images_annotations_and_negatives_are_consistent(small):
    for split in ("train", "val"):
        dataset = read(small.split(split).json_file)
        present = defaultdict(set)
        for annotation in dataset["annotations"]:
            present[annotation["image_id"]].add(annotation["category_id"])
            polygon = np.array(annotation["segmentation"][0]).reshape(-1, 2)
            x, y, w, h = annotation["bbox"]
            assert np.allclose([x, y, x + w, y + h], [*polygon.min(0), *polygon.max(0)], atol=0.011)
            assert 0 <= x and 0 <= y and x + w <= SMALL.image_size and y + h <= SMALL.image_size
            rle = mask_utils.frPyObjects(annotation["segmentation"], SMALL.image_size, SMALL.image_size)
            assert annotation["area"] == pytest.approx(float(mask_utils.area(rle).sum()), rel=0.25)
        for image in dataset["images"]:
            # Detectron2's loader: image_root (ending in a separator) + the last two parts of coco_url
            assert os.path.isfile(small.image_root + image["coco_url"])
            assert image["coco_url"].split("/")[0] == split
            assert not set(image["neg_category_ids"]) & present[image["id"]]
            assert image["not_exhaustive_category_ids"] == []
            assert (image["height"], image["width"]) == (SMALL.image_size, SMALL.image_size)
        assert any(image["neg_category_ids"] for image in dataset["images"])


def test_solid_objects_show_their_class_hue_inside_their_mask(small):
    """The polygons match the drawn pixels: inside a solid class's mask the hue is the class's."""
    hue_of = {cls.name: cls.hue for cls in make_classes(SMALL.num_classes, SMALL.hue_step)}
    dataset = read(small.split("train").json_file)
    names = {category["id"]: category["name"] for category in dataset["categories"]}
    urls = {image["id"]: image["coco_url"] for image in dataset["images"]}
    checked = 0
    for annotation in dataset["annotations"]:
        name = names[annotation["category_id"]]
        if "_solid" not in name or annotation["area"] < 60:
            continue
        pixels = np.asarray(Image.open(small.root / "images" / urls[annotation["image_id"]]), float) / 255
        rle = mask_utils.merge(mask_utils.frPyObjects(annotation["segmentation"], SMALL.image_size, SMALL.image_size))
        inside = mask_utils.decode(rle).astype(bool)
        hue = colorsys.rgb_to_hsv(*np.median(pixels[inside], axis=0))[0]
        assert min(abs(hue - hue_of[name]), 1 - abs(hue - hue_of[name])) < 0.03, name
        checked += 1
    assert checked >= 5


def test_classes_form_look_alike_families():
    classes = make_classes(24, hue_step=0.035)
    assert len({cls.name for cls in classes}) == 24
    for family in range(8):
        members = [cls for cls in classes if cls.family == family]
        assert [cls.rank for cls in members] == [family, family + 8, family + 16]
        assert all(cls.name.startswith(SHAPES[family]) for cls in members)
        assert len({cls.texture for cls in members}) == 3
        assert max(cls.hue for cls in members) - min(cls.hue for cls in members) < 0.1


@pytest.mark.parametrize("field, value, message", [
    ("num_train_images", 5, "num_train_images"), ("num_classes", 65, "num_classes"),
    ("image_size", 8, "image_size"), ("min_val_images", 0, "min_val_images"),
    ("neg_fraction", 1.5, "neg_fraction"), ("hue_step", -0.1, "hue_step"), ("hue_offset", 1.0, "hue_offset")])
def test_bad_spec_is_a_value_error_and_writes_nothing(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        generate(SynthSpec(**{**SMALL.__dict__, field: value}), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_hue_offset_gives_classes_of_their_own():
    """The pretraining set's classes (suite.workflows.pretrain): same shapes and textures, every hue
    turned, so that no turned class has the shape, texture and (within 0.03) hue of an unturned one."""
    base, turned = make_classes(24, 0.035), make_classes(24, 0.035, hue_offset=0.0625)
    for old, new in zip(base, turned):
        assert (new.family, new.texture) == (old.family, old.texture)
        assert (new.hue - old.hue) % 1.0 == pytest.approx(0.0625)
    for new in turned:
        for old in base:
            distance = min(abs(new.hue - old.hue), 1 - abs(new.hue - old.hue))
            assert (old.family, old.texture) != (new.family, new.texture) or distance > 0.03, (new.name, old.name)


def test_lvis_quantile_counts_by_hand():
    """8 classes: 2 rare, 3 common, 3 frequent (group_sizes); each group's quantiles here are its
    range (levels 0 and 1), so class i of n gets bottom + (top - bottom) (1 - (i + 0.5) / n)."""
    groups = {"r": {"quantiles": [1, 10]}, "c": {"quantiles": [11, 100]}, "f": {"quantiles": [101, 1001]}}
    assert group_sizes(8) == {"r": 2, "c": 3, "f": 3}
    # f: 101 + 900 (5/6, 1/2, 1/6); c: 11 + 89 (5/6, 1/2, 1/6) = 85.2, 55.5 (up), 25.8; r: 1 + 9 (3/4, 1/4)
    assert lvis_quantile_counts(8, groups) == [851, 551, 251, 85, 56, 26, 8, 3]


def test_lvis_profile_spec_checks_its_counts():
    spec = lvis_profile_spec()
    assert isinstance(spec, LvisProfileSpec) and len(spec.train_counts) == spec.num_classes
    # as many training images as give LVIS v1's classes per image (sum of counts / images)
    assert abs(sum(spec.train_counts) / spec.num_train_images - 360952 / 100170) < 1e-3
    for counts, message in [((5, 3), "2 counts for 3 classes"), ((5, 6, 1), "descending"), ((5, 3, 0), "positive"),
                            ((30, 3, 1), "in 30 of 20 training images")]:
        with pytest.raises(ValueError, match=message):
            LvisProfileSpec(num_train_images=20, num_val_images=4, num_classes=3, min_val_images=1,
                            train_counts=counts).check()
    with pytest.raises(ValueError, match="more than 5 classes in each"):
        LvisProfileSpec(num_train_images=20, num_val_images=4, num_classes=6, min_val_images=1,
                        train_counts=(20,) * 5 + (1,)).check()


def test_lvis_profile_refuses_images_on_the_command_line(tmp_path, capsys):
    from suite.cli import main

    assert main(["data", "synth", "--profile", "lvis", "--images", "500", "--out", str(tmp_path / "set")]) == 2
    assert "--images: the LVIS profile derives its training images" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()
