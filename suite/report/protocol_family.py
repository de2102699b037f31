"""The protocols study's declared contrasts (docs/protocols-plan.md): seesaw[mitigation]+cos −
ce+cos on the LVIS profile at 320 iterations under the standard evaluation protocol and the
others (`suite.evaluation.protocols`). The primary contrast, then a family of six with Holm's
correction over it.

Declared before the study's seeds 2 and 3 ran and not to be changed after: `PRIMARY` and `FAMILY`
are the plan's tables. A difference is paired over the seeds both arms have; a change is the
paired difference, over the same seeds, of the per-seed difference under the other protocol and
under the standard one (both from the same cells). The report finds the study among the records'
protocols: the LVIS profile's set and iterations, both arms, every run evaluated under every
protocol the plan names.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from suite.report import paired, stats
from suite.report.family import LVIS_320, confirmed_text, estimate_text, find, p_text
from suite.report.records import Records
from suite.schema import STANDARD_PROTOCOL

ARM, REFERENCE = "seesaw[mitigation]+cos", "ce+cos"


@dataclass(frozen=True)
class Difference:
    """ARM − REFERENCE in `column` ("<task>_<metric>") under the evaluation protocol `evaluation`."""

    number: int
    column: str
    evaluation: str
    asks: str


@dataclass(frozen=True)
class Change:
    """How ARM − REFERENCE in `column` changes from the standard protocol to `evaluation`."""

    number: int
    column: str
    evaluation: str
    asks: str


PRIMARY = Difference(0, "bbox_APr", "fixed", "whether the finding holds without the per-image cap")
FAMILY: Sequence[Union[Difference, Change]] = (
    Difference(1, "segm_APr", "fixed", "the primary for masks"),
    Difference(2, "segm_APr", "challenge2021", "the finding under the LVIS Challenge 2021's protocol"),
    Difference(3, "bbox_APr_pool", "fixed", "whether the rare classes' scores rank with the others'"),
    Change(4, "bbox_APr", "fixed", "how much of the standard difference the per-image cap makes"),
    Change(5, "segm_APr", "challenge2021", "the same for masks and boundaries"),
    Difference(6, "bbox_APr", STANDARD_PROTOCOL, "the finding itself, replicated"),
)
EVALUATIONS = sorted({contrast.evaluation for contrast in (PRIMARY, *FAMILY)} - {STANDARD_PROTOCOL})
PROTOCOL_NAMES = {STANDARD_PROTOCOL: "standard", "fixed": "AP_fixed", "challenge2021": "boundary AP_fixed"}


def study(found: List[paired.Protocol]) -> Optional[paired.Protocol]:
    """The protocol of the study among `found`: LVIS_320's (family.find) among those with both arms
    and every run evaluated under EVALUATIONS."""
    return find(LVIS_320, [protocol for protocol in found if ARM in protocol.runs and REFERENCE in protocol.runs
                           and set(EVALUATIONS) <= set(paired.evaluations(protocol))])


def _per_seed(protocol: paired.Protocol, seeds: Sequence, column: str, evaluation: str) -> List[Optional[float]]:
    """ARM − REFERENCE at each of `seeds` (None where either lacks the metric)."""
    differences = []
    for seed in seeds:
        mine, theirs = (protocol.runs[arm][seed].values(evaluation).get(column) for arm in (ARM, REFERENCE))
        differences.append(None if mine is None or theirs is None else mine - theirs)
    return differences


def outcome(protocol: paired.Protocol, contrast: Union[Difference, Change]) -> stats.PairedDifference:
    """The contrast on the study's runs, paired over the seeds both arms have."""
    if isinstance(contrast, Difference):
        return paired.compare(protocol, ARM, REFERENCE, contrast.evaluation, (contrast.column,))[contrast.column]
    seeds = paired.common_seeds(protocol, ARM, REFERENCE)
    return stats.paired_difference(_per_seed(protocol, seeds, contrast.column, contrast.evaluation),
                                   _per_seed(protocol, seeds, contrast.column, STANDARD_PROTOCOL))


def _what(contrast: Union[Difference, Change]) -> List[str]:
    task, metric = contrast.column.split("_", 1)
    what = f"{'box' if task == 'bbox' else 'mask'} {metric}"
    if isinstance(contrast, Change):
        return [f"change of {what}", f"standard → {PROTOCOL_NAMES[contrast.evaluation]}"]
    return [what, PROTOCOL_NAMES[contrast.evaluation]]


def _row(label: str, contrast: Union[Difference, Change], result: stats.PairedDifference,
         holm_p: Optional[float]) -> list:
    """A table row; `holm_p` None for the primary, tested alone."""
    return [label, *_what(contrast), result.n, estimate_text(result), p_text(result.p),
            "–" if holm_p is None else p_text(holm_p), confirmed_text(result.p if holm_p is None else holm_p),
            contrast.asks]


def protocol_family_section(records: Records) -> List[str]:
    """## The protocols' declared contrasts: the primary and the family with Holm's correction;
    nothing where the records hold no such study."""
    protocol = study(paired.all_protocols(records))
    if protocol is None:
        return []
    primary, members = outcome(protocol, PRIMARY), [outcome(protocol, member) for member in FAMILY]
    adjusted = stats.holm([member.p for member in members])
    rows = [_row("primary", PRIMARY, primary, None)]
    rows += [_row(str(contrast.number), contrast, result, holm_p)
             for contrast, result, holm_p in zip(FAMILY, members, adjusted)]
    headers = ["", f"{ARM} − {REFERENCE}", "protocol", "seeds", "mean [95 % over seeds]", "p", "Holm p", "confirmed",
               "asks"]
    return ["## The protocols' declared contrasts", "",
            f"Declared in docs/protocols-plan.md before the study's seeds 2 and 3 ran "
            f"(`suite.report.protocol_family`), on {protocol.title} ({protocol.footnote}). AP in points, "
            "tested two-sided at 5 %: the primary alone, the six others as a family with Holm's step-down "
            "correction. A difference: the mean over paired seeds [95 % t-interval]. A change: the paired "
            "difference of the per-seed differences under the two protocols (the same cells). A contrast "
            "not confirmed is not evidence of no difference.", "",
            paired.markdown_table(headers, rows), ""]
