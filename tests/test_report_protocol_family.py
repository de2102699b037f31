"""The protocols study's declared contrasts (`suite.report.protocol_family`, docs/protocols-plan.md)
on hand-made run records: which protocol's metric each member reads, how a change pairs its seeds,
and Holm's correction over the family."""

import copy

import pytest
from test_report_family import lvis_run
from test_report_paired import records

from suite.report import paired, protocol_family, stats

# per seed 0-2: (standard APr, fixed box APr, pooled box APr, boundary mask APr)
MITIGATION = [(14.0, 12.0, 20.0, 9.0), (15.0, 13.0, 21.0, 9.0), (16.0, 16.0, 22.0, 9.0)]
CE_COSINE = [(10.0, 10.0, 18.0, 10.0), (10.0, 10.0, 18.0, 11.0), (10.0, 11.0, 18.0, 9.0)]


def evaluated(record, fixed, pooled, boundary):
    """`record` evaluated also under fixed (box APr `fixed`, mask APr `fixed` - 1, box APr_pool
    `pooled`) and challenge2021 (mask APr `boundary`), as `suite eval --run` writes them."""
    fixed_metrics = copy.deepcopy(record["metrics"])
    fixed_metrics["bbox"].update(APr=fixed, APr_pool=pooled)
    fixed_metrics["segm"]["APr"] = fixed - 1
    boundary_metrics = {"segm": dict(record["metrics"]["segm"], APr=boundary)}
    record["metric_protocols"] = {"standard": {"detections_per_image": 100}, "fixed": {"metrics": fixed_metrics},
                                  "challenge2021": {"metrics": boundary_metrics}}
    return record


def study_runs():
    runs = []
    for seed, (mine, theirs) in enumerate(zip(MITIGATION, CE_COSINE)):
        runs.append(evaluated(lvis_run("seesaw", seed, mine[0], q=0.0), *mine[1:]))
        runs.append(evaluated(lvis_run("ce", seed, theirs[0]), *theirs[1:]))
    return runs


def column(values, index):
    return [value[index] for value in values]


def test_each_member_reads_its_protocol_and_a_change_pairs_the_same_cells():
    protocol = protocol_family.study(paired.all_protocols(records(*study_runs())))
    assert set(protocol.runs) == {"seesaw[mitigation]+cos", "ce+cos"}
    by_number = {contrast.number: protocol_family.outcome(protocol, contrast)
                 for contrast in (protocol_family.PRIMARY, *protocol_family.FAMILY)}
    standard = stats.paired_difference(column(MITIGATION, 0), column(CE_COSINE, 0))
    fixed = stats.paired_difference(column(MITIGATION, 1), column(CE_COSINE, 1))
    assert by_number[0].mean == pytest.approx(10 / 3) == fixed.mean  # (2 + 3 + 5) / 3
    assert by_number[1].mean == pytest.approx(fixed.mean)  # masks: both arms' fixed APr 1 lower
    assert by_number[2].mean == pytest.approx(-1.0)  # boundary: (-1 - 2 + 0) / 3
    assert by_number[3].mean == pytest.approx(3.0)  # pooled: (2 + 3 + 4) / 3
    assert by_number[6] == standard
    mine_fixed, mine_standard = [2.0, 3.0, 5.0], [4.0, 5.0, 6.0]  # per seed: fixed and standard differences
    assert by_number[4] == stats.paired_difference(mine_fixed, mine_standard)
    assert by_number[5] == stats.paired_difference([-1.0, -2.0, 0.0], mine_standard)
    assert by_number[4].n == 3 and by_number[4].mean == pytest.approx(-5 / 3)


def test_the_section_adjusts_the_family_with_holm_and_needs_every_protocol():
    runs = study_runs()
    protocol = protocol_family.study(paired.all_protocols(records(*runs)))
    members = [protocol_family.outcome(protocol, contrast) for contrast in protocol_family.FAMILY]
    adjusted = stats.holm([member.p for member in members])
    section = "\n".join(protocol_family.protocol_family_section(records(*runs)))
    assert "| primary | box APr | AP_fixed | 3 | +3.3 [" in section
    assert "| 4 | change of box APr | standard → AP_fixed | 3 | -1.7 [" in section
    assert f"| {members[3].p:.3f} | {adjusted[3]:.3f} | " in section
    assert "| 3 | box APr_pool | AP_fixed | 3 | +3.0 [" in section
    del runs[0]["metric_protocols"]["challenge2021"]  # one cell not evaluated under challenge2021: no study
    assert protocol_family.protocol_family_section(records(*runs)) == []
