"""Bootstrap over validation images: a replicate equals the official LVISEval run on the resampled
set written out as its own LVIS file (each drawn image a new copy), and the record's shape."""

import json
import math

import numpy as np
import pytest
from lvis import LVIS

from suite.evaluation import bootstrap
from suite.evaluation.detection_files import RUN_DETECTIONS
from suite.evaluation.evaluate import evaluate_lvis_results
from suite.schema import GROUP_METRICS

from data_helpers import read, small_set
from test_evaluation_official import ground_truth_as_results


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    layout = small_set(tmp_path_factory.mktemp("bootstrap") / "set")
    json_file = layout.split("val").json_file
    return json_file, read(json_file)


def noisy_results(dataset, seed=0):
    """Ground truth with shifted boxes and random scores, a third of it dropped, plus a wrong
    class: an imperfect detector whose AP varies with the images drawn."""
    rng = np.random.default_rng(seed)
    results = []
    num_classes = len(dataset["categories"])
    for result in ground_truth_as_results(dataset):
        if rng.random() < 0.33:
            continue
        x, y, w, h = result["bbox"]
        shift = rng.normal(0, 0.15 * w)
        result["bbox"] = [x + shift, y, w, h]
        result["score"] = float(rng.random())
        results.append(result)
        if rng.random() < 0.3:
            results.append(dict(result, category_id=int(rng.integers(1, num_classes + 1)), score=float(rng.random())))
    return results


def resampled_set(dataset, results, draw):
    """The images of `draw` (indices into the sorted image ids) as a new LVIS set and its results,
    image k of the draw renamed k + 1, with its annotations and detections copied."""
    ids = sorted(image["id"] for image in dataset["images"])
    images = {image["id"]: image for image in dataset["images"]}
    new_images, annotations, new_results = [], [], []
    for position, index in enumerate(draw, start=1):
        old = ids[index]
        new_images.append(dict(images[old], id=position))
        for annotation in dataset["annotations"]:
            if annotation["image_id"] == old:
                annotations.append(dict(annotation, image_id=position, id=len(annotations) + 1))
        new_results += [dict(r, image_id=position) for r in results if r["image_id"] == old]
    return dict(dataset, images=new_images, annotations=annotations), new_results


def test_a_replicate_is_lvis_eval_on_the_resampled_set(val, tmp_path):
    json_file, dataset = val
    results = noisy_results(dataset)
    reps = bootstrap.replicates(LVIS(str(json_file)), results, "segm", resamples=3, seed=7)
    draws = bootstrap.resample_indices(len(dataset["images"]), 3, seed=7)
    for b in (0, 2):
        new_set, new_results = resampled_set(dataset, results, draws[b])
        path = tmp_path / f"resample{b}.json"
        path.write_text(json.dumps(new_set))
        expected = evaluate_lvis_results(LVIS(str(path)), new_results, ["segm"])["segm"]
        for metric in GROUP_METRICS:
            assert reps[metric][b] == pytest.approx(expected[metric], abs=1e-9, nan_ok=True), (b, metric)
    assert len({round(value, 9) for value in reps["AP"]}) > 1  # the resamples differ


def test_record_is_written_and_paired_across_runs(val, tmp_path):
    json_file, dataset = val
    run_dir = tmp_path / "run"
    (run_dir / "inference").mkdir(parents=True)
    (run_dir / RUN_DETECTIONS).write_text(json.dumps(noisy_results(dataset, seed=1)))
    record = bootstrap.write_run_bootstrap(run_dir, json_file, resamples=20, seed=0)
    assert json.loads((run_dir / "bootstrap.json").read_text())["kind"] == "ap_bootstrap"
    assert set(record["replicates"]) == {"bbox", "segm"}
    assert all(len(values) == 20 for task in record["replicates"].values() for values in task.values())
    se = record["se"]["segm"]["APr"]
    assert math.isfinite(se) and se > 0
    assert se == pytest.approx(np.std(record["replicates"]["segm"]["APr"], ddof=1))
    other = bootstrap.bootstrap_record(json_file, noisy_results(dataset, seed=2), resamples=20, seed=0)
    assert other["image_ids_sha256"] == record["image_ids_sha256"]
    with pytest.raises(ValueError, match="no detections"):
        bootstrap.write_run_bootstrap(tmp_path / "empty", json_file)
