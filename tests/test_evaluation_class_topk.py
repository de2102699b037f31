"""The fixed protocol's detections (`suite.evaluation.class_topk`): the k best of each category over
a set, in bounded memory, through Detectron2's test path.

- `ClassTopK` against the definition (over every result at once, per category a stable sort by
  score, the first k, in the order added), over generated result streams with tied scores; what it
  holds never exceeds 2k - 1 per category after an `add`.
- A tiny Mask R-CNN through `inference_on_dataset` with `ClassTopKEvaluator` and `uncapped`: the
  kept detections equal the model's every detection (no limit per image, no floor) cut to the k
  best per category, while the floors spare the model detections that could not enter.
- `evaluate_model` under "fixed": its own pass, more detections than the model's limit per image.
"""

import json
from typing import Dict, List

import pytest
import torch
from d2_helpers import collect_k_best, every_detection, k_best_per_category, tiny_cfg, tiny_dataset
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from hypothesis import given, settings, strategies as st

from suite.evaluation.class_topk import ClassTopK
from suite.evaluation.detection_files import CLASS_TOPK_FOLDER
from suite.evaluation.evaluate import evaluate_lvis_results, evaluate_model


streams = st.lists(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0.1, 0.2, 0.25, 0.5, 0.9])), max_size=12),
                   max_size=8)


@settings(max_examples=200, deadline=None)
@given(chunks=streams, k=st.integers(1, 4))
def test_class_topk_is_the_k_best_of_each_category(chunks, k):
    collected = ClassTopK(num_classes=4, k=k)
    everything = []
    for chunk in chunks:
        results = [{"category_id": label, "score": score, "index": len(everything) + i}
                   for i, (label, score) in enumerate(chunk)]
        collected.add(results)
        everything += results
        held = collected._held
        assert all(len(category) <= 2 * k - 1 for category in held)
        for label, category in enumerate(held):  # the floor: at most the k-th best held (its value at the last prune)
            best = k_best_per_category([r for _, _, r in category], k)
            if collected.floor[label] > float("-inf"):
                assert len(best) == k and collected.floor[label].item() <= min(r["score"] for r in best) + 1e-7
    assert collected.results() == k_best_per_category(everything, k)
    assert collected.added == len(everything)


def test_class_topk_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="k must be at least 1"):
        ClassTopK(3, 0)
    with pytest.raises(ValueError, match="category label 3 is not in"):
        ClassTopK(3, 1).add([{"category_id": 3, "score": 0.5}])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    dataset = tiny_dataset(tmp_path_factory.mktemp("synth"), prefix="topk")
    cfg = tiny_cfg(dataset, "ce")
    torch.manual_seed(0)
    model = build_model(cfg).eval()  # untrained: scores near uniform, every class above the threshold everywhere
    return dataset, cfg, model


def test_the_collected_detections_are_the_k_best_of_the_model_s_every_detection(tiny):
    dataset, cfg, model = tiny
    everything = every_detection(cfg, model, dataset.val)
    assert detections_per_image(everything) > cfg.TEST.DETECTIONS_PER_IMAGE  # the pass is not limited per image
    for k in (2, 10**6):
        collected = collect_k_best(cfg, model, dataset.val, k)
        expected = [dict(result, category_id=result["category_id"] + 1)  # the evaluator writes category ids
                    for result in k_best_per_category(everything, k)]
        assert collected["kept"] == expected
        assert same(collected["evaluation"], evaluate_lvis_results(gt_file(dataset.val), expected, protocols=("fixed",)))
        assert collected["most_held"] <= cfg.MODEL.ROI_HEADS.NUM_CLASSES * (2 * k - 1)
    # With k = 2 the floors rose: the model produced fewer detections than it has.
    assert collect_k_best(cfg, model, dataset.val, 2)["added"] < len(everything)


def gt_file(dataset_name: str) -> str:
    return MetadataCatalog.get(dataset_name).json_file


def same(evaluation: Dict, expected: Dict) -> bool:
    """Equal, NaN equal to NaN."""
    return json.dumps(evaluation, sort_keys=True) == json.dumps(expected, sort_keys=True)


def detections_per_image(results: List[dict]) -> int:
    return max(sum(result["image_id"] == image for result in results) for image in {r["image_id"] for r in results})


def test_evaluate_model_gives_the_per_category_protocols_a_pass_of_their_own(tiny, tmp_path):
    dataset, cfg, model = tiny
    evaluation = evaluate_model(cfg, model, dataset.val, str(tmp_path), protocols=("standard", "fixed"))
    standard = json.loads((tmp_path / "lvis_instances_results.json").read_text())
    fixed = json.loads((tmp_path / CLASS_TOPK_FOLDER / "lvis_instances_results.json").read_text())
    assert detections_per_image(standard) <= cfg.TEST.DETECTIONS_PER_IMAGE < detections_per_image(fixed)
    gt = gt_file(dataset.val)
    assert same(evaluation, {**evaluate_lvis_results(gt, standard), **evaluate_lvis_results(gt, fixed, protocols=("fixed",))})
    assert model.roi_heads.box_predictor.test_topk_per_image == cfg.TEST.DETECTIONS_PER_IMAGE  # restored
    assert model.roi_heads.box_predictor.class_score_floor is None
