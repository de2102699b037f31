"""The LVIS protocols beyond the standard one (`suite.evaluation.protocols`): AP_fixed, AP_pool and
the challenge 2021's boundary AP.

Without the reference trees (CI): hand-computed cases, the protocols' invariants (fixed equals
standard where no limit bites; AP_fixed does not move when one class's scores are rescaled, AP_pool
does; a pool of one category is that category; boundary IoU with a band as wide as the image is
mask IoU), the band against an erosion written here pixel by pixel. With them (marked, deselected
without the variable, `tox -e eval-references`): on the generated hard cases (tests/eval_helpers.py)
the precision array is equal bit for bit and every metric equal (==) to large-vocab-devil's
scripts (SUITE_LVDEVIL_SOURCE) and to the lvis-api `lvis_challenge_2021` branch
(SUITE_LVIS_SOURCE), each run as it is in a process of its own (tests/reference_eval.py)."""

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lvis import LVIS
from pycocotools import mask as mask_utils

from suite.evaluation import bootstrap, boundary_iou, lvis_fast, protocols
from suite.evaluation.evaluate import evaluate_lvis_results, protocols_record
from suite.schema import AP_METRICS, GROUP_METRICS

from eval_helpers import hard_case

REPO = Path(__file__).resolve().parents[1]
FIXED, CHALLENGE, STANDARD = (protocols.PROTOCOLS[name] for name in ("fixed", "challenge2021", "standard"))


def _without_boxes(results, task):
    return [{k: v for k, v in r.items() if not (task == "segm" and k == "bbox")} for r in results]


def _gt(dataset, tmp_path, name="val.json"):
    path = tmp_path / name
    path.write_text(json.dumps(dataset))
    return LVIS(str(path)), path


def _match(lvis_gt, results, task, protocol, area_labels=("all", "small", "medium", "large")):
    return protocols.match(lvis_gt, lvis_fast.detections_from_results(_without_boxes(results, task), task), task,
                           protocol, area_labels)


@pytest.fixture(scope="module", params=[0, 1, 2])
def hard(request, tmp_path_factory):
    dataset, results = hard_case(request.param)
    lvis_gt, path = _gt(dataset, tmp_path_factory.mktemp("hard"))
    return lvis_gt, path, dataset, results


# ---- a small set computed by hand -------------------------------------------------------------

