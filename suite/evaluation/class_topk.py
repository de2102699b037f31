"""The fixed protocol's detections through Detectron2's test path, in bounded memory.

AP_fixed (`suite.evaluation.protocols`, "fixed" and "challenge2021") evaluates the K = 10,000
highest-scoring detections of each category over the whole set, with no limit per image. The
model's own output is limited per image (TEST.DETECTIONS_PER_IMAGE: 300 for LVIS), so
`suite.evaluation.evaluate.evaluate_model` runs the model over the set a second time for them:

- the model's box predictors with no limit per image (`test_topk_per_image` -1) and their own
  score threshold (ROI_HEADS.SCORE_THRESH_TEST: 0.0001 in the LVIS configs), masks and all, as
  Detectron2's `inference_on_dataset` runs them;
- `ClassTopK` keeps the K best results of each category seen so far (score, then arrival: of tied
  scores the earlier result, as the protocol's stable sort keeps it), at most 2K each;
- once a category holds K results, the K-th score is its floor: the suite's box predictor
  (`LongTailOutputLayers.class_score_floor`) then drops that category's scores below it before
  NMS, so no mask is computed for a detection that cannot enter (one at the floor can enter no
  more than one below it, but is left to the collector: a floor never decides a tie). The floors change no
  result (a dropped detection could only have suppressed lower scores, dropped too); a model whose
  predictor has no floor (Cascade R-CNN's stages, Detectron2's own predictor) gives the same
  results with every detection computed.

Each process keeps its own K best; rank 0 merges them in rank order (the order
Detectron2's evaluators gather in) and keeps the K best of the merge: the K best of all. Memory:
at most 2K results per category per process (LVIS v1: 1,203 x 20,000), whatever the set's size.
"""

import contextlib
import itertools
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from torch import nn


Result = dict  # an LVIS result: image_id, category_id (a label while collected), score, bbox, segmentation


class ClassTopK:
    """The `k` highest-scoring results of each of `num_classes` categories (labels 0..C-1) among
    those added, of tied scores the first added. `floor` holds each category's k-th score once it
    has k results, else -inf: a later result below it (or at it) cannot enter."""

    def __init__(self, num_classes: int, k: int):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        self.floor = torch.full((num_classes,), float("-inf"))
        self._held: List[List[Tuple[float, int, Result]]] = [[] for _ in range(num_classes)]
        self.added = 0  # results added so far

    def add(self, results: Sequence[Result]) -> None:
        """Add `results` (in their order: they come after every result added before)."""
        grown = set()
        for result in results:
            label = result["category_id"]
            if not 0 <= label < len(self._held):
                raise ValueError(f"a result's category label {label} is not in [0, {len(self._held)})")
            self._held[label].append((result["score"], self.added, result))
            self.added += 1
            grown.add(label)
        for label in grown:
            if len(self._held[label]) >= 2 * self.k:
                self._prune(label)

    def _prune(self, label: int) -> None:
        best = sorted(self._held[label], key=lambda held: (-held[0], held[1]))[:self.k]
        self._held[label] = sorted(best, key=lambda held: held[1])
        self.floor[label] = best[-1][0]

    def held(self) -> int:
        """How many results are held (at most 2k - 1 per category between `add`s)."""
        return sum(len(held) for held in self._held)

    def results(self) -> List[Result]:
        """The k best of each category, all in the order they were added."""
        for label, held in enumerate(self._held):
            if len(held) > self.k:
                self._prune(label)
        return [result for _, _, result in sorted(itertools.chain(*self._held), key=lambda held: held[1])]


def _box_predictors(model: nn.Module) -> List[nn.Module]:
    predictor = model.roi_heads.box_predictor
    return list(predictor) if isinstance(predictor, nn.ModuleList) else [predictor]


@contextlib.contextmanager
def uncapped(model: nn.Module, floor: Optional[torch.Tensor] = None) -> Iterator[None]:
    """Within: `model`'s box predictors keep every detection above their score threshold (no
    limit per image) and, where a predictor has `class_score_floor` (one stage only), `floor` (a
    (C,) tensor the caller may change in place between images) applies too."""
    predictors = _box_predictors(model)
    saved = [(predictor.test_topk_per_image, getattr(predictor, "class_score_floor", None)) for predictor in predictors]
    try:
        for predictor in predictors:
            predictor.test_topk_per_image = -1
            if floor is not None and len(predictors) == 1 and hasattr(predictor, "class_score_floor"):
                predictor.class_score_floor = floor
        yield
    finally:
        for predictor, (topk, class_floor) in zip(predictors, saved):
            predictor.test_topk_per_image = topk
            if hasattr(predictor, "class_score_floor"):
                predictor.class_score_floor = class_floor


class ClassTopKEvaluator(DatasetEvaluator):
    """Collects the `k` best detections of each category over a data set (in each process, then
    merged on rank 0) and evaluates them with `evaluator`, a non-distributed
    `LVISPerCategoryEvaluator` whose protocols limit detections per category (not per image).
    `floor`: this process's floor per category, one tensor updated in place after every batch
    (for `uncapped`); `most_held`: the most results held at once in this process."""

    def __init__(self, evaluator, num_classes: int, k: int):
        self.evaluator, self.num_classes, self.k = evaluator, num_classes, k
        self.floor = torch.full((num_classes,), float("-inf"))
        self.reset()

    def reset(self) -> None:
        self.evaluator.reset()
        self.collected = ClassTopK(self.num_classes, self.k)
        self.floor.copy_(self.collected.floor)
        self.most_held = 0

    def process(self, inputs, outputs) -> None:
        self.evaluator.process(inputs, outputs)  # LVIS results (labels as category ids), one entry per image
        for prediction in self.evaluator._predictions:
            self.collected.add(prediction.get("instances", []))
        self.evaluator._predictions = []
        self.floor.copy_(self.collected.floor)
        self.most_held = max(self.most_held, self.collected.held())

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        kept = self.collected.results()
        if comm.get_world_size() > 1:
            comm.synchronize()
            gathered = comm.gather(kept, dst=0)
            if not comm.is_main_process():
                return {}
            merged = ClassTopK(self.num_classes, self.k)
            for rank_results in gathered:
                merged.add(rank_results)
            kept = merged.results()
        self.evaluator._predictions = [{"image_id": image_id, "instances": list(results)}
                                       for image_id, results in itertools.groupby(kept, key=lambda r: r["image_id"])]
        return self.evaluator.evaluate()

