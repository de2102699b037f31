"""Registration with Detectron2 (the synthetic set and LVIS v1 laid out under
$DETECTRON2_DATASETS), and the errors a missing or corrupt data set gives."""

import json
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from suite.data.lvis_format import lvis_format_problem, read_lvis_json
from suite.data.register import register_dataset, register_lvis_v1, register_synthetic_lvis
from suite.errors import UserError

from data_helpers import SMALL, lay_out_like_lvis_v1, read, small_set


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return small_set(tmp_path_factory.mktemp("register") / "set")


def check_loaded(name, json_file, num_classes):
    dicts = DatasetCatalog.get(name)
    dataset = read(json_file)
    assert len(dicts) == len(dataset["images"])
    assert all(os.path.isfile(record["file_name"]) for record in dicts)
    annotations = [obj for record in dicts for obj in record["annotations"]]
    assert len(annotations) == len(dataset["annotations"])
    assert {obj["category_id"] for obj in annotations} <= set(range(num_classes))
    by_id = {image["id"]: image for image in dataset["images"]}
    assert all(record["neg_category_ids"] == by_id[record["image_id"]]["neg_category_ids"] for record in dicts)


def test_synthetic_set_registers_and_loads(small):
    registered = register_synthetic_lvis(small.root, prefix="test_synth")
    assert (registered.train, registered.val) == ("test_synth_train", "test_synth_val")
    assert registered.record() == {"name": "synthetic", "path": str(small.root.resolve()),
                                   "num_classes": SMALL.num_classes, "num_train_images": SMALL.num_train_images}
    categories = read(small.split("train").json_file)["categories"]
    for split in ("train", "val"):
        check_loaded(f"test_synth_{split}", small.split(split).json_file, SMALL.num_classes)
        metadata = MetadataCatalog.get(f"test_synth_{split}")
        assert metadata.thing_classes == [category["name"] for category in categories]
        assert metadata.class_image_count == [{"id": c["id"], "image_count": c["image_count"]} for c in categories]
        assert metadata.num_train_images == SMALL.num_train_images
        assert metadata.evaluator_type == "lvis"
        assert metadata.json_file == str(small.split(split).json_file)
        assert [c["frequency"] for c in metadata.lvis_categories] == [c["frequency"] for c in categories]
    # a second registration (another root) replaces the first
    assert register_dataset(str(small.root)).train == "synth_train"
    assert register_synthetic_lvis(small.root, prefix="test_synth").train == "test_synth_train"


def test_lvis_v1_layout_under_detectron2_datasets(small, tmp_path, monkeypatch):
    import detectron2.data.datasets.builtin  # noqa: F401  the builtin registration ran at import
    builtin_json = MetadataCatalog.get("lvis_v1_train").json_file
    datasets_root = tmp_path / "datasets"
    lay_out_like_lvis_v1(small, datasets_root)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets_root))
    assert not builtin_json.startswith(str(datasets_root))  # Detectron2 read the variable earlier
    registered = register_dataset("lvis_v1")
    assert (registered.train, registered.val, registered.name) == ("lvis_v1_train", "lvis_v1_val", "lvis_v1")
    assert registered.num_train_images == SMALL.num_train_images
    for split in ("train", "val"):
        json_file = datasets_root / "lvis" / f"lvis_v1_{split}.json"
        assert MetadataCatalog.get(f"lvis_v1_{split}").json_file == str(json_file)
        check_loaded(f"lvis_v1_{split}", json_file, SMALL.num_classes)
    folders = {os.path.basename(os.path.dirname(r["file_name"])) for r in DatasetCatalog.get("lvis_v1_val")}
    assert folders == {"train2017", "val2017"}


@pytest.mark.parametrize("remove, expected", [
    ("lvis/lvis_v1_train.json", ["lvis/lvis_v1_train.json", "https://www.lvisdataset.org/dataset"]),
    ("lvis/lvis_v1_val.json", ["lvis/lvis_v1_val.json", "https://www.lvisdataset.org/dataset"]),
    ("coco/val2017", ["coco/val2017", "COCO 2017", "cocodataset.org"]),
])
def test_missing_lvis_v1_file_names_the_path_and_where_to_get_it(small, tmp_path, remove, expected):
    root = tmp_path / "datasets"
    lay_out_like_lvis_v1(small, root)
    target = root / remove
    if target.is_dir():
        for path in target.iterdir():
            path.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(UserError) as error:
        register_lvis_v1(root)
    message = str(error.value)
    assert "\n" not in message and all(part in message for part in expected)
    assert str(root / remove) in message


def test_missing_detectron2_datasets_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match=f"expected {tmp_path / 'nowhere' / 'lvis' / 'lvis_v1_train.json'}"):
        register_dataset("lvis_v1")


def test_missing_synthetic_folder_or_file(small, tmp_path):
    with pytest.raises(UserError, match="no such data set folder.*suite data synth"):
        register_synthetic_lvis(tmp_path / "absent")
    (tmp_path / "annotations").mkdir()
    with pytest.raises(UserError, match=f"{tmp_path / 'annotations' / 'lvis_v1_train.json'}: no such file"):
        register_synthetic_lvis(tmp_path)


def lvis_like(small):
    return read(small.split("val").json_file)


@pytest.mark.parametrize("corrupt, problem", [
    (lambda d: d.pop("annotations"), "no 'annotations' at the top level"),
    (lambda d: d.__setitem__("images", {}), "'images' is not a list"),
    (lambda d: d["categories"][0].pop("frequency"), "category 1 lacks 'frequency'"),
    (lambda d: d["categories"][0].__setitem__("frequency", "x"), "frequency 'x', not r/c/f"),
    (lambda d: d["categories"][0].__setitem__("id", 99), "category ids are not 1.."),
    (lambda d: d["images"][0].pop("neg_category_ids"), "lacks 'neg_category_ids'"),
    (lambda d: d["annotations"][0].__setitem__("segmentation", [[1, 2, 3, 4]]), "polygons of >= 3 points"),
    (lambda d: d["annotations"][0].__setitem__("image_id", -5), "unknown image -5"),
    (lambda d: d["annotations"][1].__setitem__("id", d["annotations"][0]["id"]), "annotation ids are not unique"),
])
def test_not_lvis_format_is_one_line_naming_file_and_problem(small, tmp_path, corrupt, problem):
    dataset = lvis_like(small)
    assert lvis_format_problem(dataset) == ""
    corrupt(dataset)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(dataset))
    with pytest.raises(UserError) as error:
        read_lvis_json(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not an LVIS-format annotation file: ") and problem in message
    assert "\n" not in message


def test_unparsable_json_is_one_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(UserError, match=f"^{path}: not valid JSON") as error:
        read_lvis_json(path)
    assert "\n" not in str(error.value)


def test_corrupt_file_in_a_synthetic_set_is_refused_at_registration(small, tmp_path):
    root = tmp_path / "set"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "lvis_v1_train.json").write_text(small.split("train").json_file.read_text())
    (root / "annotations" / "lvis_v1_val.json").write_text("[]")
    with pytest.raises(UserError, match="lvis_v1_val.json: not an LVIS-format annotation file: the top level"):
        register_synthetic_lvis(root, prefix="test_corrupt")
    assert "test_corrupt_train" not in DatasetCatalog.list()
