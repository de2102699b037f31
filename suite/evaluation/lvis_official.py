"""The official `lvis` API's evaluation of results in the LVIS results format, on NumPy 2
(`suite.evaluation.lvis_numpy2`): what the fast evaluator is proven equal to, and the "official"
evaluator of `suite.evaluation.evaluate` and `suite.evaluation.bootstrap`."""

from typing import Sequence

from lvis import LVIS, LVISEval, LVISResults

from suite.evaluation import lvis_numpy2
from suite.evaluation.lvis_fast import LVIS_MAX_DETS
from suite.schema import TASKS


def run_lvis_eval(lvis_gt: LVIS, results: Sequence[dict], task: str, max_dets: int = LVIS_MAX_DETS) -> LVISEval:
    """Run the official evaluation of `results` (LVIS results format: dicts with image_id,
    category_id, score and bbox [x, y, w, h] and/or an RLE segmentation; not modified) for
    `task` "bbox" or "segm"; return the evaluated `LVISEval`. `results` must not be empty.
    For "segm" boxes are dropped so that the mask area decides small/medium/large, as
    Detectron2's LVISEvaluator does."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    drop = {"bbox"} if task == "segm" else set()
    results = [{key: value for key, value in result.items() if key not in drop} for result in results]
    lvis_numpy2.install()
    lvis_eval = LVISEval(lvis_gt, LVISResults(lvis_gt, results, max_dets=max_dets), task)
    lvis_eval.run()
    return lvis_eval
