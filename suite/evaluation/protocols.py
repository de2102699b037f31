"""The LVIS evaluation protocols the suite computes, each equal to its reference code.

- "standard": LVIS's own (lvis 0.5.3 `LVISEval`): at most 300 detections per image, box or
  mask IoU. Its metrics are AP, AP50, AP75, APs, APm, APl, APr, APc, APf.
- "fixed": AP_fixed (Dave et al. 2021, "Evaluating Large-Vocabulary Object Detectors: The Devil
  is in the Details", arXiv 2102.01066; large-vocab-devil's `scripts/evaluate_ap_fixed.py`): no
  limit per image, the 10,000 highest-scoring detections of each category over the whole set
  (ties in input order), then the standard matching and accumulation. The same nine metrics,
  and AP_pool (its `scripts/evaluate_ap_pooled.py`, `LVISPooledEval`) on the same detections:
  the categories of a pool (all, r, c, f) accumulated as one category, so that scores must be
  comparable across categories (calibration); area range "all" only: AP_pool, APr_pool,
  APc_pool, APf_pool.
- "challenge2021": the LVIS Challenge 2021 (lvis-api, branch `lvis_challenge_2021`,
  `LVISEval(mode="challenge2021")`): the fixed protocol's detections, masks matched on boundary
  IoU (`suite.evaluation.boundary_iou`, band 2 % of the image diagonal). Masks only.

`match(lvis_gt, detections, task, protocol)` matches once; protocols with the same limits share
the work before the IoU (`candidates`, then `matches` for each; `shared_matches` for several);
`summarize(matches, protocol)` gives the protocol's metrics (fractions, -1 where there is no
ground truth, as the references), optionally on a bootstrap draw. `protocol_record(name)` is what
a run record says about a protocol (`suite.evaluation.evaluate.protocols_record` writes it for
each protocol evaluated).
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from lvis import LVIS

from suite.evaluation import boundary_iou, lvis_fast
from suite.schema import AP_METRICS, STANDARD_PROTOCOL

FIXED_MAX_DETS_PER_CATEGORY = 10_000
_AREA_OF = {"APs": "small", "APm": "medium", "APl": "large"}  # every other metric is on the area range "all"
POOLS = ("all", "r", "c", "f")
POOLED_METRICS = ("AP_pool", "APr_pool", "APc_pool", "APf_pool")  # one per pool, in POOLS order


@dataclass(frozen=True)
class Protocol:
    """name; max_dets_per_image and max_dets_per_category (-1: no limit); segm_iou "mask" or
    "boundary" (with boundary_dilation_ratio); tasks it defines; pooled: whether it reports AP_pool."""
    name: str
    max_dets_per_image: int
    max_dets_per_category: int
    segm_iou: str
    tasks: Tuple[str, ...]
    pooled: bool
    boundary_dilation_ratio: Optional[float] = None

    @property
    def metrics(self) -> Tuple[str, ...]:
        return AP_METRICS + (POOLED_METRICS if self.pooled else ())

    @property
    def limits_per_category(self) -> bool:
        """Whether it keeps the best detections of each category over the set (fixed,
        challenge2021): its detections are a pass of their own, `suite.evaluation.class_topk`."""
        return self.max_dets_per_category >= 0

    def iou_type(self, task: str) -> str:
        """The IoU a task is matched on: "bbox", "segm" (mask IoU) or "boundary"."""
        return "boundary" if task == "segm" and self.segm_iou == "boundary" else task


PROTOCOLS: Dict[str, Protocol] = {
    "standard": Protocol("standard", lvis_fast.LVIS_MAX_DETS, -1, "mask", ("bbox", "segm"), pooled=False),
    "fixed": Protocol("fixed", -1, FIXED_MAX_DETS_PER_CATEGORY, "mask", ("bbox", "segm"), pooled=True),
    "challenge2021": Protocol("challenge2021", -1, FIXED_MAX_DETS_PER_CATEGORY, "boundary", ("segm",), pooled=False,
                              boundary_dilation_ratio=boundary_iou.CHALLENGE_DILATION_RATIO),
}
DEFAULT_PROTOCOL = STANDARD_PROTOCOL


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


def with_standard(protocols: Sequence[str]) -> Tuple[str, ...]:
    """`protocols` with the standard one first, once: a run's `metrics` are always the standard
    protocol's, the others go under its `metric_protocols`."""
    return (DEFAULT_PROTOCOL, *dict.fromkeys(protocol for protocol in protocols if protocol != DEFAULT_PROTOCOL))


def check_task(protocol: Protocol, task: str) -> None:
    if task not in protocol.tasks:
        raise ValueError(f"the {protocol.name} protocol evaluates {' and '.join(protocol.tasks)}, not {task!r}")


def match(lvis_gt: LVIS, detections: lvis_fast.Detections, task: str, protocol: Protocol,
          area_labels: Sequence[str] = ("all", "small", "medium", "large")) -> lvis_fast.Matches:
    """`lvis_fast.match` with the protocol's limits and IoU."""
    return matches(candidates(lvis_gt, detections, task, protocol), protocol, area_labels)