def _tiny():
    """Two categories (r and f), one image each with one ground-truth box; category 1 has a
    false positive at 0.9 and its true positive at 0.5, category 2 its true positive at 0.8."""
    categories = [{"id": 1, "name": "a", "frequency": "r"}, {"id": 2, "name": "b", "frequency": "f"}]
    images = [{"id": i, "height": 100, "width": 100, "neg_category_ids": [], "not_exhaustive_category_ids": []}
              for i in (1, 2)]
    box = [10.0, 10.0, 40.0, 40.0]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box, "area": 1600.0},
                   {"id": 2, "image_id": 2, "category_id": 2, "bbox": box, "area": 1600.0}]
    results = [{"image_id": 1, "category_id": 1, "bbox": [60.0, 60.0, 30.0, 30.0], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": box, "score": 0.5},
               {"image_id": 2, "category_id": 2, "bbox": box, "score": 0.8}]
    dataset = {"images": images, "annotations": annotations, "categories": categories}
    return dataset, results


def test_hand_computed_fixed_and_pooled_ap(tmp_path):
    """Per category: a's precision is 1/2 at its only recall, b's 1: AP_fixed 0.75. Pooled: 0.9 (a,
    false), 0.8 (b, true), 0.5 (a, true): precision 2/3 at recall 1, and 2/3 interpolated over
    every recall point: AP_pool 2/3 (with the references' eps); APr_pool 1/2, APf_pool 1."""
    dataset, results = _tiny()
    lvis_gt, _ = _gt(dataset, tmp_path)
    summary = protocols.summarize(_match(lvis_gt, results, "bbox", FIXED), FIXED)
    eps = np.spacing(1)
    assert summary["AP"] == pytest.approx(0.75, abs=1e-12)
    assert summary["APr"] == pytest.approx(0.5, abs=1e-12) and summary["APf"] == pytest.approx(1.0, abs=1e-12)
    assert summary["AP_pool"] == 2 / (3 + eps)
    assert summary["APr_pool"] == 1 / (2 + eps) and summary["APf_pool"] == 1 / (1 + eps)
    assert summary["APc_pool"] == -1 and summary["APc"] == -1  # no common category


def test_per_category_limit_keeps_the_highest_scores_ties_in_row_order():
    categories = np.array([3, 1, 3, 3, 1, 3])
    scores = np.array([0.5, 0.9, 0.7, 0.5, 0.2, 0.5])
    # category 3: 0.7 (row 2), then the tied 0.5s in row order: rows 0, 3; row 5 is cut
    assert lvis_fast.limit_per_category(categories, scores, 3).tolist() == [0, 1, 2, 3, 4]
    assert lvis_fast.limit_per_category(categories, scores, 1).tolist() == [1, 2]


def test_the_per_category_limit_bites_over_images(tmp_path):
    """A category's detections beyond its limit are dropped over the whole set, whatever their
    image: with limit 1 only the highest-scoring detection of category 1 (a false positive) counts."""
    dataset, results = _tiny()
    lvis_gt, _ = _gt(dataset, tmp_path)
    limited = dataclasses.replace(FIXED, max_dets_per_category=1)
    summary = protocols.summarize(_match(lvis_gt, results, "bbox", limited), limited)
    assert summary["APr"] == 0.0 and summary["APf"] == pytest.approx(1.0, abs=1e-12)


# ---- invariants on the hard cases -------------------------------------------------------------

@pytest.mark.parametrize("task", ["bbox", "segm"])
def test_fixed_equals_standard_where_no_limit_bites(hard, task):
    """The hard cases have at most 40 detections per image and far fewer than 10,000 per category:
    the two protocols keep the same detections, so the same precision bit for bit."""
    lvis_gt, _, _, results = hard
    standard = _match(lvis_gt, results, task, STANDARD).precision()
    fixed = _match(lvis_gt, results, task, FIXED).precision()
    assert np.array_equal(standard, fixed)
    capped = dataclasses.replace(FIXED, max_dets_per_category=30)
    assert not np.array_equal(_match(lvis_gt, results, task, capped).precision(), fixed)  # the limit bites


def test_ap_fixed_is_per_category_and_ap_pool_is_not(hard):
    """Rescaling one category's scores (order kept) leaves every per-category quantity as it is and
    moves AP_pool: AP_pool rewards scores comparable across categories."""
    lvis_gt, _, _, results = hard
    rescaled = [dict(r, score=r["score"] * 0.01) if r["category_id"] == 2 else r for r in results]
    before = protocols.summarize(_match(lvis_gt, results, "bbox", FIXED, ("all",)), FIXED, metrics=["AP", "AP_pool"])
    after = protocols.summarize(_match(lvis_gt, rescaled, "bbox", FIXED, ("all",)), FIXED, metrics=["AP", "AP_pool"])
    assert after["AP"] == before["AP"]
    assert after["AP_pool"] != before["AP_pool"]


def test_a_pool_of_one_category_is_that_category(hard):
    lvis_gt, _, _, results = hard
    matches = _match(lvis_gt, results, "segm", FIXED, ("all",))
    per_category = matches.precision()[:, :, :, 0]
    pooled = matches.pooled_precision([[k] for k in range(matches.num_categories)])
    assert np.array_equal(pooled, per_category)


def _drawn_set(dataset, results, draw):
    """The images of `draw` (indices into the sorted image ids) written out as a set of their own,
    each copy a new image, in draw order, with their detections: (dataset, results)."""
    image_ids = sorted(image["id"] for image in dataset["images"])
    copied, copied_results = copy.deepcopy(dataset), []
    copied["images"], copied["annotations"] = [], []
    by_id = {image["id"]: image for image in dataset["images"]}
    for position, index in enumerate(draw):
        old, new = image_ids[index], position + 1
        copied["images"].append(dict(by_id[old], id=new))
        copied["annotations"] += [dict(a, image_id=new, id=len(copied["annotations"]) + k + 1) for k, a in
                                  enumerate(a for a in dataset["annotations"] if a["image_id"] == old)]
        copied_results += [dict(r, image_id=new) for r in results if r["image_id"] == old]
    return copied, copied_results


def test_pooled_precision_on_a_draw_equals_a_set_of_the_drawn_images(hard, tmp_path):
    """Resampled images (repeats, in draw order) accumulate as the same images written out as a
    set of their own: the bootstrap's contract."""
    lvis_gt, _, dataset, results = hard
    draw = np.random.default_rng(3).integers(0, len(dataset["images"]), len(dataset["images"]))
    copied, copied_results = _drawn_set(dataset, results, draw)
    copied_gt, _ = _gt(copied, tmp_path, "drawn.json")
    pools_of = protocols.pools(_match(lvis_gt, results, "bbox", FIXED, ("all",)))
    on_draw = _match(lvis_gt, results, "bbox", FIXED, ("all",)).pooled_precision(pools_of, draw)
    on_set = _match(copied_gt, copied_results, "bbox", FIXED, ("all",)).pooled_precision(pools_of)
    assert np.array_equal(on_draw, on_set)


def test_bootstrap_covers_every_protocol_on_the_same_draws(hard, tmp_path):
    """The record under every protocol: the standard part is the default record's; a replicate of
    another protocol is that protocol's metrics on the drawn images written out as a set."""
    lvis_gt, path, dataset, results = hard
    record = bootstrap.bootstrap_record(path, results, resamples=3, seed=5, protocols=tuple(protocols.PROTOCOLS))
    default = bootstrap.bootstrap_record(path, results, resamples=3, seed=5)
    assert set(record["replicates"]) == {"bbox", "segm", "bbox-fixed", "segm-fixed", "segm-challenge2021"}
    assert {key: record["replicates"][key] for key in default["replicates"]} == default["replicates"]
    assert record["metric_protocols"]["fixed"] == protocols.protocol_record("fixed") and "metric_protocols" not in default
    draw = bootstrap.resample_indices(len(dataset["images"]), 3, 5)[1]
    copied, copied_results = _drawn_set(dataset, results, draw)
    copied_gt, _ = _gt(copied, tmp_path, "drawn.json")
    for key, task, protocol in (("bbox-fixed", "bbox", FIXED), ("segm-fixed", "segm", FIXED),
                                ("segm-challenge2021", "segm", CHALLENGE)):
        on_set = protocols.summarize(_match(copied_gt, copied_results, task, protocol, ("all",)), protocol,
                                     metrics=bootstrap.bootstrap_metrics(protocol.name))
        assert _same({metric: values[1] for metric, values in record["replicates"][key].items()},
                     {metric: float("nan") if value == -1 else value * 100 for metric, value in on_set.items()}), key
    assert set(record["replicates"]["segm-fixed"]) == set(GROUP_METRICS + protocols.POOLED_METRICS)
    with pytest.raises(ValueError, match="standard protocol only"):
        bootstrap.bootstrap_record(path, results, resamples=3, evaluator="official", protocols=("fixed",))


def test_an_evaluation_bootstraps_every_protocol_from_its_own_matching(hard):
    """`evaluate_lvis_results` with a `BootstrapReplicates`: the record `bootstrap_record` gives
    (the standard protocol at the evaluation's own limit per image, which these detections keep);
    a second validation set is refused."""
    lvis_gt, path, dataset, results = hard
    every = tuple(protocols.PROTOCOLS)
    replicates = bootstrap.BootstrapReplicates(resamples=3, seed=5)
    evaluate_lvis_results(lvis_gt, results, protocols=every, bootstrap=replicates)
    expected = bootstrap.bootstrap_record(path, results, resamples=3, seed=5, protocols=every)
    assert json.dumps(replicates.record(every)) == json.dumps(expected)
    with pytest.raises(ValueError, match="one validation set"):
        replicates.for_images([image["id"] for image in dataset["images"][:-1]])
    with pytest.raises(ValueError, match="resamples must be >= 2"):
        bootstrap.BootstrapReplicates(resamples=1)


def test_protocols_with_the_same_limits_share_their_candidates(hard):
    """The challenge2021 matches on candidates that the fixed protocol's matching has used are
    those on candidates of its own; candidates under other limits are refused."""
    lvis_gt, _, _, results = hard
    detections = lvis_fast.detections_from_results(results, "segm")
    shared = protocols.candidates(lvis_gt, detections, "segm", FIXED)
    protocols.matches(shared, FIXED)
    own = protocols.candidates(lvis_gt, detections, "segm", CHALLENGE)
    assert np.array_equal(protocols.matches(shared, CHALLENGE).precision(), protocols.matches(own, CHALLENGE).precision())
    with pytest.raises(ValueError, match="the standard protocol keeps"):
        protocols.matches(shared, protocols.get_protocol("standard"))


def test_boundary_ap_with_a_band_as_wide_as_the_image_is_mask_ap(hard):
    """With d >= the image diagonal the band is the whole mask: boundary IoU = mask IoU."""
    lvis_gt, _, _, results = hard
    wide = dataclasses.replace(CHALLENGE, boundary_dilation_ratio=1.0)
    assert np.array_equal(_match(lvis_gt, results, "segm", wide).precision(),
                          _match(lvis_gt, results, "segm", FIXED).precision())
    narrow = _match(lvis_gt, results, "segm", CHALLENGE).precision()
    assert not np.array_equal(narrow, _match(lvis_gt, results, "segm", FIXED).precision())


def _erode_by_hand(mask, d):
    """A pixel stays if every pixel within chessboard distance d is in the mask (outside: background)."""
    h, w = mask.shape
    padded = np.zeros((h + 2 * d, w + 2 * d), bool)
    padded[d:d + h, d:d + w] = mask > 0
    kept = np.ones((h, w), bool)
    for dy in range(2 * d + 1):
        for dx in range(2 * d + 1):
            kept &= padded[dy:dy + h, dx:dx + w]
    return kept


def _random_masks(seed, count=12, shape=(60, 90)):
    rng = np.random.default_rng(seed)
    masks = []
    for index in range(count):
        mask = np.zeros(shape, np.uint8)
        for _ in range(3):
            y, x = rng.integers(-10, shape[0]), rng.integers(-10, shape[1])  # some cut by the border
            mask[max(y, 0):max(y + rng.integers(1, 40), 0), max(x, 0):max(x + rng.integers(1, 50), 0)] = 1
        if index == 0:
            mask[:] = 0  # empty
        if index == 1:
            mask[:] = 1  # the whole image: the band runs along the border
        masks.append(mask)
    return masks


@pytest.mark.parametrize("ratio", [0.02, 0.05, 0.2])
def test_band_is_the_mask_minus_its_erosion(ratio):
    for mask in _random_masks(0):
        d = boundary_iou.dilation_pixels(*mask.shape, ratio)
        assert np.array_equal(boundary_iou.band(mask, ratio), (mask > 0) & ~_erode_by_hand(mask, d))


def test_band_by_hand():
    """A 10 x 10 square in a 20 x 20 image: d = round(0.02 * 28.3) = 1 -> its 36 outer pixels;
    with ratio 0.1, d = 3: 10² - 4² = 84."""
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    assert boundary_iou.dilation_pixels(20, 20, 0.02) == 1
    assert boundary_iou.band(mask, 0.02).sum() == 36
    assert boundary_iou.band(mask, 0.1).sum() == 84


def _runs(mask):
    """Run lengths of a mask in column-major order, starting with a run of 0s (maybe empty)."""
    flat = np.asarray(mask, np.uint8).ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.r_[0, change, len(flat)])
    return np.r_[0, runs] if len(flat) and flat[0] == 1 else runs


