"""The ablation's declared contrasts (docs/ablation-plan.md, "The control of neither factor"): the
primary contrast, a family of twelve secondaries with Holm's correction over it, and beside each
paired contrast its interval over seeds and rare categories.

Declared before any of their cells ran and not to be changed after: `PRIMARY` and `FAMILY` are the
plan's tables. A contrast names its protocol by the study profile's set (its classes, from
`suite.data.synth`) and the iterations; the report finds it among the records' protocols
(`suite.report.paired.all_protocols`). Box AP_r is tested; mask AP_r is shown beside it, untested.
A member without records has no p and is never confirmed, but counts in the family's size.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from suite.data.synth import LVIS_PROFILE_CLASSES, SynthSpec
from suite.report import paired, stats
from suite.report.records import Records

TESTED, SHOWN = "bbox_APr", "segm_APr"
ALPHA = 0.05


@dataclass(frozen=True)
class Setting:
    """A protocol of the plan: the study profile's set, by its number of classes, and the iterations."""

    label: str
    num_classes: int
    iterations: int


LVIS_320 = Setting("LVIS, 320 it", LVIS_PROFILE_CLASSES, 320)
LVIS_1552 = Setting("LVIS, 1552 it", LVIS_PROFILE_CLASSES, 1552)
DEFAULT_250 = Setting("default, 250 it", SynthSpec().num_classes, 250)


@dataclass(frozen=True)
class Paired:
    """arm - reference on one protocol, paired over the seeds both have."""

    number: int
    setting: Setting
    arm: str
    reference: str
    separates: str


@dataclass(frozen=True)
class Change:
    """How a paired contrast's difference changes from `first` to `second` (Welch, no seeds shared)."""

    number: int
    first: Paired
    second: Paired
    separates: str


PRIMARY = Paired(0, LVIS_320, "seesaw[mitigation]+cos", "seesaw[none]+cos", "the mitigation factor over the branch")
_DEFAULT_PRIMARY = Paired(4, DEFAULT_250, "seesaw[mitigation]+cos", "seesaw[none]+cos",
                          "the primary's difference on the milder set")
_PASSES_PRIMARY = Paired(10, LVIS_1552, "seesaw[mitigation]+cos", "seesaw[none]+cos",
                         "the primary's difference at 5 passes")
FAMILY: Sequence[Union[Paired, Change]] = (
    Paired(1, LVIS_320, "seesaw+cos", "seesaw[none]+cos", "both factors over the branch"),
    Paired(2, LVIS_320, "seesaw[compensation]+cos", "seesaw[none]+cos", "compensation over the branch"),
    Paired(3, LVIS_320, "seesaw[none]+cos", "ce+cos", "the branch over CE, cosine classifier"),
    _DEFAULT_PRIMARY,
    Paired(5, DEFAULT_250, "seesaw+cos", "seesaw[none]+cos", "both factors over the branch"),
    Paired(6, DEFAULT_250, "seesaw[compensation]+cos", "seesaw[none]+cos", "compensation over the branch"),
    Paired(7, DEFAULT_250, "seesaw[none]+cos", "ce+cos", "the branch over CE, cosine classifier"),
    Paired(8, DEFAULT_250, "seesaw", "seesaw[none]", "both factors over the branch, linear classifier"),
    Paired(9, DEFAULT_250, "seesaw[none]", "ce", "the branch over CE, linear classifier"),
    _PASSES_PRIMARY,
    Change(11, _DEFAULT_PRIMARY, _PASSES_PRIMARY, "the pressure at equal passes"),
    Change(12, PRIMARY, _PASSES_PRIMARY, "the passes at equal pressure"),
)


@dataclass(frozen=True)
class Outcome:
    """A contrast on the records: its seeds (per side for a change), the tested difference (box
    AP_r) with its interval over seeds and p, the same for mask AP_r, and for a paired contrast
    the intervals over seeds and rare categories."""

    contrast: Union[Paired, Change]
    seeds: str
    tested: Union[stats.PairedDifference, stats.Change, None]
    shown: Union[stats.PairedDifference, stats.Change, None]
    tested_two_way: Optional[stats.TwoWayInterval] = None
    shown_two_way: Optional[stats.TwoWayInterval] = None

    @property
    def p(self) -> float:
        return math.nan if self.tested is None else self.tested.p


def find(setting: Setting, found: List[paired.Protocol]) -> Optional[paired.Protocol]:
    """The protocol of `setting` among `found`: the one with those classes and iterations that has
    the most runs (several: the same set and schedule under other configs, which the report's
    other sections tell apart)."""
    matching = [protocol for protocol in found
                if protocol.num_classes == setting.num_classes and protocol.iterations == setting.iterations]
    return max(matching, key=lambda protocol: sum(map(len, protocol.runs.values())), default=None)


def _rare_differences(protocol: paired.Protocol, contrast: Paired, seeds: Sequence, task: str,
                      by_path: Dict[str, dict]) -> np.ndarray:
    """(seeds, rare categories) per-category AP differences, the categories every run has an AP of."""
    def rare_ap(run: paired.Run) -> Dict[int, Optional[float]]:
        return {category["id"]: category[f"{task}_AP"] for category in by_path[run.path]["per_category"]
                if category["frequency"] == "r"}

    rows = [(rare_ap(protocol.runs[contrast.arm][seed]), rare_ap(protocol.runs[contrast.reference][seed]))
            for seed in seeds]
    ids = sorted(set.intersection(*(set(ours) & set(theirs) for ours, theirs in rows))) if rows else []
    ids = [category for category in ids if all(ours[category] is not None and theirs[category] is not None
                                               for ours, theirs in rows)]
    return np.array([[ours[category] - theirs[category] for category in ids] for ours, theirs in rows], float) \
        .reshape(len(rows), len(ids))