def candidates(lvis_gt: LVIS, detections: lvis_fast.Detections, task: str, protocol: Protocol) -> lvis_fast.Candidates:
    """`lvis_fast.candidates` under the protocol's limits, which every protocol with the same
    limits (`limits`) shares: fixed and challenge2021 match one set of mask candidates."""
    check_task(protocol, task)
    return lvis_fast.candidates(lvis_gt, detections, task, protocol.max_dets_per_image,
                                max_dets_per_category=protocol.max_dets_per_category)


def shared_matches(lvis_gt: LVIS, wanted: Sequence[Tuple[Protocol, str]],
                   detections_of: Callable[[Protocol, str], lvis_fast.Detections],
                   area_labels: Sequence[str] = ("all", "small", "medium", "large")
                   ) -> Iterator[Tuple[Protocol, str, lvis_fast.Matches]]:
    """(protocol, task, its matches) for each (protocol, task) of `wanted`, `detections_of(protocol,
    task)` its detections (asked once per task and limits): the protocols of a task with the same
    limits match one set of candidates, made for the first of them and dropped before the last is
    handed out, so fixed and challenge2021 compute their mask IoUs once. In `wanted`'s order, those
    sharing candidates together."""
    groups: Dict[Tuple[str, Tuple[int, int]], List[Protocol]] = {}
    for protocol, task in wanted:
        groups.setdefault((task, limits(protocol)), []).append(protocol)
    for (task, _), group in groups.items():
        found = candidates(lvis_gt, detections_of(group[0], task), task, group[0])
        for protocol in group[:-1]:
            yield protocol, task, matches(found, protocol, area_labels)
        last = matches(found, group[-1], area_labels)
        del found
        yield group[-1], task, last


def limits(protocol: Protocol) -> Tuple[int, int]:
    """(detections per image, per category) of a protocol, -1 for none: what its candidates depend on."""
    return protocol.max_dets_per_image, protocol.max_dets_per_category


def matches(found: lvis_fast.Candidates, protocol: Protocol,
            area_labels: Sequence[str] = ("all", "small", "medium", "large")) -> lvis_fast.Matches:
    """The protocol's matches on candidates `found` under its limits, with its IoU."""
    check_task(protocol, found.task)
    if (found.max_dets, found.max_dets_per_category) != limits(protocol):
        raise ValueError(f"the {protocol.name} protocol keeps {limits(protocol)} detections per image and per "
                         f"category, these candidates {(found.max_dets, found.max_dets_per_category)}")
    return found.matches(area_labels, protocol.boundary_dilation_ratio if found.task == "segm" else None)


def pools(matches: lvis_fast.Matches) -> Tuple[Sequence[int], ...]:
    """Category indices of each of POOLS: every category, then the frequency groups r, c, f."""
    return (range(matches.num_categories), *matches.freq_groups)


def summarize(matches: lvis_fast.Matches, protocol: Protocol, draw: Optional[np.ndarray] = None,
              metrics: Optional[Sequence[str]] = None, precision: Optional[np.ndarray] = None) -> Dict[str, float]:
    """The protocol's `metrics` (default: all of them) on the images `draw` (default: each once),
    fractions as the references give them, -1 where there is no ground truth. `precision`:
    `matches.precision(draw)` if the caller has it already."""
    metrics = protocol.metrics if metrics is None else tuple(metrics)
    unknown = [metric for metric in metrics if metric not in protocol.metrics]
    if unknown:
        raise ValueError(f"the {protocol.name} protocol has no metric {unknown[0]!r}")
    standard = [metric for metric in metrics if metric in AP_METRICS]
    summary: Dict[str, float] = {}
    if standard:
        area_labels = matches.area_labels
        if precision is None:  # only the area ranges the metrics need
            needed = {_AREA_OF.get(metric, "all") for metric in standard}
            area_labels = [label for label in matches.area_labels if label in needed]
            precision = matches.precision(draw, [matches.area_labels.index(label) for label in area_labels])
        summary.update(lvis_fast.summarize_precision(precision, matches.freq_groups, matches.params,
                                                     area_labels, standard))
    pooled = [metric for metric in metrics if metric in POOLED_METRICS]
    if pooled:
        pooled_precision = matches.pooled_precision([pools(matches)[POOLED_METRICS.index(m)] for m in pooled], draw)
        for index, metric in enumerate(pooled):
            s = pooled_precision[:, :, index]
            summary[metric] = -1 if len(s[s > -1]) == 0 else np.mean(s[s > -1])
    return {metric: summary[metric] for metric in metrics}


def protocol_record(name: str, max_dets_per_image: Optional[int] = None) -> Dict[str, Any]:
    """What a run record says about the protocol that produced a set of metrics:
    detections_per_image and detections_per_category (None: no limit; `max_dets_per_image`: the
    standard protocol's limit as evaluated, e.g. a config's TEST.DETECTIONS_PER_IMAGE) and
    iou_type per task ("bbox", "segm": mask IoU, "boundary")."""
    protocol = get_protocol(name)
    if max_dets_per_image is not None and name == "standard":
        protocol = dataclasses.replace(protocol, max_dets_per_image=max_dets_per_image)
    return {
        "detections_per_image": None if protocol.max_dets_per_image < 0 else protocol.max_dets_per_image,
        "detections_per_category": None if protocol.max_dets_per_category < 0 else protocol.max_dets_per_category,
        "iou_type": {task: protocol.iou_type(task) for task in protocol.tasks},
        **({"boundary_dilation_ratio": protocol.boundary_dilation_ratio} if protocol.segm_iou == "boundary" else {}),
    }