@pytest.mark.parametrize("shape", [(7, 5), (60, 90), (480, 640)])
def test_rle_crop_and_counts_equal_pycocotools_decode(shape):
    """Compressed RLE strings (bytes and str) of small and large runs (several 5-bit groups,
    negative differences), an uncompressed one, empty and full masks, decoded together: the
    counts are each mask's runs, the crops its pixels."""
    rng = np.random.default_rng(shape[0])
    masks = []
    for index in range(40):
        mask = np.zeros(shape, np.uint8)
        for _ in range(int(rng.integers(0, 4))):
            y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
            mask[y:y + rng.integers(1, shape[0] + 1), x:x + rng.integers(1, shape[1] + 1)] = 1
        if index % 5 == 0:
            mask |= (rng.random(shape) < 0.3).astype(np.uint8)
        if index == 1:
            mask[:] = 1
        masks.append(mask)
    rles = [mask_utils.encode(np.asfortranarray(mask)) for mask in masks]
    rles = [dict(rle, counts=rle["counts"].decode()) if index % 2 else rle for index, rle in enumerate(rles)]
    rles[3] = {"size": list(shape), "counts": _runs(masks[3]).tolist()}  # uncompressed
    counts, offsets = boundary_iou.rle_counts(rles)
    for index, mask in enumerate(masks):
        assert np.array_equal(counts[offsets[index]:offsets[index + 1]], _runs(mask)), index
    boxes = mask_utils.toBbox([mask_utils.encode(np.asfortranarray(mask)) for mask in masks]).astype(np.int64)
    for (x0, y0, w, h), mask, crop in zip(boxes, masks, boundary_iou.rle_crops(rles, boxes)):
        assert np.array_equal(crop, mask[y0:y0 + h, x0:x0 + w])


