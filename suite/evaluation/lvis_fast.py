"""LVIS evaluation in vectorized NumPy, equal to the official `lvis` API (0.5.3) and built for LVIS scale.

`match(lvis_gt, detections, task)` does the official `LVISEval.evaluate` once: the 300-per-image
limit (`LVISResults.limit_dets_per_image`: the highest scores, ties in input order), then
detections and ground truth of area > 0 only (`LVIS.get_ann_ids`), the federated
rules (a detection counts only where its category is in the image's ground truth or
`neg_category_ids`; an unmatched detection of a category in `not_exhaustive_category_ids` is
ignored), the IoUs (pycocotools' own `iou` for masks; its box formula in NumPy for boxes) and the
greedy matching at the 10 IoU thresholds, per area range. Every match is decided in NumPy at once
where each detection overlaps at most one ground-truth instance with IoU >= 0.5 (then the
greedy order cannot matter but through the scores); a group (image, category) where a detection
overlaps several runs the official greedy loop on that group. `Matches.precision(draw)` is the
official `accumulate` on the images of `draw` (indices into the sorted image ids, repeats
allowed, in draw order, as the bootstrap resamples them) without Python loops over detections:
ties in score are ordered by draw position, as the official stable sort of the concatenation
does. `summarize` gives the official AP, AP50, AP75, APs, APm, APl, APr, APc, APf from it.

Beyond the standard protocol (`suite.evaluation.protocols`): a limit per category over the set
(`max_dets_per_category`, AP_fixed), boundary IoU for masks (`boundary_dilation_ratio`, the LVIS
Challenge 2021), and `Matches.pooled_precision(pools, draw)`, the categories of each pool
accumulated as one (AP_pool). `match` is `candidates` (the kept detections and their pairs with
box or mask IoU >= 0.5, which depend on the limits only) then `Candidates.matches` (the IoU, the
matching, the accumulators), so matchings on two IoUs of the same detections share the first.

Conventions: category index k is the k-th of the sorted category ids; precision has the official
shape (iou thresholds 10, recall points 101, categories K, area ranges A) with -1 where a
category has no ground truth. AR (recall) is not computed. Differences from the official API:
a ground-truth id <= 0 is a ValueError (the official code reads id 0 as "unmatched"); a
detection of a category the ground truth does not list is dropped, as there; a missing
`neg_category_ids` / `not_exhaustive_category_ids` reads as empty (the official code fails).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
from lvis import LVIS
from lvis.eval import Params
from pycocotools import mask as mask_utils

from suite.evaluation import boundary_iou
from suite.schema import AP_METRICS

LVIS_MAX_DETS = 300
CANDIDATE_IOU = 0.5  # the lowest IoU threshold: a pair below it never matches
_PAIR_CHUNK = 1 << 22  # box pairs per IoU chunk (bounded memory)
_BOUNDARY_PAIRS = 4096  # mask pairs whose boundary IoU is computed together


@dataclass
class Detections:
    """Detections as columns. image_ids, category_ids (n,) int64; scores (n,) float64;
    boxes (n, 4) float64 [x, y, w, h] (task "bbox"); segmentations: n compressed RLE dicts or
    polygon lists (task "segm"), else None. Row order is the results' order (it breaks ties)."""
    image_ids: np.ndarray
    category_ids: np.ndarray
    scores: np.ndarray
    boxes: Optional[np.ndarray] = None
    segmentations: Optional[Sequence] = None

    def __len__(self) -> int:
        return len(self.scores)


def detections_from_results(results: Sequence[dict], task: str) -> Detections:
    """Columns of LVIS-format results (dicts with image_id, category_id, score, and bbox for
    "bbox" or segmentation for "segm")."""
    if task not in ("bbox", "segm"):
        raise ValueError(f"task must be 'bbox' or 'segm', got {task!r}")
    key = "bbox" if task == "bbox" else "segmentation"
    missing = next((index for index, result in enumerate(results) if key not in result), None)
    if missing is not None:
        raise ValueError(f"result {missing} has no {key!r}: cannot evaluate {task}")
    return Detections(
        image_ids=np.fromiter((r["image_id"] for r in results), np.int64, len(results)),
        category_ids=np.fromiter((r["category_id"] for r in results), np.int64, len(results)),
        scores=np.fromiter((r["score"] for r in results), np.float64, len(results)),
        boxes=np.array([r["bbox"] for r in results], np.float64).reshape(-1, 4) if task == "bbox" else None,
        segmentations=[r["segmentation"] for r in results] if task == "segm" else None)


def limit_per_image(image_ids: np.ndarray, scores: np.ndarray, max_dets: int) -> np.ndarray:
    """Row indices kept by `LVISResults.limit_dets_per_image`: per image the `max_dets` highest
    scores, ties in row order; returned in row order."""
    return _top_per_group(image_ids, scores, max_dets)


