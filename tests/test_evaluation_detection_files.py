"""Detection files read for a protocol (`suite.evaluation.detection_files`): one-line refusals of
what a protocol does not evaluate, `suite eval --detections`, and a run's bootstrap taking each
protocol's detections from its own file."""

import json

import pytest
from data_helpers import read, small_set
from test_evaluation_bootstrap import noisy_results

from suite.cli import main
from suite.evaluation import bootstrap
from suite.evaluation.detection_files import (RUN_CLASS_TOPK_DETECTIONS, RUN_DETECTIONS, check_limits,
                                              read_detections)
from suite.evaluation.evaluate import evaluate_lvis_results
from suite.evaluation.protocols import get_protocol


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("detections") / "set"
    json_file = small_set(root).split("val").json_file
    return root, json_file, read(json_file)


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert all(fragment in err[0] for fragment in fragments), err[0]


@pytest.mark.parametrize("content, fragment", [
    (None, "no such detection file"),
    ("[{", "not a JSON detection file"),
    ('{"image_id": 1}', "a JSON list of detections, not a dict"),
    ('[{"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1]}]', "detection 0 is not an LVIS result"),
    ('[{"image_id": 1, "category_id": 2, "score": 0.5}]', "detection 0 is not an LVIS result"),
])
def test_a_file_that_is_not_detections_is_named(tmp_path, content, fragment):
    path = tmp_path / "detections.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=fragment) as error:
        read_detections(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def same(a, b) -> bool:
    """Equal, NaN equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def detection(image_id, category_id, score=0.5):
    return {"image_id": image_id, "category_id": category_id, "score": score, "bbox": [0, 0, 4, 4]}


def test_each_protocol_refuses_more_than_its_limit():
    standard, fixed = get_protocol("standard"), get_protocol("fixed")
    per_image = [detection(7, 1 + k % 5) for k in range(301)]  # 301 on one image, 61 per category
    check_limits(per_image, fixed, "f.json")  # no limit per image
    with pytest.raises(ValueError, match="f.json: image 7 has 301 detections, but the standard protocol evaluates "
                                         "at most 300 per image"):
        check_limits(per_image, standard, "f.json")
    check_limits(per_image[:100], standard, "f.json", max_dets_per_image=100)  # a config's own limit
    with pytest.raises(ValueError, match="at most 100 per image"):
        check_limits(per_image[:101], standard, "f.json", max_dets_per_image=100)
    per_category = [detection(1 + k % 40, 3) for k in range(10_001)]  # 251 per image, 10,001 of category 3
    check_limits(per_category, standard, "f.json")
    with pytest.raises(ValueError, match="category 3 has 10,001 detections, but the fixed protocol evaluates at "
                                         "most 10,000 per category"):
        check_limits(per_category, fixed, "f.json")


def test_suite_eval_evaluates_a_detection_file(generated, tmp_path, capsys):
    root, json_file, dataset = generated
    results = noisy_results(dataset, seed=3)
    path, output = tmp_path / "detections.json", tmp_path / "metrics.json"
    path.write_text(json.dumps(results))
    args = ["eval", "--detections", str(path), "--dataset", str(root)]
    assert main([*args, "--protocol", "standard", "fixed", "--output", str(output)]) == 0
    expected = evaluate_lvis_results(json_file, results, protocols=("standard", "fixed"))
    written = json.loads(output.read_text())
    assert set(written) == {"bbox", "segm", "bbox-fixed", "segm-fixed"}
    for key, metrics in expected.items():
        assert written[key] == {name: None if value != value else value for name, value in metrics.items()}
    # Beyond the standard protocol's limit: one line before any evaluation, nothing written.
    image = results[0]["image_id"]
    path.write_text(json.dumps(results + [dict(results[0], score=0.01)] * 300))
    output.unlink()
    capsys.readouterr()
    assert main([*args, "--output", str(output)]) == 2
    one_error_line(capsys, str(path), f"image {image} has", "standard protocol evaluates at most 300 per image")
    assert not output.exists()
    assert main(["eval", "--detections", str(path)]) == 2
    one_error_line(capsys, "--detections needs --dataset")
    assert main(["eval", "--detections", str(path), "--dataset", str(tmp_path / "nothing")]) == 2
    one_error_line(capsys, "no validation annotations at")


def test_a_run_s_bootstrap_takes_each_protocol_s_detections_from_its_own_file(generated, tmp_path):
    _, json_file, dataset = generated
    run_dir = tmp_path / "run"
    (run_dir / RUN_CLASS_TOPK_DETECTIONS).parent.mkdir(parents=True)
    own, best = noisy_results(dataset, seed=4), noisy_results(dataset, seed=5)
    (run_dir / RUN_DETECTIONS).write_text(json.dumps(own))
    protocols = {"standard": {"detections_per_image": 100}, "fixed": {}}
    with pytest.raises(ValueError, match="class_topk/lvis_instances_results.json: no detections kept"):
        bootstrap.write_run_bootstrap(run_dir, json_file, resamples=5, metric_protocols=protocols)
    (run_dir / RUN_CLASS_TOPK_DETECTIONS).write_text(json.dumps(best))
    record = bootstrap.write_run_bootstrap(run_dir, json_file, resamples=5, metric_protocols=protocols)
    expected = bootstrap.bootstrap_record(json_file, own, resamples=5, protocols=("standard", "fixed"),
                                          class_topk_results=best)
    assert same(record, expected)
    assert same(record["replicates"]["bbox-fixed"],
                bootstrap.bootstrap_record(json_file, best, resamples=5, protocols=("fixed",))["replicates"]["bbox-fixed"])
    assert same(record["replicates"]["bbox"], bootstrap.bootstrap_record(json_file, own, resamples=5)["replicates"]["bbox"])
    # The run's own detections beyond its recorded limit per image: refused, naming the file.
    (run_dir / RUN_DETECTIONS).write_text(json.dumps(own + [dict(own[0], score=0.01)] * 100))
    with pytest.raises(ValueError, match="inference/lvis_instances_results.json: image .* at most 100 per image"):
        bootstrap.write_run_bootstrap(run_dir, json_file, resamples=5, metric_protocols=protocols)