def test_boundary_iou_is_pycocotools_iou_of_the_bands_at_most_the_mask_iou():
    masks = _random_masks(1)
    for y, x in ((10, 10), (11, 12)):  # thin at this ratio (d = 5: narrower than 11 pixels), overlapping
        thin = np.zeros(masks[0].shape, np.uint8)
        thin[y:y + 5, x:x + 30] = 1
        masks.append(thin)
    rles = [mask_utils.encode(np.asfortranarray(m)) for m in masks]
    computer = boundary_iou.BoundaryIoU(0.05)
    bands = [mask_utils.encode(np.asfortranarray(boundary_iou.band(m, 0.05).astype(np.uint8))) for m in masks]
    n = len(masks)
    pairs = [(i, j) for i in range(n) for j in range(n)]
    mask_ious = np.array([mask_utils.iou([rles[i]], [rles[j]], [0])[0, 0] for i, j in pairs])
    ours = computer.iou(mask_ious, [rles[i] for i, _ in pairs], [rles[j] for _, j in pairs],
                        [i for i, _ in pairs], [j for _, j in pairs])
    expected = np.minimum(mask_ious, [mask_utils.iou([bands[i]], [bands[j]], [0])[0, 0] for i, j in pairs])
    assert np.array_equal(ours, expected)
    assert (ours <= mask_ious).all() and ((ours > 0) & (ours < mask_ious)).any()


