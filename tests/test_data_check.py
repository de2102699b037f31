"""Data checked before a run writes anything: one test per kind of bad data, each a one-line
error naming the file and the problem; the cache that spares a second run the image reads."""

import json
import os
import shutil

import pytest

from suite.cli import main
from suite.data.check import check_split, image_path
from suite.data.register import register_synthetic_lvis
from suite.data.synth import SynthSpec
from suite.errors import UserError

from data_helpers import read, small_set
from test_harness_cli import one_error_line

SET = SynthSpec(num_train_images=20, num_val_images=4, num_classes=4, image_size=64, seed=2, min_val_images=1)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return small_set(tmp_path_factory.mktemp("check") / "set", SET)


@pytest.fixture
def layout(pristine, tmp_path, monkeypatch):
    """A fresh copy of the set to break, and a private cache."""
    monkeypatch.setenv("SUITE_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(pristine.root, tmp_path / "set")
    return type(pristine)(tmp_path / "set")


def first_image(layout, split):
    dataset = read(layout.split(split).json_file)
    return dataset, dataset["images"][0], image_path(layout.image_root, dataset["images"][0])


def rewrite(layout, split, dataset):
    layout.split(split).json_file.write_text(json.dumps(dataset))


def refused(layout, *fragments):
    with pytest.raises(UserError) as error:
        register_synthetic_lvis(layout.root, prefix="check", check_files=True)
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_sound_set_passes(layout):
    register_synthetic_lvis(layout.root, prefix="check", check_files=True)


def test_missing_image(layout):
    _, image, path = first_image(layout, "train")
    os.remove(path)
    refused(layout, path, "no such image file", f"image {image['id']}", "lvis_v1_train.json")


def test_zero_byte_validation_image(layout):
    _, _, path = first_image(layout, "val")
    open(path, "w").close()
    refused(layout, path, "empty file")


def test_file_that_is_not_an_image(layout):
    _, _, path = first_image(layout, "val")
    with open(path, "w") as stream:
        stream.write("not a png")
    refused(layout, path, "not an image")


def test_image_size_differs_from_its_json(layout):
    dataset, image, path = first_image(layout, "train")
    image["width"] = 80
    rewrite(layout, "train", dataset)
    refused(layout, path, "is 64x64 pixels, its JSON says 80x64")


@pytest.mark.parametrize("bbox, problem", [
    (lambda x, y, w, h: [x + w, y, -w, h], "not positive"),
    (lambda x, y, w, h: [x, y, w, 0], "not positive"),
    (lambda x, y, w, h: [60.0, y, 10.0, h], "outside its 64x64 image"),
    (lambda x, y, w, h: [x, -5.0, w, h], "outside its 64x64 image"),
])
def test_bad_boxes(layout, bbox, problem):
    dataset = read(layout.split("train").json_file)
    annotation = dataset["annotations"][0]
    annotation["bbox"] = bbox(*annotation["bbox"])
    rewrite(layout, "train", dataset)
    refused(layout, "lvis_v1_train.json", f"annotation {annotation['id']}", problem)


def test_a_box_a_pixel_over_the_edge_passes(layout):
    dataset = read(layout.split("train").json_file)
    annotation = dataset["annotations"][0]
    annotation["bbox"] = [-0.5, 0.0, 64.9, 10.0]
    rewrite(layout, "train", dataset)
    register_synthetic_lvis(layout.root, prefix="check", check_files=True)


def test_training_split_without_annotations(layout):
    dataset = read(layout.split("train").json_file)
    dataset["annotations"] = []
    rewrite(layout, "train", dataset)
    refused(layout, "lvis_v1_train.json", "no annotations")


def test_second_check_reads_no_image_until_one_changes(layout):
    dataset = read(layout.split("train").json_file)
    check_split(dataset, layout.split("train").json_file, layout.image_root, "train")
    _, _, path = first_image(layout, "train")
    stat = os.stat(path)
    with open(path, "r+b") as stream:  # same size and time, content no longer an image
        stream.write(b"\0" * 16)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    check_split(dataset, layout.split("train").json_file, layout.image_root, "train")  # cached: not read
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(UserError, match="not an image"):
        check_split(dataset, layout.split("train").json_file, layout.image_root, "train")


def test_bad_validation_image_stops_train_before_anything_is_written(layout, tmp_path, capsys):
    _, _, path = first_image(layout, "val")
    open(path, "w").close()
    run_dir = tmp_path / "run"
    assert main(["train", "--loss", "ce", "--dataset", str(layout.root), "--output", str(run_dir)]) == 2
    one_error_line(capsys, path, "empty file")
    assert not run_dir.exists()


def test_data_check_command(layout, capsys):
    assert main(["data", "check", "--dataset", str(layout.root)]) == 0
    assert f"{SET.num_train_images} training images and the validation split checked" in capsys.readouterr().out
    _, _, path = first_image(layout, "train")
    os.remove(path)
    assert main(["data", "check", "--dataset", str(layout.root)]) == 2
    one_error_line(capsys, path, "no such image file")
