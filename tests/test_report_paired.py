"""suite.report.paired on hand-made records: what makes one protocol, arms and references, and
the flags for dirty trees and mixed commits."""

import copy

from suite.report import paired
from suite.report.records import Records

from test_report_generate import ENV, run_record


def study_run(loss, seed, apr, cosine=False, commit="abc123", dirty=False, iterations=100):
    record = run_record(loss, seed, 20.0, apr, 15.0, 30.0, iterations=iterations)
    record["config"]["MODEL"] = {"WEIGHTS": f"init/seed{seed}.pth",
                                 "ROI_BOX_HEAD": {"CLS_LOSS": loss, "COSINE_CLASSIFIER": cosine,
                                                  "SEESAW": {"P": 0.8}, "FC_DIM": 256}}
    record["environment"] = dict(ENV, git_commit=commit, git_dirty=dirty)
    return record


def records(*runs):
    return Records(runs=[(f"runs/{index}/run.json", record) for index, record in enumerate(runs)])


def test_one_protocol_across_losses_weights_and_seeds():
    found = paired.protocols(records(study_run("ce", 0, 2.0), study_run("ce", 1, 4.0),
                                     study_run("seesaw", 0, 5.0, cosine=True), study_run("seesaw", 1, 9.0, cosine=True),
                                     study_run("ce", 0, 3.0, cosine=True), study_run("ce", 1, 3.0, cosine=True)))
    (protocol,) = found
    assert set(protocol.runs) == {"ce", "ce+cos", "seesaw+cos"} and protocol.flags == []
    frame = paired.comparisons_frame(protocol)
    pairs = set(zip(frame["arm"], frame["reference"]))
    assert pairs == {("ce+cos", "ce"), ("seesaw+cos", "ce"), ("seesaw+cos", "ce+cos")}
    row = frame[(frame["arm"] == "seesaw+cos") & (frame["reference"] == "ce+cos") & (frame["column"] == "segm_APr")]
    assert row["mean"].item() == 4.0  # (5 - 3 + 9 - 3) / 2


def test_other_iterations_or_head_settings_are_other_protocols():
    changed = study_run("ce", 1, 4.0)
    changed["config"]["MODEL"]["ROI_BOX_HEAD"]["FC_DIM"] = 128
    found = paired.protocols(records(study_run("ce", 0, 2.0), study_run("ce", 1, 4.0, iterations=50), changed))
    assert found == []  # no protocol holds two seeds of ce


def test_plugin_keys_at_their_default_are_the_protocol_of_records_without_them():
    """A record from before the plugin had TEST.LVIS_EVALUATOR and the cascade's stage weights (the
    committed study's) shares a protocol with one that leaves them at their defaults, not with one
    that sets them otherwise."""
    older = study_run("ce", 0, 2.0)
    later = study_run("ce", 1, 4.0)
    later["config"]["TEST"] = {"LVIS_EVALUATOR": "fast"}
    later["config"]["MODEL"]["ROI_BOX_CASCADE_HEAD"] = {"STAGE_LOSS_WEIGHTS": []}
    assert paired.plugin_defaults()[("TEST", "LVIS_EVALUATOR")] == "fast"
    assert paired.protocol_key(older) == paired.protocol_key(later)
    (protocol,) = paired.protocols(records(older, later))
    assert set(protocol.runs["ce"]) == {0, 1}
    other = copy.deepcopy(later)
    other["config"]["TEST"]["LVIS_EVALUATOR"] = "official"
    assert paired.protocol_key(other) != paired.protocol_key(older)


def test_dirty_trees_mixed_commits_and_repeats_are_flagged():
    runs = [study_run("ce", 0, 2.0), study_run("ce", 1, 4.0, dirty=True), study_run("seesaw", 0, 5.0, commit="def456"),
            study_run("seesaw", 1, 9.0)]
    repeat = copy.deepcopy(runs[0])
    (protocol,) = paired.protocols(records(*runs, repeat))
    flags = " ".join(protocol.flags)
    assert "1 run(s) from a dirty working tree" in flags and "`runs/1/run.json`" in flags
    assert "2 different code commits: abc123, def456" in flags
    assert "repeated arm and seed, left out: `runs/4/run.json`" in flags