def test_protocol_errors_and_record():
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocols.get_protocol("lvis2020")
    with pytest.raises(ValueError, match="evaluates segm, not 'bbox'"):
        protocols.check_task(CHALLENGE, "bbox")
    with pytest.raises(ValueError, match="boundary IoU is defined for masks"):
        lvis_fast.match(None, None, "bbox", boundary_dilation_ratio=0.02)
    assert protocols.protocol_record("standard") == {
        "detections_per_image": 300, "detections_per_category": None, "iou_type": {"bbox": "bbox", "segm": "segm"}}
    assert protocols.protocol_record("challenge2021") == {
        "detections_per_image": None, "detections_per_category": 10000, "iou_type": {"segm": "boundary"},
        "boundary_dilation_ratio": 0.02}


# ---- the evaluation's results and record ------------------------------------------------------

def test_evaluate_lvis_results_under_every_protocol(hard):
    """The standard results are those of the default call; every other protocol's under its own key,
    its values those of `protocols.summarize` in percent."""
    lvis_gt, _, dataset, results = hard
    standard = evaluate_lvis_results(lvis_gt, results)
    evaluation = evaluate_lvis_results(lvis_gt, results, protocols=tuple(protocols.PROTOCOLS))
    assert set(evaluation) == {"bbox", "segm", "bbox-fixed", "segm-fixed", "segm-challenge2021"}
    assert _same(evaluation["bbox"], standard["bbox"]) and _same(evaluation["segm"], standard["segm"])
    for key, task, protocol in (("bbox-fixed", "bbox", FIXED), ("segm-fixed", "segm", FIXED),
                                ("segm-challenge2021", "segm", CHALLENGE)):
        expected = protocols.summarize(_match(lvis_gt, results, task, protocol), protocol)
        assert _same({metric: evaluation[key][metric] for metric in expected},
                     {metric: float("nan") if value == -1 else value * 100 for metric, value in expected.items()})
        assert sum(key.startswith("AP-") for key in evaluation[key]) == len(dataset["categories"])
    record = protocols_record(evaluation, 300)
    assert set(record) == {"standard", "fixed", "challenge2021"} and "metrics" not in record["standard"]
    assert record["fixed"]["metrics"]["segm"]["APr_pool"] == evaluation["segm-fixed"]["APr_pool"]
    with pytest.raises(ValueError, match="standard protocol only"):
        evaluate_lvis_results(lvis_gt, results, evaluator="official", protocols=("fixed",))


