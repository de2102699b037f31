"""`suite data stats`: a set's long-tail statistics against a hand computation, the generator's own
counts and LVIS v1's split from the running Detectron2; errors as one line."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from suite.cli import main
from suite.data.lvis_reference import (BASELINE_FILE, BASELINE_QUANTILES, IMAGE_COUNT_KEYS, baseline_content,
                                       load_baseline, lvis_v1_metadata_statistics, same_baseline)
from suite.data.stats import class_statistics, dataset_statistics
from suite.data.synth import SynthSpec, frequency_group, frequency_thresholds, generate, group_sizes, lvis_profile_spec

from data_helpers import lay_out_like_lvis_v1, read, small_set

SQUARE = [[0, 0, 4, 0, 4, 4, 0, 4]]


def hand_set(root: Path) -> Path:
    """6 training images; category 1 (rare) in image 1 twice, 2 (rare) in images 1-3, 3 (common)
    in 2-5, 4 (frequent) in 1-6: image counts 1, 3, 4, 6; 2 + 3 + 4 + 6 = 15 instances."""
    placements = {1: [1, 1], 2: [1, 2, 3], 3: [2, 3, 4, 5], 4: [1, 2, 3, 4, 5, 6]}
    pairs = [(category_id, image_id) for category_id, image_ids in placements.items() for image_id in image_ids]
    annotations = [{"id": index, "image_id": image_id, "category_id": category_id, "bbox": [0, 0, 4, 4],
                    "area": 16, "segmentation": SQUARE} for index, (category_id, image_id) in enumerate(pairs, start=1)]
    train = {
        "images": [{"id": image_id, "height": 8, "width": 8, "coco_url": f"train/{image_id:012d}.png",
                    "neg_category_ids": [], "not_exhaustive_category_ids": []} for image_id in range(1, 7)],
        "annotations": annotations,
        "categories": [{"id": category_id, "name": f"class{category_id}", "frequency": frequency}
                       for category_id, frequency in zip((1, 2, 3, 4), "rrcf")],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "lvis_v1_train.json").write_text(json.dumps(train))
    return root


def test_statistics_of_a_hand_made_set(tmp_path):
    stats = dataset_statistics(str(hand_set(tmp_path / "set")))
    assert stats["num_classes"] == 4 and stats["groups"] == {"r": 2, "c": 1, "f": 1}
    assert (stats["num_images"], stats["num_instances"], stats["instances_per_image"]) == (6, 15, 2.5)
    assert (stats["image_count_min"], stats["image_count_max"], stats["image_count_ratio"]) == (1, 6, 6.0)
    assert stats["image_count_sum"] == 14 and stats["classes_without_images"] == 0
    assert stats["rarest_pressure"] == 14.0  # 14 / 1
    assert stats["median_rare_pressure"] == 7.0  # 14 / median(1, 3)


def test_a_class_without_images_and_inconsistent_input():
    stats = class_statistics({1: "r", 2: "f"}, {1: 0, 2: 5})
    assert stats["classes_without_images"] == 1 and stats["image_count_min"] == 0
    assert stats["image_count_ratio"] is None and stats["rarest_pressure"] is None
    assert stats["median_rare_pressure"] is None  # the median rare class has no image
    assert class_statistics({1: "r"}, None)["image_count_sum"] is None
    with pytest.raises(ValueError, match="not the same categories"):
        class_statistics({1: "r", 2: "f"}, {1: 3})
    with pytest.raises(ValueError, match="not r/c/f"):
        class_statistics({1: "x"}, {1: 3})


def test_a_generated_set_agrees_with_the_generators_counts(tmp_path, monkeypatch):
    layout = small_set(tmp_path / "set")
    categories = read(layout.split("train").json_file)["categories"]
    counts = [category["image_count"] for category in categories]  # written by the generator
    rare = sorted(category["image_count"] for category in categories if category["frequency"] == "r")
    stats = dataset_statistics(str(tmp_path / "set"))
    assert (stats["image_count_min"], stats["image_count_max"]) == (min(counts), max(counts))
    assert stats["image_count_sum"] == sum(counts)
    assert stats["num_instances"] == sum(category["instance_count"] for category in categories)
    assert len(rare) % 2 == 1  # so the median is the middle one
    assert stats["median_rare_pressure"] == pytest.approx(sum(counts) / rare[len(rare) // 2])

    datasets = tmp_path / "datasets"  # the same set laid out as LVIS v1 under $DETECTRON2_DATASETS
    lay_out_like_lvis_v1(layout, datasets)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets))
    lvis_stats = dataset_statistics("lvis_v1")
    assert {key: value for key, value in lvis_stats.items() if key != "source"} == {
        key: value for key, value in stats.items() if key != "source"}


def has_image_counts() -> bool:
    from detectron2.data.datasets.lvis import get_lvis_instances_meta

    return "class_image_count" in get_lvis_instances_meta("lvis_v1")  # not in v0.6


def test_lvis_v1_from_detectron2_metadata(tmp_path):
    stats = lvis_v1_metadata_statistics()
    assert stats["num_classes"] == 1203 and stats["groups"] == {"r": 337, "c": 461, "f": 405}  # LVIS v1's split
    assert stats["num_images"] is None and stats["instances_per_image"] is None  # in no Detectron2 metadata
    # LVIS's rule: a rare class is in 1-10 training images; from the metadata or from the baseline
    assert stats["image_count_min"] >= 1 and stats["median_rare_pressure"] >= stats["image_count_sum"] / 10
    baseline = load_baseline()
    if has_image_counts():
        assert "baseline" not in stats["source"]
        assert {key: stats[key] for key in IMAGE_COUNT_KEYS} == {key: baseline["statistics"][key] for key in IMAGE_COUNT_KEYS}
    else:  # v0.6: the committed baseline's numbers, and the source line says so
        assert "no per-class image counts" in stats["source"] and "baselines/lvis_v1_image_counts.json" in stats["source"]
        assert all(stats[key] == baseline["statistics"][key] for key in IMAGE_COUNT_KEYS)
        without = lvis_v1_metadata_statistics(tmp_path / "none.json")
        assert without["rarest_pressure"] is None and "baseline" not in without["source"]


def test_baseline_content_of_hand_made_counts():
    """Three rare classes (1, 2, 6 images), one common (40), two frequent (200, 1000)."""
    frequencies = {1: "r", 2: "r", 3: "r", 4: "c", 5: "f", 6: "f"}
    counts = {1: 1, 2: 6, 3: 2, 4: 40, 5: 1000, 6: 200}
    content = baseline_content(frequencies, counts)
    assert content["statistics"]["image_count_sum"] == 1249 and content["statistics"]["median_rare_pressure"] == 1249 / 2
    rare = content["groups"]["r"]
    assert rare["classes"] == 3 and len(rare["quantiles"]) == BASELINE_QUANTILES
    assert (rare["quantiles"][0], rare["quantiles"][25], rare["quantiles"][50], rare["quantiles"][75],
            rare["quantiles"][100]) == (1, 1.5, 2, 4, 6)  # linear between the order statistics 1, 2, 6
    assert content["groups"]["c"]["quantiles"] == [40.0] * BASELINE_QUANTILES
    assert content["groups"]["f"]["quantiles"][50] == 600
    with pytest.raises(ValueError, match="no category in frequency group 'c'"):
        baseline_content({1: "r", 2: "f"}, {1: 1, 2: 200})


def test_same_baseline_ignores_only_date_and_paths():
    baseline = load_baseline()
    redated = json.loads(json.dumps(baseline))
    redated["provenance"].update(derived_at="2000-01-01T00:00:00Z", suite_commit="0" * 40)
    assert same_baseline(baseline, redated)
    moved = json.loads(json.dumps(baseline))
    moved["groups"]["r"]["quantiles"][50] += 1
    assert not same_baseline(baseline, moved)
    other_source = json.loads(json.dumps(baseline))
    other_source["provenance"]["sources"][1]["sha256"] = "0" * 64
    assert not same_baseline(baseline, other_source)


def test_deriving_the_baseline_without_image_counts_is_one_line(tmp_path, capsys):
    if has_image_counts():
        pytest.skip("this Detectron2 has LVIS v1's image counts (tests/test_d2_current.py checks the baseline)")
    assert main(["data", "lvis-baseline", "--out", str(tmp_path / "baseline.json")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no per-class LVIS v1 image counts" in error and "SUITE_D2_SOURCE" in error
    assert not (tmp_path / "baseline.json").exists()


def test_cli_table_and_json(tmp_path, capsys):
    root = hand_set(tmp_path / "set")
    assert main(["data", "stats", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["statistic", str(root), "lvis_v1", "(Detectron2", "metadata)"]
    rows = {line[:34].strip(): line[34:].split() for line in lines[2:14]}
    assert rows["training instances"] == ["15", "n/a"] and rows["instances per image"] == ["2.5", "n/a"]
    assert rows["classes rare / common / frequent"] == ["2", "/", "1", "/", "1", "337", "/", "461", "/", "405"]
    assert rows["pressure on the median rare class"][0] == "7"
    assert main(["data", "stats", str(root), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "dataset_stats" and record["schema_version"] == 1
    assert [column["name"] for column in record["datasets"]] == [str(root), "lvis_v1 (Detectron2 metadata)"]
    assert record["datasets"][0]["rarest_pressure"] == 14.0
    other = hand_set(tmp_path / "other")  # two sets: a column each, LVIS last
    assert main(["data", "stats", str(root), str(other), "--json"]) == 0
    assert [column["name"] for column in json.loads(capsys.readouterr().out)["datasets"]] == [
        str(root), str(other), "lvis_v1 (Detectron2 metadata)"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path / "missing")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "no such data set folder" in captured.err
    corrupt = tmp_path / "corrupt"
    (corrupt / "annotations").mkdir(parents=True)
    (corrupt / "annotations" / "lvis_v1_train.json").write_text("{not json")
    assert main(["data", "stats", str(corrupt)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "lvis_v1_train.json: not valid JSON" in captured.err
    (corrupt / "annotations" / "lvis_v1_train.json").write_text(json.dumps({"images": []}))
    assert main(["data", "stats", str(corrupt)]) == 2
    assert "not an LVIS-format annotation file" in capsys.readouterr().err
    (corrupt / "annotations" / "lvis_v1_train.json").unlink()
    assert main(["data", "stats", str(corrupt)]) == 2
    assert "lvis_v1_train.json: no such file" in capsys.readouterr().err


def test_lvis_profile_is_at_least_five_times_closer_to_lvis_than_the_study_set(tmp_path):
    """`suite data stats` on the LVIS profile's training split and on the committed study's (the
    default SynthSpec's training split): at least 5 times the pressure on the rarest class. The
    LVIS profile is generated at 32 px with a 31-image validation split to keep the test short:
    neither changes which classes a training image holds (its image counts equal the plan,
    checked); the study's set at its own 128 px."""
    lvis_spec = replace(lvis_profile_spec(), image_size=32, num_val_images=31, min_val_images=1)
    generate(lvis_spec, tmp_path / "lvis")
    generate(SynthSpec(num_val_images=24, min_val_images=1), tmp_path / "study")
    lvis, study = (dataset_statistics(str(tmp_path / name)) for name in ("lvis", "study"))
    assert lvis["rarest_pressure"] >= 5 * study["rarest_pressure"]
    assert lvis["median_rare_pressure"] >= 5 * study["median_rare_pressure"]
    categories = read(tmp_path / "lvis" / "annotations" / "lvis_v1_train.json")["categories"]
    assert sorted((c["image_count"] for c in categories), reverse=True) == list(lvis_spec.train_counts)
    assert lvis["groups"] == group_sizes(lvis_spec.num_classes)  # LVIS's proportions, and LVIS's rule:
    thresholds = frequency_thresholds(lvis_spec.num_train_images)
    assert thresholds == (10, 100) and all(c["frequency"] == frequency_group(c["image_count"], thresholds)
                                           for c in categories)