def _paired_outcome(contrast: Paired, found: List[paired.Protocol], by_path: Dict[str, dict]) -> Outcome:
    protocol = find(contrast.setting, found)
    if protocol is None or contrast.arm not in protocol.runs or contrast.reference not in protocol.runs:
        return Outcome(contrast, "", None, None)
    seeds = paired.common_seeds(protocol, contrast.arm, contrast.reference)
    differences = paired.compare(protocol, contrast.arm, contrast.reference)
    two_way = {task: stats.seed_category_interval(_rare_differences(protocol, contrast, seeds, task, by_path))
               for task in ("bbox", "segm")}
    return Outcome(contrast, str(len(seeds)), differences[TESTED], differences[SHOWN], two_way["bbox"], two_way["segm"])


def outcomes(records: Records) -> List[Outcome]:
    """The primary contrast's outcome, then each member's of FAMILY, on the records."""
    found, by_path = paired.all_protocols(records), dict(records.runs)
    by_number = {}
    result = []
    for contrast in (PRIMARY, *FAMILY):
        if isinstance(contrast, Paired):
            outcome = _paired_outcome(contrast, found, by_path)
        else:
            sides = [by_number.get(side.number) or _paired_outcome(side, found, by_path)
                     for side in (contrast.first, contrast.second)]
            if any(side.tested is None for side in sides):
                outcome = Outcome(contrast, "", None, None)
            else:
                outcome = Outcome(contrast, " and ".join(side.seeds for side in sides),
                                  stats.welch_change(sides[0].tested, sides[1].tested),
                                  stats.welch_change(sides[0].shown, sides[1].shown))
        by_number[contrast.number] = outcome
        result.append(outcome)
    return result


def interval_text(estimate: float, low: float, high: float) -> str:
    """"+1.2 [-0.3, +2.7]" in AP points; no brackets where the interval is NaN, "–" where the estimate is."""
    if math.isnan(estimate):
        return "–"
    return f"{estimate:+.1f}" + ("" if math.isnan(low) else f" [{low:+.1f}, {high:+.1f}]")


def estimate_text(value: Union[stats.PairedDifference, stats.Change, None]) -> str:
    """A paired difference's mean or a change, with its interval (interval_text); "not run" for None."""
    if value is None:
        return "not run"
    mean = value.mean if isinstance(value, stats.PairedDifference) else value.change
    return interval_text(mean, value.low, value.high)


def _two_way(value: Optional[stats.TwoWayInterval]) -> str:
    return "–" if value is None else interval_text(value.mean, value.low, value.high)


def p_text(value: float) -> str:
    """A p-value to 3 decimals, "–" for NaN."""
    return "–" if math.isnan(value) else f"{value:.3f}"


def confirmed_text(p: float) -> str:
    """Whether a test with (adjusted) p is confirmed at ALPHA: "yes", "no", "–" for NaN (not run)."""
    return "–" if math.isnan(p) else ("yes" if p < ALPHA else "no")


def _what(contrast: Union[Paired, Change]) -> tuple:
    if isinstance(contrast, Paired):
        return contrast.setting.label, f"{contrast.arm} − {contrast.reference}"
    return f"{contrast.first.setting.label} → {contrast.second.setting.label}", \
        f"change of {contrast.second.arm} − {contrast.second.reference}"


def family_section(records: Records) -> List[str]:
    """## The ablation's declared contrasts: the primary and the family with Holm's correction;
    nothing where none of them has records."""
    found = outcomes(records)
    if all(outcome.tested is None for outcome in found):
        return []
    primary, members = found[0], found[1:]
    adjusted = stats.holm([member.p for member in members])
    headers = ["", "protocol", "difference", "seeds", "box AP_r [95 % over seeds]", "p", "Holm p", "confirmed",
               "box AP_r [seeds × categories]", "mask AP_r [95 % over seeds]", "mask AP_r [seeds × categories]",
               "separates"]
    rows = []
    for outcome, holm_p in [(primary, primary.p), *zip(members, adjusted)]:
        label = "primary" if outcome is primary else str(outcome.contrast.number)
        rows.append([label, *_what(outcome.contrast), outcome.seeds or "–", estimate_text(outcome.tested),
                     p_text(outcome.p), "–" if outcome is primary else p_text(holm_p), confirmed_text(holm_p),
                     _two_way(outcome.tested_two_way), estimate_text(outcome.shown), _two_way(outcome.shown_two_way),
                     outcome.contrast.separates])
    return ["## The ablation's declared contrasts", "",
            "Declared in docs/ablation-plan.md (\"The control of neither factor\") before any of their cells ran "
            "(`suite.report.family`). Box AP_r is tested, two-sided at 5 %: the primary alone, the twelve others "
            "as a family with Holm's step-down correction (adjusted p; a member not run counts in the family and "
            "is never confirmed). Paired contrasts: mean difference in AP points [95 % t-interval over paired "
            "seeds], and beside it [95 % over seeds and rare categories] (seed × category model). Changes "
            "(11, 12): Welch's interval, no seeds shared. Mask AP_r is shown, not tested. A contrast not "
            "confirmed is not evidence of no difference.", "",
            paired.markdown_table(headers, rows), ""]