def test_detectron2_evaluator_gives_every_protocol(tmp_path):
    """Detectron2's inference loop with the suite's LVISEvaluator (`protocols=`) gives the same
    numbers as evaluating the detections it wrote."""
    from detectron2.config import get_cfg
    from detectron2.data import MetadataCatalog, build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset

    from suite.data.register import register_synthetic_lvis
    from suite.evaluation.evaluate import build_lvis_evaluator

    from data_helpers import small_set
    from test_evaluation_official import GroundTruthModel

    registered = register_synthetic_lvis(small_set(tmp_path / "set").root, prefix="test_evaluation_protocols")
    cfg = get_cfg()
    cfg.DATALOADER.NUM_WORKERS = 0
    evaluator = build_lvis_evaluator(registered.val, str(tmp_path / "out"), distributed=False,
                                     protocols=("standard", "fixed", "challenge2021"))
    model = GroundTruthModel(registered.val, skip_labels=[0, 1])
    evaluation = inference_on_dataset(model, build_detection_test_loader(cfg, registered.val), evaluator)
    assert set(evaluation) == {"bbox", "segm", "bbox-fixed", "segm-fixed", "segm-challenge2021"}
    written = json.loads((tmp_path / "out" / "lvis_instances_results.json").read_text())
    json_file = MetadataCatalog.get(registered.val).json_file
    again = evaluate_lvis_results(json_file, written, protocols=("fixed", "challenge2021"))
    for key in again:
        assert _same(evaluation[key], again[key]), key
    assert 0 < evaluation["segm-challenge2021"]["AP"] <= 100.0


def _same(summary, reference):
    return summary.keys() == reference.keys() and all(
        value == reference[key] or (np.isnan(value) and np.isnan(reference[key])) for key, value in summary.items())


# ---- equality with the reference trees --------------------------------------------------------