def limit_per_category(category_ids: np.ndarray, scores: np.ndarray, max_dets: int) -> np.ndarray:
    """Row indices kept by the fixed-AP limit (the reference scripts' per-class
    `sorted(..., key=score, reverse=True)[:max_dets]`, a stable sort): per category, over the whole
    set, the `max_dets` highest scores, ties in row order; returned in row order."""
    return _top_per_group(category_ids, scores, max_dets)


def _top_per_group(keys: np.ndarray, scores: np.ndarray, max_dets: int) -> np.ndarray:
    order = np.lexsort((np.arange(len(scores)), -scores, keys))
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return np.sort(order[rank < max_dets])


def box_iou(dt_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (n, 4) [x, y, w, h] pairs, pycocotools' `bbIou` operation for operation
    (no crowd), so the same doubles."""
    w = np.minimum(dt_boxes[:, 2] + dt_boxes[:, 0], gt_boxes[:, 2] + gt_boxes[:, 0]) \
        - np.maximum(dt_boxes[:, 0], gt_boxes[:, 0])
    h = np.minimum(dt_boxes[:, 3] + dt_boxes[:, 1], gt_boxes[:, 3] + gt_boxes[:, 1]) \
        - np.maximum(dt_boxes[:, 1], gt_boxes[:, 1])
    inter = w * h
    union = dt_boxes[:, 2] * dt_boxes[:, 3] + gt_boxes[:, 2] * gt_boxes[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def greedy_match(ious: np.ndarray, gt_ignore: np.ndarray, iou_thrs: np.ndarray) -> np.ndarray:
    """The official `LVISEval.evaluate_img` matching of one (image, category): ious (D, G) with
    detections by descending score and ground truth in its order, gt_ignore (G,) bool.
    Returns (T, D) the matched ground-truth column per threshold, -1 where none."""
    gt_order = np.argsort(gt_ignore, kind="mergesort")  # ignored ground truth last
    ious, gt_ignore = ious[:, gt_order], gt_ignore[gt_order]
    matched = -np.ones((len(iou_thrs), ious.shape[0]), np.int64)
    for t, thr in enumerate(iou_thrs):
        gt_taken = np.zeros(ious.shape[1], bool)
        for d in range(ious.shape[0]):
            best, m = min(thr, 1 - 1e-10), -1
            for g in range(ious.shape[1]):
                if gt_taken[g]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m > -1:
                gt_taken[m] = True
                matched[t, d] = gt_order[m]
    return matched


def _group_starts(keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)


@dataclass
class _Accumulator:
    """One area range's matched detections in the official accumulate order (category, score
    descending, image, row), those ignored at every threshold dropped. tp, fp (T, n) bool."""
    category: np.ndarray
    image: np.ndarray
    score: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    tie_block: np.ndarray  # (n,) id of the run of equal (category, score) a detection is in, -1 if alone
    gt_image: np.ndarray  # (m,) image index of each (image, category) with counted ground truth
    gt_category: np.ndarray
    gt_count: np.ndarray


class Matches:
    """The per-detection matches of one evaluation (`match`); `precision(draw)` accumulates."""

    def __init__(self, num_images: int, num_categories: int, freq_groups: List[List[int]],
                 accumulators: List[_Accumulator], params: Params, area_labels: Sequence[str],
                 num_greedy_groups: int, num_evaluated_detections: int):
        self.num_images, self.num_categories = num_images, num_categories
        self.freq_groups, self.accumulators, self.params = freq_groups, accumulators, params
        self.area_labels = list(area_labels)  # the areas of `accumulators`, in order
        self.num_greedy_groups = num_greedy_groups  # (image, category) groups the greedy loop matched
        self.num_evaluated_detections = num_evaluated_detections  # after the limit and the federated filter
        self._pooled_accumulators: Dict[tuple, _Accumulator] = {}

    @property
    def num_tied_detections(self) -> int:
        """Detections that share their category and score with another (area range "all")."""
        return int((self.accumulators[0].tie_block >= 0).sum())

    def precision(self, draw: Optional[np.ndarray] = None, areas: Optional[Sequence[int]] = None) -> np.ndarray:
        """(T, R, K, len(areas)) interpolated precision on the images `draw` (indices into the
        sorted image ids; default: each image once), -1 where a category has no ground truth."""
        draw = np.arange(self.num_images) if draw is None else np.asarray(draw, np.int64)
        areas = range(len(self.accumulators)) if areas is None else areas
        return np.stack([self._precision(self.accumulators[a], draw, self.num_categories) for a in areas], axis=-1)

    def pooled_precision(self, pools: Sequence[Sequence[int]], draw: Optional[np.ndarray] = None) -> np.ndarray:
        """(T, R, len(pools)) interpolated precision of each pool of category indices taken as one
        category, on the area range "all" (the first of `area_labels`), -1 where a pool has no
        ground truth: large-vocab-devil's `LVISPooledEval.accumulate`. A pool's detections are
        ranked by score across its categories; ties in score by draw position, then category,
        then score order within the (image, category), as its image-major concatenation is."""
        if self.area_labels[0] != "all":
            raise ValueError(f"pooled precision is on the area range 'all', these matches hold {self.area_labels}")
        draw = np.arange(self.num_images) if draw is None else np.asarray(draw, np.int64)
        return np.stack([self._precision(self._pooled_accumulator(pool), draw, 1)[:, :, 0] for pool in pools], axis=-1)

    def _pooled_accumulator(self, pool: Sequence[int]) -> _Accumulator:
        """`_pooled` of the area range "all", built once per pool (a bootstrap asks for it per resample)."""
        key = tuple(int(category) for category in pool)
        if key not in self._pooled_accumulators:
            self._pooled_accumulators[key] = _pooled(self.accumulators[0], key, self.num_categories)
        return self._pooled_accumulators[key]

    def _precision(self, acc: _Accumulator, draw: np.ndarray, num_cats: int) -> np.ndarray:
        """The official accumulate of `acc` on the images `draw`, on units (`_units`): a row drawn c
        times is c consecutive rows there, whose true-positive count rises by 1 each (its last copy
        has the highest precision of the c) or whose false-positive count does (its first copy
        follows a row with a higher one). So the interpolated precision at a recall point, the
        largest precision from the first row reaching it to the category's end, is the largest
        at the end of a true-positive unit from the first unit reaching it on: the same doubles
        as the official per-row arrays, from one row per unit and one precision per true positive."""
        rec_thrs = self.params.rec_thrs
        num_thrs = len(self.params.iou_thrs)
        precision = -np.ones((num_thrs, len(rec_thrs), num_cats))
        copies = np.bincount(draw, minlength=self.num_images)
        num_gt = np.bincount(acc.gt_category, weights=copies[acc.gt_image] * acc.gt_count,
                             minlength=num_cats).astype(np.int64)
        present = np.flatnonzero(num_gt > 0)
        if present.size == 0:
            return precision
        rows, weights = self._units(acc, draw, copies)
        counted = num_gt[acc.category[rows]] > 0
        rows, weights = rows[counted], weights[counted]
        categories = acc.category[rows]
        seg_start = np.searchsorted(categories, present, side="left")
        seg_end = np.searchsorted(categories, present, side="right")
        # the smallest true-positive count m with m / num_gt >= each recall point, in the official doubles
        gt = num_gt[present][:, None]
        needed = np.ceil(rec_thrs[None, :] * gt).astype(np.int64)
        needed -= (needed >= 1) & ((needed - 1) / gt >= rec_thrs)
        needed += needed / gt < rec_thrs
        for t in range(num_thrs):
            hits = np.flatnonzero(acc.tp[t, rows])  # the true-positive units
            tp_cum = np.cumsum(weights[hits])  # true positives up to each hit's end, over all categories
            fp_cum = np.r_[0, np.cumsum(np.where(acc.fp[t, rows], weights, 0))]  # false positives before each unit
            hit_start, hit_end = np.searchsorted(hits, seg_start), np.searchsorted(hits, seg_end)
            tp_before = np.r_[0, tp_cum][hit_start]  # (K,) before each category
            fp_before = fp_cum[seg_start]
            category_of_hit = np.repeat(np.arange(len(present)), hit_end - hit_start)
            tp = (tp_cum - tp_before[category_of_hit]).astype(np.float64)
            fp = (fp_cum[hits] - fp_before[category_of_hit]).astype(np.float64)
            pr = tp / (fp + tp + np.spacing(1))
            # the first hit of each category whose count reaches each recall point's, and the category's end
            lows = np.maximum(np.searchsorted(tp_cum, tp_before[:, None] + needed, side="left"), hit_start[:, None])
            high = hit_end[:, None]
            reached = lows < high
            # precision at recall point r: the largest pr of the hits from its first to the category's end
            bounds = np.concatenate([np.minimum(lows, high), high], axis=1)
            interval_max = np.maximum.reduceat(np.r_[pr, 0.0], bounds.ravel()).reshape(bounds.shape)[:, :-1]
            interval_max[~reached] = 0.0
            suffix_max = np.maximum.accumulate(interval_max[:, ::-1], axis=1)[:, ::-1]
            precision[t, :, present] = np.where(reached, suffix_max, 0.0)
        return precision

    @staticmethod
    def _units(acc: _Accumulator, draw: np.ndarray, copies: np.ndarray):
        """(rows, weights): the rows of `acc` as the official accumulate sees the drawn images, a
        row of c > 0 draws as one unit of weight c, except inside a run of tied scores, where
        each draw is a unit of weight 1, ordered by draw position, then row."""
        drawn = copies[acc.image]
        in_tie = acc.tie_block >= 0
        rows = np.repeat(np.arange(len(acc.image)), np.where(in_tie, drawn, np.minimum(drawn, 1)))
        weights = np.where(in_tie[rows], 1, drawn[rows])
        tied = np.flatnonzero(in_tie[rows])
        if tied.size:
            draw_positions = np.argsort(draw, kind="stable")  # grouped by image, ascending
            image_start = np.r_[0, np.cumsum(copies)][:-1]
            tied_rows = rows[tied]
            copy_index = tied - np.searchsorted(rows, tied_rows, side="left")
            position = draw_positions[image_start[acc.image[tied_rows]] + copy_index]
            rows[tied] = tied_rows[np.lexsort((tied_rows, position, acc.tie_block[tied_rows]))]
        return rows, weights


def summarize_precision(precision: np.ndarray, freq_groups: List[List[int]], params: Params,
                        area_labels: Optional[Sequence[str]] = None,
                        metrics: Sequence[str] = AP_METRICS) -> Dict[str, float]:
    """The official `LVISEval.summarize` AP values of `metrics` (fractions, -1 where none) of a
    (T, R, K, A) precision whose areas are `area_labels` (default: all of `params.area_rng_lbl`),
    indexed as the official `_summarize`, so the same doubles."""
    area_labels = params.area_rng_lbl if area_labels is None else list(area_labels)

    def ap(iou_thr=None, area="all", group=None):
        aidx = [index for index, label in enumerate(area_labels) if label == area]
        s = precision
        if iou_thr is not None:
            s = s[np.where(iou_thr == params.iou_thrs)[0]]
        s = s[:, :, freq_groups[group], aidx] if group is not None else s[:, :, :, aidx]
        return -1 if len(s[s > -1]) == 0 else np.mean(s[s > -1])

    arguments = {"AP": {}, "AP50": {"iou_thr": 0.50}, "AP75": {"iou_thr": 0.75}, "APs": {"area": "small"},
                 "APm": {"area": "medium"}, "APl": {"area": "large"}, "APr": {"group": 0}, "APc": {"group": 1},
                 "APf": {"group": 2}}
    return {metric: ap(**arguments[metric]) for metric in metrics}


def _lookup(keys: np.ndarray, table_keys: np.ndarray) -> np.ndarray:
    """Whether each of `keys` is in `table_keys` (int64)."""
    table = np.unique(table_keys)
    if not len(table):
        return np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    return table[at] == keys


def match(lvis_gt: LVIS, detections: Detections, task: str, max_dets: int = LVIS_MAX_DETS,
          area_labels: Sequence[str] = ("all", "small", "medium", "large"), *,
          max_dets_per_category: int = -1, boundary_dilation_ratio: Optional[float] = None) -> Matches:
    """Evaluate `detections` against `lvis_gt` for `task` once; see the module docstring.
    `max_dets` (per image) and `max_dets_per_category` (over the set, after the per-image limit,
    as the lvis-api challenge branch's `LVISResults` applies them): -1 for no limit.
    `boundary_dilation_ratio` (masks only): match on boundary IoU (`suite.evaluation.boundary_iou`)
    with bands of this fraction of the image diagonal instead of mask IoU."""
    _check_boundary_task(task, boundary_dilation_ratio)
    return candidates(lvis_gt, detections, task, max_dets, max_dets_per_category=max_dets_per_category).matches(
        area_labels, boundary_dilation_ratio)


@dataclass
class Candidates:
    """What every matching of one task's detections under one pair of limits shares: the
    detections the evaluation keeps (rows `keep` of the input, grouped by (image, category) key,
    then by score; their keys, scores, areas, not-exhaustive flags and, for masks, RLEs), the
    ground truth (`_ground_truth`) and the candidate pairs (detection row, ground-truth row, IoU)
    with box or mask IoU >= 0.5. A boundary IoU is never above the mask IoU, so its candidates
    are among these. `matches` finishes an evaluation on them."""
    lvis_gt: LVIS
    task: str
    max_dets: int
    max_dets_per_category: int
    params: Params
    anns: List[dict]
    gt_key: np.ndarray
    gt_area: np.ndarray
    gt_flag: np.ndarray
    keep: np.ndarray
    dt_key: np.ndarray
    dt_score: np.ndarray
    dt_not_exhaustive: np.ndarray
    dt_area: np.ndarray
    dt_rles: Optional[List[dict]]
    pair_dt: np.ndarray
    pair_gt: np.ndarray
    pair_iou: np.ndarray

    def matches(self, area_labels: Sequence[str] = ("all", "small", "medium", "large"),
                boundary_dilation_ratio: Optional[float] = None) -> Matches:
        """The matches on the candidates' IoU, or with a `boundary_dilation_ratio` (masks) on
        boundary IoU, per area range of `area_labels`."""
        _check_boundary_task(self.task, boundary_dilation_ratio)
        params, num_cats = self.params, len(self.params.cat_ids)
        pair_dt, pair_gt, pair_iou = self.pair_dt, self.pair_gt, self.pair_iou
        if boundary_dilation_ratio is not None:
            pair_dt, pair_gt, pair_iou = _boundary_candidates(self, boundary_dilation_ratio)
        dt_key, gt_key, iou_thrs = self.dt_key, self.gt_key, params.iou_thrs

        # per-detection matches: NumPy where each detection has <= 1 candidate, the greedy loop elsewhere
        candidates_per_dt = np.bincount(pair_dt, minlength=len(self.keep))
        complex_keys = np.unique(dt_key[candidates_per_dt > 1])
        in_complex = _lookup(dt_key, complex_keys)
        simple_pairs = ~in_complex[pair_dt]
        matched_simple = _match_simple(pair_dt[simple_pairs], pair_gt[simple_pairs], pair_iou[simple_pairs],
                                       len(self.keep), iou_thrs)
        complex_groups = _complex_groups(complex_keys, dt_key, gt_key, pair_dt, pair_gt, pair_iou)

        accumulators = []
        for label in area_labels:
            low, high = params.area_rng[params.area_rng_lbl.index(label)]
            gt_ignore = self.gt_flag | (self.gt_area < low) | (self.gt_area > high)
            matched = matched_simple.copy()
            for dt_rows, gt_rows, ious in complex_groups:
                columns = greedy_match(ious, gt_ignore[gt_rows], iou_thrs)
                matched[:, dt_rows] = np.where(columns >= 0, gt_rows[np.maximum(columns, 0)], -1)
            accumulators.append(_accumulator(matched, gt_ignore, dt_key, self.dt_score, self.keep, self.dt_area,
                                             self.dt_not_exhaustive, gt_key, low, high, num_cats))
        return Matches(len(params.img_ids), num_cats, _freq_groups(self.lvis_gt, params), accumulators, params,
                       area_labels, len(complex_groups), len(self.keep))


def _check_boundary_task(task: str, boundary_dilation_ratio: Optional[float]) -> None:
    if boundary_dilation_ratio is not None and task != "segm":
        raise ValueError(f"boundary IoU is defined for masks (task 'segm'), not {task!r}")


def candidates(lvis_gt: LVIS, detections: Detections, task: str, max_dets: int = LVIS_MAX_DETS, *,
               max_dets_per_category: int = -1) -> Candidates:
    """The `Candidates` of `detections` for `task` under the limits of `match`."""
    if task not in ("bbox", "segm"):
        raise ValueError(f"task must be 'bbox' or 'segm', got {task!r}")
    params = Params(iou_type=task)
    params.img_ids = sorted(lvis_gt.get_img_ids())
    params.cat_ids = sorted(lvis_gt.get_cat_ids())
    image_index = {image_id: index for index, image_id in enumerate(params.img_ids)}
    cat_index = {cat_id: index for index, cat_id in enumerate(params.cat_ids)}

    anns, gt_key, gt_area, gt_flag = _ground_truth(lvis_gt, image_index, cat_index)
    keep, dt_key, dt_score, dt_not_exhaustive = _evaluated_detections(
        lvis_gt, detections, params, image_index, cat_index, gt_key, max_dets, max_dets_per_category)
    dt_rles = None
    if task == "bbox":
        dt_boxes = detections.boxes[keep]
        dt_area = dt_boxes[:, 2] * dt_boxes[:, 3]
    else:
        dt_rles = [_to_rle(lvis_gt, detections.image_ids[row], detections.segmentations[row]) for row in keep]
        dt_area = _mask_areas(dt_rles)
    # the official `get_ann_ids` leaves out an area of 0 (an empty mask, a box of no width), after the limits
    positive = dt_area > 0
    if not positive.all():
        keep, dt_key, dt_score, dt_not_exhaustive, dt_area = (
            values[positive] for values in (keep, dt_key, dt_score, dt_not_exhaustive, dt_area))
        dt_rles = None if dt_rles is None else [rle for rle, kept in zip(dt_rles, positive) if kept]
        if task == "bbox":
            dt_boxes = dt_boxes[positive]

    # candidate pairs: IoU >= 0.5 with a ground truth of the same (image, category)
    gt_start = np.searchsorted(gt_key, dt_key, side="left")
    gt_count = np.searchsorted(gt_key, dt_key, side="right") - gt_start
    if task == "bbox":
        gt_boxes = np.array([ann["bbox"] for ann in anns], np.float64).reshape(-1, 4)
        pair_dt, pair_gt, pair_iou = _box_candidates(dt_boxes, gt_boxes, gt_start, gt_count)
    else:
        pair_dt, pair_gt, pair_iou = _mask_candidates(lvis_gt, anns, dt_rles, dt_key, gt_start, gt_count)
    return Candidates(lvis_gt, task, max_dets, max_dets_per_category, params, anns, gt_key, gt_area, gt_flag, keep,
                      dt_key, dt_score, dt_not_exhaustive, dt_area, dt_rles, pair_dt, pair_gt, pair_iou)


def _ground_truth(lvis_gt: LVIS, image_index: Dict[int, int], cat_index: Dict[int, int]):
    """(annotations, (image, category) key, area, ignore flag) of the ground truth, grouped by
    key and in JSON order within a group, as the official `_prepare` lists them (an area of 0 is
    left out, as its `get_ann_ids` does)."""
    num_cats = len(cat_index)
    anns = [ann for ann in lvis_gt.dataset["annotations"] if ann["category_id"] in cat_index and ann["area"] > 0]
    gt_ids = np.fromiter((ann["id"] for ann in anns), np.int64, len(anns))
    if (gt_ids <= 0).any():
        raise ValueError(f"ground-truth annotation id {int(gt_ids[gt_ids <= 0][0])}: LVIS ids must be >= 1")
    gt_img = np.fromiter((image_index[ann["image_id"]] for ann in anns), np.int64, len(anns))
    gt_cat = np.fromiter((cat_index[ann["category_id"]] for ann in anns), np.int64, len(anns))
    gt_area = np.fromiter((ann["area"] for ann in anns), np.float64, len(anns))
    gt_flag = np.fromiter((bool(ann.get("ignore", 0)) for ann in anns), bool, len(anns))
    gt_key = gt_img * num_cats + gt_cat
    gt_order = np.argsort(gt_key, kind="stable")
    anns = [anns[i] for i in gt_order]
    return anns, gt_key[gt_order], gt_area[gt_order], gt_flag[gt_order]


def _evaluated_detections(lvis_gt: LVIS, detections: Detections, params: Params, image_index: Dict[int, int],
                          cat_index: Dict[int, int], gt_key: np.ndarray, max_dets: int, max_dets_per_category: int):
    """Rows of `detections` that the official evaluation keeps (the per-image, then the
    per-category limit, known categories, the federated filter), grouped by (image, category)
    key and by score descending then row within a group; with their keys, scores and
    not-exhaustive flags."""
    num_cats = len(params.cat_ids)
    if any(int(image_id) not in image_index for image_id in np.unique(detections.image_ids)):
        raise ValueError("results hold detections of images that are not in the ground truth")
    keep = limit_per_image(detections.image_ids, detections.scores, max_dets) if max_dets >= 0 \
        else np.arange(len(detections))
    if max_dets_per_category >= 0:
        keep = keep[limit_per_category(detections.category_ids[keep], detections.scores[keep], max_dets_per_category)]
    ids_sorted = np.array(params.img_ids, np.int64)
    cats_sorted = np.array(params.cat_ids, np.int64)
    dt_img = np.searchsorted(ids_sorted, detections.image_ids[keep])
    cat_at = np.searchsorted(cats_sorted, detections.category_ids[keep])
    known = (cat_at < num_cats) & (cats_sorted[np.minimum(cat_at, num_cats - 1)] == detections.category_ids[keep])
    keep, dt_img, dt_cat = keep[known], dt_img[known], cat_at[known]
    images = lvis_gt.load_imgs(params.img_ids)
    neg_keys = np.array([index * num_cats + cat_index[c] for index, image in enumerate(images)
                         for c in image.get("neg_category_ids", []) if c in cat_index], np.int64)
    nel_keys = np.array([index * num_cats + cat_index[c] for index, image in enumerate(images)
                         for c in image.get("not_exhaustive_category_ids", []) if c in cat_index], np.int64)
    dt_key = dt_img * num_cats + dt_cat
    evaluated = _lookup(dt_key, np.r_[neg_keys, gt_key])
    keep, dt_key = keep[evaluated], dt_key[evaluated]
    dt_score = detections.scores[keep]
    dt_order = np.lexsort((keep, -dt_score, dt_key))  # group, then the official score order
    keep, dt_key, dt_score = keep[dt_order], dt_key[dt_order], dt_score[dt_order]
    return keep, dt_key, dt_score, _lookup(dt_key, nel_keys)


def _to_rle(lvis_gt: LVIS, image_id: int, segmentation) -> dict:
    """The official conversion (`LVIS.ann_to_rle`) of a detection's polygon or RLE."""
    return lvis_gt.ann_to_rle({"image_id": int(image_id), "segmentation": segmentation})


def _mask_areas(rles: List[dict]) -> np.ndarray:
    """pycocotools' `area` of each RLE (as `LVISResults` sets a mask detection's area), float64.
    In chunks of 255: its list path builds a uint8 array holding the list's length, which
    NumPy 2 refuses beyond 255."""
    return np.concatenate([np.zeros(0)] + [mask_utils.area(rles[start:start + 255]).astype(np.float64)
                                           for start in range(0, len(rles), 255)])


def _box_candidates(dt_boxes, gt_boxes, gt_start, gt_count):
    """(detection row, ground-truth row, IoU) of every pair in one (image, category) with IoU >= 0.5,
    in chunks of at most _PAIR_CHUNK pairs."""
    found = ([], [], [])
    rows = np.flatnonzero(gt_count > 0)
    ends = np.cumsum(gt_count[rows])
    chunk_start = 0
    while chunk_start < len(rows):
        base = ends[chunk_start - 1] if chunk_start else 0
        chunk_end = max(int(np.searchsorted(ends, base + _PAIR_CHUNK, side="right")), chunk_start + 1)
        chunk = rows[chunk_start:chunk_end]
        counts = gt_count[chunk]
        pair_dt = np.repeat(chunk, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        pair_gt = gt_start[pair_dt] + offsets
        iou = box_iou(dt_boxes[pair_dt], gt_boxes[pair_gt])
        hit = iou >= CANDIDATE_IOU
        for store, values in zip(found, (pair_dt[hit], pair_gt[hit], iou[hit])):
            store.append(values)
        chunk_start = chunk_end
    return _concatenate(found)


def _mask_candidates(lvis_gt, anns, dt_rles, dt_key, gt_start, gt_count):
    """As `_box_candidates` for masks, with pycocotools' `iou` on each (image, category)."""
    found = ([], [], [])
    starts = _group_starts(dt_key)
    for begin, end in zip(starts, np.r_[starts[1:], len(dt_key)].astype(np.int64)):
        count = int(gt_count[begin])
        if count == 0:
            continue
        gt_rows = np.arange(gt_start[begin], gt_start[begin] + count)
        gt_rles = [lvis_gt.ann_to_rle(anns[row]) for row in gt_rows]
        ious = np.asarray(mask_utils.iou(dt_rles[begin:end], gt_rles, np.zeros(count, np.uint8)))
        dt_hit, gt_hit = np.nonzero(ious >= CANDIDATE_IOU)
        for store, values in zip(found, (begin + dt_hit, gt_rows[gt_hit], ious[dt_hit, gt_hit])):
            store.append(values)
    return _concatenate(found)


def _boundary_candidates(candidates: Candidates, dilation_ratio: float):
    """The candidate pairs whose boundary IoU (`boundary_iou.BoundaryIoU`) is >= 0.5, with it: the
    mask candidates' pairs (below 0.5 mask IoU no boundary IoU reaches it), _BOUNDARY_PAIRS at a
    time (their masks are decoded together; bounded memory)."""
    boundary = boundary_iou.BoundaryIoU(dilation_ratio)
    found = ([], [], [])
    for start in range(0, len(candidates.pair_dt), _BOUNDARY_PAIRS):
        dt_rows, gt_rows, ious = (pairs[start:start + _BOUNDARY_PAIRS] for pairs in
                                  (candidates.pair_dt, candidates.pair_gt, candidates.pair_iou))
        gt_rles = {row: candidates.lvis_gt.ann_to_rle(candidates.anns[row]) for row in np.unique(gt_rows).tolist()}
        ious = boundary.iou(ious, [candidates.dt_rles[row] for row in dt_rows.tolist()],
                            [gt_rles[row] for row in gt_rows.tolist()], dt_rows, gt_rows)
        hit = ious >= CANDIDATE_IOU
        for store, values in zip(found, (dt_rows[hit], gt_rows[hit], ious[hit])):
            store.append(values)
    return _concatenate(found)


def _concatenate(found):
    types = (np.int64, np.int64, np.float64)
    return tuple(np.concatenate(values).astype(kind) if values else np.zeros(0, kind)
                 for values, kind in zip(found, types))


def _match_simple(pair_dt, pair_gt, pair_iou, num_dts, iou_thrs) -> np.ndarray:
    """(T, num_dts) matched ground-truth row or -1, where each detection has at most one
    candidate: per threshold a ground truth goes to its first eligible detection in score order
    (detection rows are in that order within their (image, category))."""
    matched = -np.ones((len(iou_thrs), num_dts), np.int64)
    order = np.lexsort((pair_dt, pair_gt))
    pair_dt, pair_gt, pair_iou = pair_dt[order], pair_gt[order], pair_iou[order]
    for t, thr in enumerate(iou_thrs):
        eligible = pair_iou >= min(thr, 1 - 1e-10)
        gts, first = np.unique(pair_gt[eligible], return_index=True)
        matched[t, pair_dt[eligible][first]] = gts
    return matched


def _complex_groups(complex_keys, dt_key, gt_key, pair_dt, pair_gt, pair_iou):
    """(detection rows, ground-truth rows, candidate IoU matrix with 0 below 0.5) of each
    (image, category) where a detection has several candidates."""
    groups = []
    for key in complex_keys:
        dt_rows = np.arange(np.searchsorted(dt_key, key, "left"), np.searchsorted(dt_key, key, "right"))
        gt_rows = np.arange(np.searchsorted(gt_key, key, "left"), np.searchsorted(gt_key, key, "right"))
        ious = np.zeros((len(dt_rows), len(gt_rows)))
        here = (pair_dt >= dt_rows[0]) & (pair_dt <= dt_rows[-1])
        ious[pair_dt[here] - dt_rows[0], pair_gt[here] - gt_rows[0]] = pair_iou[here]
        groups.append((dt_rows, gt_rows, ious))
    return groups


def _accumulator(matched, gt_ignore, dt_key, dt_score, dt_row, dt_area, dt_not_exhaustive, gt_key,
                 low, high, num_cats) -> _Accumulator:
    """One area range's true and false positives (the official dt_ignore rules) in accumulate order."""
    is_matched = matched >= 0
    unmatched_ignored = (dt_area < low) | (dt_area > high) | dt_not_exhaustive
    dt_ignore = np.where(is_matched, gt_ignore[np.maximum(matched, 0)], unmatched_ignored[None, :])
    tp, fp = is_matched & ~dt_ignore, ~is_matched & ~dt_ignore
    counted = (tp | fp).any(axis=0)
    image, category = dt_key // num_cats, dt_key % num_cats
    order = np.flatnonzero(counted)
    order = order[np.lexsort((dt_row[order], image[order], -dt_score[order], category[order]))]
    category, score = category[order], dt_score[order]
    gt_counted, gt_count = np.unique(gt_key[~gt_ignore], return_counts=True)
    return _Accumulator(category=category, image=image[order], score=score, tp=tp[:, order], fp=fp[:, order],
                        tie_block=_tie_blocks(category, score), gt_image=gt_counted // num_cats,
                        gt_category=gt_counted % num_cats, gt_count=gt_count)


def _tie_blocks(category: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(n,) for rows ordered by (category, score): the id of each row's run of equal (category,
    score), -1 for a run of one."""
    if not len(category):
        return np.zeros(0, np.int64)
    new_block = np.r_[True, (category[1:] != category[:-1]) | (score[1:] != score[:-1])]
    block = np.cumsum(new_block) - 1
    return np.where(np.bincount(block)[block] > 1, block, -1)


def _pooled(acc: _Accumulator, pool: Sequence[int], num_cats: int) -> _Accumulator:
    """`acc` restricted to the categories of `pool`, all of them as category 0, in the pooled
    accumulate order (score descending, image, category, then the order within the category)."""
    in_pool = np.zeros(num_cats, bool)
    in_pool[np.asarray(pool, np.int64)] = True
    rows = np.flatnonzero(in_pool[acc.category])
    rows = rows[np.lexsort((rows, acc.category[rows], acc.image[rows], -acc.score[rows]))]
    score = acc.score[rows]
    category = np.zeros(len(rows), np.int64)
    gt_in_pool = in_pool[acc.gt_category]
    return _Accumulator(category=category, image=acc.image[rows], score=score, tp=acc.tp[:, rows],
                        fp=acc.fp[:, rows], tie_block=_tie_blocks(category, score),
                        gt_image=acc.gt_image[gt_in_pool], gt_category=np.zeros(int(gt_in_pool.sum()), np.int64),
                        gt_count=acc.gt_count[gt_in_pool])


def _freq_groups(lvis_gt: LVIS, params: Params) -> List[List[int]]:
    """Category indices per frequency group r, c, f (the official `_prepare_freq_group`)."""
    groups: List[List[int]] = [[] for _ in params.img_count_lbl]
    for index, category in enumerate(lvis_gt.load_cats(params.cat_ids)):
        groups[params.img_count_lbl.index(category["frequency"])].append(index)
    return groups