def _reference(variable, command, *arguments, tmp_path):
    """Run tests/reference_eval.py with the tree named by `variable` first on PYTHONPATH; return
    (precision, results) it saved."""
    tree = os.path.realpath(os.environ[variable])
    out = tmp_path / f"{command}-{len(list(tmp_path.iterdir()))}.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, str(REPO)]))
    run = subprocess.run([sys.executable, str(REPO / "tests" / "reference_eval.py"), command, *map(str, arguments),
                          str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    saved = np.load(out)
    return (saved["bands"], None) if command == "band" else (saved["precision"], json.loads(str(saved["results"])))


def _results_file(results, tmp_path, name):
    path = tmp_path / name
    path.write_text(json.dumps(results))
    return path


def _devil(command, hard, task, dets_per_cat, tmp_path):
    """(precision, results) of large-vocab-devil's script `command` on the hard case, and the fixed
    protocol with its limit per category."""
    _, path, _, results = hard
    reference = _reference("SUITE_LVDEVIL_SOURCE", command, path, _results_file(results, tmp_path, "results.json"),
                           task, dets_per_cat, tmp_path=tmp_path)
    return (*reference, dataclasses.replace(FIXED, max_dets_per_category=dets_per_cat))


@pytest.mark.lvdevil_source
@pytest.mark.parametrize("task", ["bbox", "segm"])
@pytest.mark.parametrize("dets_per_cat", [10000, 30])
def test_fixed_ap_equals_large_vocab_devil(hard, task, dets_per_cat, tmp_path):
    lvis_gt, _, _, results = hard
    reference, reference_results, protocol = _devil("devil-fixed", hard, task, dets_per_cat, tmp_path)
    matches = _match(lvis_gt, results, task, protocol)
    assert np.array_equal(matches.precision(), reference)
    summary = protocols.summarize(matches, protocol, metrics=AP_METRICS)
    assert summary == {metric: reference_results[metric] for metric in summary}
    assert matches.num_greedy_groups > 0 and matches.num_tied_detections > 0


@pytest.mark.lvdevil_source
@pytest.mark.parametrize("task", ["bbox", "segm"])
@pytest.mark.parametrize("dets_per_cat", [10000, 30])
def test_pooled_ap_equals_large_vocab_devil(hard, task, dets_per_cat, tmp_path):
    lvis_gt, _, _, results = hard
    reference, reference_results, protocol = _devil("devil-pooled", hard, task, dets_per_cat, tmp_path)
    matches = _match(lvis_gt, results, task, protocol, ("all",))
    assert reference.shape[-1] == 1  # its areas: "all"
    assert np.array_equal(matches.pooled_precision(protocols.pools(matches)), reference[:, :, :, 0])
    summary = protocols.summarize(matches, protocol, metrics=protocols.POOLED_METRICS)
    assert summary == {metric: reference_results[f"AP-pooled-{pool}"]
                       for metric, pool in zip(protocols.POOLED_METRICS, protocols.POOLS)}


@pytest.mark.lvdevil_source
def test_pooled_ap_counts_a_category_without_ground_truth_as_large_vocab_devil(hard, tmp_path):
    """A category with no ground truth anywhere but detections on images that list it as negative:
    per category it has no AP, in its pools its false positives count."""
    _, _, dataset, results = hard
    dropped = 11
    changed = copy.deepcopy(dataset)
    held = {a["image_id"] for a in changed["annotations"] if a["category_id"] == dropped}
    changed["annotations"] = [a for a in changed["annotations"] if a["category_id"] != dropped]
    for image in changed["images"]:
        image["not_exhaustive_category_ids"] = [c for c in image["not_exhaustive_category_ids"] if c != dropped]
        if image["id"] in held:
            image["neg_category_ids"] = sorted(set(image["neg_category_ids"]) | {dropped})
    lvis_gt, path = _gt(changed, tmp_path, "no_gt_of_a_category.json")
    assert held and any(r["category_id"] == dropped and r["image_id"] in held for r in results)
    reference, reference_results, protocol = _devil("devil-pooled", (lvis_gt, path, changed, results), "bbox",
                                                    10000, tmp_path)
    matches = _match(lvis_gt, results, "bbox", protocol, ("all",))
    assert np.array_equal(matches.pooled_precision(protocols.pools(matches)), reference[:, :, :, 0])
    assert (matches.precision()[:, :, dropped - 1] == -1).all()
    without = [k for k in range(matches.num_categories) if k != dropped - 1]  # its false positives matter:
    assert not np.array_equal(matches.pooled_precision([without]), reference[:, :, :1, 0])


@pytest.mark.lvis_source
def test_challenge2021_equals_the_lvis_api_challenge_branch(hard, tmp_path):
    """Detections without boxes, as Detectron2 evaluates masks (with boxes the branch takes a
    detection's area, for the area ranges, from its box)."""
    lvis_gt, path, _, results = hard
    reference, reference_results = _reference("SUITE_LVIS_SOURCE", "challenge", path,
                                              _results_file(_without_boxes(results, "segm"), tmp_path, "results.json"),
                                              tmp_path=tmp_path)
    matches = _match(lvis_gt, results, "segm", CHALLENGE)
    assert np.array_equal(matches.precision(), reference)
    summary = protocols.summarize(matches, CHALLENGE)
    assert summary == {metric: reference_results[metric] for metric in summary}
    assert matches.num_greedy_groups > 0 and matches.num_tied_detections > 0


@pytest.mark.lvis_source
@pytest.mark.parametrize("ratio", [0.02, 0.05, 0.2])
def test_band_equals_the_lvis_api_challenge_branch(ratio, tmp_path):
    masks = _random_masks(2)
    np.savez(tmp_path / "masks.npz", masks=np.stack(masks))
    bands, _ = _reference("SUITE_LVIS_SOURCE", "band", tmp_path / "masks.npz", ratio, tmp_path=tmp_path)
    assert np.array_equal(bands.astype(bool), np.stack([boundary_iou.band(m, ratio) for m in masks]))
